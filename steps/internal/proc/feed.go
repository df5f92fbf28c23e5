package proc

import (
	"context"
	"fmt"
	"io"
	"os"
)

// RunFed runs c with c.Stdin as its input through a pipe we own. If
// reading it fails (truncated or tampered artifact), the child is killed
// before it can see end-of-input, so a restore tool never commits a
// partial stream as if it were complete; the read error is returned. A
// c.Stdin moved elsewhere by the wrapping (a container's input FIFO, fed
// by c.Inside with the same rule) leaves nothing to do here.
func RunFed(ctx context.Context, c Cmd) (Result, error) {
	in := c.Stdin
	if in == nil {
		return Run(ctx, c)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return Result{ExitCode: -1}, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.Stdin = pr
	readErr := make(chan error, 1)
	go func() {
		sink := &ErrWriter{W: pw}
		_, err := io.Copy(sink, in)
		if err != nil && sink.Err == nil {
			err = ReadError(err, c.Name)
			// A read-side error: kill the child, keep our write end open
			// until it is gone so it cannot read a clean EOF.
			readErr <- err
			cancel()
			return
		}
		// Success, or the child closed its end early (its own error wins).
		pw.Close()
		readErr <- nil
	}()
	res, runErr := Run(cctx, c)
	pr.Close()
	pw.Close() // no-op when already closed; unblocks a pending copy otherwise
	rerr := <-readErr
	if rerr != nil && ctx.Err() == nil {
		return res, rerr
	}
	return res, runErr
}

// ReadError is the error of a feed whose input failed.
func ReadError(err error, name string) error {
	return fmt.Errorf("reading input: %w (%s was stopped before end of input)", err, name)
}

// ErrWriter remembers its own write error, to tell it from a read error
// in an io.Copy into it.
type ErrWriter struct {
	W   io.Writer
	Err error
}

func (e *ErrWriter) Write(p []byte) (int, error) {
	n, err := e.W.Write(p)
	if err != nil {
		e.Err = err
	}
	return n, err
}
