// Package lines splits a child's output stream into lines for parsers of
// line-oriented JSON (restic --json, rclone --use-json-log).
package lines

import (
	"bytes"
	"sync"
)

// MaxLine bounds a buffered line; longer lines are passed on cut.
const MaxLine = 1 << 20

// Writer calls Fn with each complete line (without the newline). It is
// safe for concurrent use; call Flush after the writer's source is done
// to deliver a last line without a newline.
type Writer struct {
	Fn  func(line []byte)
	mu  sync.Mutex
	buf []byte
}

// New returns a Writer calling fn per line.
func New(fn func(line []byte)) *Writer { return &Writer{Fn: fn} }

func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.Fn(bytes.TrimRight(w.buf[:i], "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > MaxLine {
		w.Fn(w.buf)
		w.buf = nil
	}
	// Compact so a long stream does not grow the backing array.
	if cap(w.buf) > 4*MaxLine {
		w.buf = append([]byte(nil), w.buf...)
	}
	return len(p), nil
}

// Flush delivers a pending partial line.
func (w *Writer) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.Fn(w.buf)
		w.buf = nil
	}
}
