package mongoarchive

import (
	"io"
	"sync"
	"sync/atomic"
)

// Tee writes a stream to its destination and parses a copy of it in a
// goroutine, so the parse runs alongside the writer instead of in front
// of it. Memory is bounded: a fixed set of chunk buffers circulates
// between Write and the parser; when all are in flight Write waits for
// the parser (which is much faster than compression and encryption). The
// destination always receives exactly the bytes written, whatever the
// parser thinks of them; after a parse error the copy is simply dropped.
type Tee struct {
	w      io.Writer
	full   chan []byte // chunks for the parser
	free   chan []byte // chunks it has finished with
	failed atomic.Bool
	once   sync.Once
	done   chan struct{}
	sum    *Summary
	err    error
}

const (
	teeChunk  = 256 << 10
	teeChunks = 8
)

// NewTee starts the parser; call Finish once the writing is over.
func NewTee(w io.Writer) *Tee {
	t := &Tee{w: w, full: make(chan []byte, teeChunks), free: make(chan []byte, teeChunks), done: make(chan struct{})}
	for range teeChunks {
		t.free <- make([]byte, teeChunk)
	}
	go t.parse()
	return t
}

func (t *Tee) parse() {
	defer close(t.done)
	t.sum, t.err = Parse(&chunkReader{t: t})
	if t.err != nil {
		t.failed.Store(true)
	}
	// Give back whatever is still queued or comes later, until Finish.
	for b := range t.full {
		t.free <- b[:cap(b)]
	}
}

// Write writes p to the destination, then queues the bytes it took for
// the parser.
func (t *Tee) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	q := p[:n]
	for len(q) > 0 && !t.failed.Load() {
		b := <-t.free
		m := copy(b, q)
		t.full <- b[:m]
		q = q[m:]
	}
	return n, err
}

// Finish ends the parser's input and returns what it found: the archive's
// summary, or why the stream is not a complete, well-formed archive. No
// Write may follow.
func (t *Tee) Finish() (*Summary, error) {
	t.once.Do(func() { close(t.full) })
	<-t.done
	return t.sum, t.err
}

// chunkReader is the parser's side of the queue.
type chunkReader struct {
	t   *Tee
	cur []byte // the chunk being read
	off int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.cur != nil && r.off == len(r.cur) {
		r.t.free <- r.cur[:cap(r.cur)]
		r.cur = nil
	}
	if r.cur == nil {
		b, ok := <-r.t.full
		if !ok {
			return 0, io.EOF
		}
		r.cur, r.off = b, 0
	}
	n := copy(p, r.cur[r.off:])
	r.off += n
	return n, nil
}
