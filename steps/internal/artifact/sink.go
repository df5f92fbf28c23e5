package artifact

import (
	"errors"
	"hash"
	"io"
	"sync"
)

// sinkBuf is the size of the blocks handed to the file: large enough that
// small writes (tar headers) never become one syscall each.
const sinkBuf = 1 << 20

// sink is the end of the chain: it batches writes into large blocks and
// hashes and writes them on its own goroutine, so the sha256 and the disk
// writes overlap with compression or encryption instead of adding to them.
type sink struct {
	file  io.Writer
	hash  hash.Hash
	cur   []byte
	free  chan []byte
	full  chan []byte
	done  chan struct{}
	n     int64 // bytes on disk, valid after close
	mu    sync.Mutex
	err   error
	close bool
}

func newSink(file io.Writer, h hash.Hash) *sink {
	const bufs = 3
	s := &sink{file: file, hash: h, free: make(chan []byte, bufs), full: make(chan []byte, bufs), done: make(chan struct{})}
	for i := 0; i < bufs; i++ {
		s.free <- nil // allocated lazily: tiny artifacts stay tiny
	}
	go s.loop()
	return s
}

func (s *sink) loop() {
	defer close(s.done)
	for b := range s.full {
		if s.failed() == nil {
			s.hash.Write(b)
			n, err := s.file.Write(b)
			s.n += int64(n)
			if err != nil {
				s.setErr(err)
			}
		}
		s.free <- b[:0]
	}
}

func (s *sink) setErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *sink) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *sink) Write(p []byte) (int, error) {
	if s.close {
		return 0, errors.New("write after close")
	}
	n := 0
	for len(p) > 0 {
		if err := s.failed(); err != nil {
			return n, err
		}
		if s.cur == nil {
			s.cur = <-s.free
			if s.cur == nil {
				s.cur = make([]byte, 0, sinkBuf)
			}
		}
		k := min(sinkBuf-len(s.cur), len(p))
		s.cur = append(s.cur, p[:k]...)
		p, n = p[k:], n+k
		if len(s.cur) == sinkBuf {
			s.full <- s.cur
			s.cur = nil
		}
	}
	return n, s.failed()
}

// Close flushes and waits for the writer goroutine; it returns the first
// write error. Safe to call twice.
func (s *sink) Close() error {
	if s.close {
		return s.failed()
	}
	s.close = true
	if len(s.cur) > 0 {
		s.full <- s.cur
		s.cur = nil
	}
	close(s.full)
	<-s.done
	return s.failed()
}
