package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// bodyChecks validates a streamed body: JSON syntax (in a goroutine fed
// through a pipe, holding no copy of the body) and a substring match.
type bodyChecks struct {
	needle  []byte
	window  []byte
	found   bool
	jsonW   *io.PipeWriter
	jsonErr chan error
}

func newBodyChecks(expectJSON bool, contains string) *bodyChecks {
	c := &bodyChecks{needle: []byte(contains), found: contains == ""}
	if expectJSON {
		pr, pw := io.Pipe()
		c.jsonW, c.jsonErr = pw, make(chan error, 1)
		go func() {
			err := validJSON(pr)
			pr.CloseWithError(errors.New("json check done"))
			c.jsonErr <- err
		}()
	}
	return c
}

func validJSON(r io.Reader) error {
	dec := json.NewDecoder(r)
	// Decode token by token so a huge body is never held in memory.
	depth, values := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if values == 0 {
				return errors.New("response body is not JSON: empty")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("response body is not JSON: %v", err)
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			values++
			if values > 1 {
				return errors.New("response body is not JSON: more than one value")
			}
		}
	}
}

func (c *bodyChecks) Write(p []byte) (int, error) {
	if !c.found {
		c.window = append(c.window, p...)
		if bytes.Contains(c.window, c.needle) {
			c.found, c.window = true, nil
		} else if keep := len(c.needle) - 1; len(c.window) > keep {
			c.window = append(c.window[:0], c.window[len(c.window)-keep:]...)
		}
	}
	if c.jsonW != nil {
		if _, err := c.jsonW.Write(p); err != nil {
			c.jsonW = nil // the checker has its verdict; result() reports it
		}
	}
	return len(p), nil
}

func (c *bodyChecks) result() error {
	var err error
	if c.jsonErr != nil {
		if c.jsonW != nil {
			c.jsonW.Close()
		}
		err = <-c.jsonErr
		c.jsonErr = nil
	}
	if err == nil && !c.found {
		err = fmt.Errorf("response body does not contain %q", c.needle)
	}
	return err
}
