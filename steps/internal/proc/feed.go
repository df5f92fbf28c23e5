package proc

import (
	"context"
	"fmt"
	"io"
	"os"
)

// RunFed runs c with in as its stdin through a pipe we own. If reading in
// fails (truncated or tampered artifact), the child is killed before it can
// see end-of-input, so a restore tool never commits a partial stream as if
// it were complete; the read error is returned.
func RunFed(ctx context.Context, c Cmd, in io.Reader) (Result, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return Result{ExitCode: -1}, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.Stdin = pr
	readErr := make(chan error, 1)
	go func() {
		sink := &errWriter{w: pw}
		_, err := io.Copy(sink, in)
		if err != nil && sink.err == nil {
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
		return res, fmt.Errorf("reading input: %w (%s was stopped before end of input)", rerr, c.Name)
	}
	return res, runErr
}

// errWriter remembers its own write error, to tell it from a read error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}
