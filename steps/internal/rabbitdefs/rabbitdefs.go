// Package rabbitdefs recognises a RabbitMQ definitions export (GET
// /api/definitions of the management plugin) in a JSON stream and counts
// its lists, holding at most one list element in memory at a time.
package rabbitdefs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// Kind is the name of the format, as recorded in an artifact's Source
// ("format") and accepted by verify's inspect param.
const Kind = "rabbitmq-definitions"

// Counted are the top-level lists whose lengths are counted, under the
// manifest's count keys of the same names.
var Counted = []string{"queues", "exchanges", "bindings", "users", "vhosts", "policies"}

// known are the top-level keys an export (of the whole broker or of one
// vhost) may have; any other key means the document is something else.
var known = map[string]bool{
	"rabbit_version": true, "rabbitmq_version": true, "product_name": true, "product_version": true,
	"users": true, "vhosts": true, "permissions": true, "topic_permissions": true, "parameters": true,
	"global_parameters": true, "policies": true, "queues": true, "exchanges": true, "bindings": true,
}

// ErrNotDefinitions is returned by Count for a well-formed prefix that is
// not a definitions export (another JSON document).
var ErrNotDefinitions = errors.New("not a RabbitMQ definitions export")

// Info is what Count learns from an export.
type Info struct {
	// Version is rabbitmq_version (or rabbit_version): the broker that exported it.
	Version string
	// Counts holds the length of each counted list the export has.
	Counts map[string]int64
}

// Count reads one JSON document from r and returns the length of each
// counted list it has (a list the export lacks, like users in a vhost
// export, gets no key). A document is a definitions export when it is an
// object holding rabbit_version or rabbitmq_version (keys unknown to this
// package are tolerated only after the version); otherwise Count returns ErrNotDefinitions as soon as it can tell, without
// reading the rest. Malformed JSON is an error naming what failed.
func Count(r io.Reader) (Info, error) {
	versioned := false
	info, err := count(r, &versioned)
	if err != nil && !versioned && !errors.Is(err, ErrNotDefinitions) {
		// Broken before it said it was definitions: something else.
		err = fmt.Errorf("%w (%v)", ErrNotDefinitions, err)
	}
	return info, err
}

func count(r io.Reader, versioned *bool) (Info, error) {
	dec := json.NewDecoder(r)
	tok, err := dec.Token()
	if err != nil {
		return Info{}, syntax(err)
	}
	if tok != json.Delim('{') {
		return Info{}, ErrNotDefinitions
	}
	info := Info{Counts: map[string]int64{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Info{}, syntax(err)
		}
		key, _ := tok.(string)
		if key == "rabbit_version" || key == "rabbitmq_version" {
			*versioned = true
			var v any
			if err := dec.Decode(&v); err != nil {
				return Info{}, syntax(err)
			}
			if s, ok := v.(string); ok && (info.Version == "" || key == "rabbitmq_version") {
				info.Version = s
			}
			continue
		}
		// An unknown key before the version (which exports put first) means
		// another document; after it, a key a newer RabbitMQ added.
		if !known[key] && !*versioned {
			return Info{}, ErrNotDefinitions
		}
		if !counted(key) {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return Info{}, syntax(err)
			}
			continue
		}
		n, err := countList(dec)
		if err != nil {
			return Info{}, fmt.Errorf("%s: %w", key, err)
		}
		info.Counts[key] = n
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return Info{}, syntax(err)
	}
	if !*versioned {
		return Info{}, ErrNotDefinitions
	}
	// Exactly one document: trailing data means the stream is something else.
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("data after the definitions object")
		}
		return Info{}, syntax(err)
	}
	return info, nil
}

func counted(key string) bool {
	for _, k := range Counted {
		if k == key {
			return true
		}
	}
	return false
}

func countList(dec *json.Decoder) (int64, error) {
	tok, err := dec.Token()
	if err != nil {
		return 0, syntax(err)
	}
	if tok != json.Delim('[') {
		return 0, fmt.Errorf("not a list (%v)", tok)
	}
	var n int64
	for dec.More() {
		var elem struct{} // scanned, not kept (faster than a RawMessage)
		if err := dec.Decode(&elem); err != nil {
			// A non-object element is consumed all the same.
			var te *json.UnmarshalTypeError
			if !errors.As(err, &te) {
				return 0, syntax(err)
			}
		}
		n++
	}
	if _, err := dec.Token(); err != nil {
		return 0, syntax(err)
	}
	return n, nil
}

func syntax(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("definitions JSON: %w", err)
}

// Counter counts a stream written through it, e.g. a body as it passes
// into an artifact: Count runs in a goroutine fed through a pipe, so the
// body is never held in memory. Once Count has its verdict (for instance
// ErrNotDefinitions after the first key) Write stops feeding it.
type Counter struct {
	pw   *io.PipeWriter
	done chan struct{}
	mu   sync.Mutex
	open bool

	info Info
	err  error
}

// NewCounter starts a Counter; call Result exactly once when the stream ends.
func NewCounter() *Counter {
	pr, pw := io.Pipe()
	c := &Counter{pw: pw, done: make(chan struct{}), open: true}
	go func() {
		defer close(c.done)
		c.info, c.err = Count(pr)
		pr.CloseWithError(errors.New("rabbitdefs: counted"))
	}()
	return c
}

// Write feeds the counter; it never fails, so it can sit in a MultiWriter.
func (c *Counter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open {
		if _, err := c.pw.Write(p); err != nil {
			c.open = false
		}
	}
	return len(p), nil
}

// Result ends the stream and returns what Count found, or an error when
// the stream was not a complete definitions export (ErrNotDefinitions for
// another document).
func (c *Counter) Result() (Info, error) {
	c.mu.Lock()
	c.open = false
	c.mu.Unlock()
	c.pw.Close()
	<-c.done
	return c.info, c.err
}

// Abort stops the counter without a result (the stream failed).
func (c *Counter) Abort() {
	c.mu.Lock()
	c.open = false
	c.mu.Unlock()
	c.pw.CloseWithError(errors.New("rabbitdefs: aborted"))
	<-c.done
}

// identity names one element of a counted list the way RabbitMQ tells them
// apart: by vhost and name, a binding by all of its fields.
var identity = map[string][]string{
	"queues":    {"vhost", "name"},
	"exchanges": {"vhost", "name"},
	"bindings":  {"vhost", "source", "destination", "destination_type", "routing_key", "arguments"},
	"users":     {"name"},
	"vhosts":    {"name"},
	"policies":  {"vhost", "name"},
}

// Objects reads a whole definitions export (held in memory: exports are
// small) and returns, for each counted list it has, the identities of its
// elements.
func Objects(r io.Reader) (map[string]map[string]bool, error) {
	var doc map[string]json.RawMessage
	dec := json.NewDecoder(r)
	if err := dec.Decode(&doc); err != nil {
		return nil, syntax(err)
	}
	if doc["rabbit_version"] == nil && doc["rabbitmq_version"] == nil {
		return nil, ErrNotDefinitions
	}
	out := map[string]map[string]bool{}
	for _, key := range Counted {
		raw, ok := doc[key]
		if !ok {
			continue
		}
		var list []map[string]any
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		set := make(map[string]bool, len(list))
		for _, e := range list {
			id := make([]any, len(identity[key]))
			for i, f := range identity[key] {
				id[i] = e[f]
			}
			b, err := json.Marshal(id) // map keys come out sorted: canonical
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			set[string(b)] = true
		}
		out[key] = set
	}
	return out, nil
}

// Found counts, per list of want, how many of its elements are in have:
// after an import, equal to want's own counts when everything arrived.
func Found(want, have map[string]map[string]bool) map[string]int64 {
	out := make(map[string]int64, len(want))
	for key, set := range want {
		var n int64
		for id := range set {
			if have[key][id] {
				n++
			}
		}
		out[key] = n
	}
	return out
}

// FormatCounts renders counts as "k=v, ..." in key order.
func FormatCounts(c map[string]int64) string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, c[k])
	}
	return strings.Join(parts, ", ")
}
