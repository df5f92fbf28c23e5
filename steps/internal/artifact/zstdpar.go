package artifact

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// zstdChunk is the size of the independent pieces the parallel encoder
// compresses. Each becomes one zstd frame; concatenated frames are a valid
// stream for `zstd -d`. 2 MiB is zstd -3's window: the history lost at
// chunk starts measured about 1% of size on mixed data (6% on a tar of many
// similar small text files), and the in-flight buffers stay small enough
// for a < 64 MiB process. 4 MiB chunks came within 1% of `zstd -T2 -3` on
// those small files but took a third more CPU (encoder history and chunks
// no longer fit the cache).
const zstdChunk = 2 << 20

// parallelZstd compresses fixed-size chunks on all cores and writes the
// frames in order. The streaming klauspost encoder only pipelines one block
// ahead; independent frames scale with the number of cores.
type parallelZstd struct {
	out    io.Writer
	level  zstd.EncoderLevel
	cur    *zjob
	free   chan *zjob // recycled buffers bound memory: at most cap jobs exist
	work   chan *zjob
	order  chan *zjob
	done   chan struct{} // closed when the ordered writer exits
	wg     sync.WaitGroup
	err    firstError
	closed bool
	wrote  bool // a frame was dispatched (an empty stream still needs one)
}

type zjob struct {
	in, out []byte
	err     error
	ready   chan struct{}
}

func newParallelZstd(out io.Writer, level int) (*parallelZstd, error) {
	workers := runtime.GOMAXPROCS(0)
	lvl := zstd.EncoderLevelFromZstd(level)
	jobs := workers + 1 // one filling (or being written), the rest compressing
	z := &parallelZstd{
		out: out, level: lvl,
		free:  make(chan *zjob, jobs),
		work:  make(chan *zjob, jobs),
		order: make(chan *zjob, jobs),
		done:  make(chan struct{}),
	}
	encs := make([]*zstd.Encoder, workers)
	for i := range encs {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(windowFor(level)))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		encs[i] = enc
	}
	for i := 0; i < jobs; i++ {
		z.free <- &zjob{ready: make(chan struct{}, 1)}
	}
	for _, enc := range encs {
		z.wg.Add(1)
		go z.compress(enc)
	}
	go z.writeInOrder()
	return z, nil
}

// windowFor keeps the window no larger than a chunk: a frame never refers
// further back than its own start anyway.
func windowFor(level int) int {
	return zstdChunk
}

func (z *parallelZstd) compress(enc *zstd.Encoder) {
	defer z.wg.Done()
	for j := range z.work {
		j.out = enc.EncodeAll(j.in, j.out[:0])
		j.ready <- struct{}{}
	}
}

func (z *parallelZstd) writeInOrder() {
	defer close(z.done)
	for j := range z.order {
		<-j.ready
		if z.failed() == nil {
			if _, err := z.out.Write(j.out); err != nil {
				z.fail(err)
			}
		}
		j.in = j.in[:0]
		z.free <- j
	}
}

func (z *parallelZstd) fail(err error) { z.err.set(err) }

func (z *parallelZstd) failed() error { return z.err.get() }

func (z *parallelZstd) Write(p []byte) (int, error) {
	if z.closed {
		return 0, errors.New("zstd: write after close")
	}
	n := 0
	for len(p) > 0 {
		if err := z.failed(); err != nil {
			return n, err
		}
		if z.cur == nil {
			z.cur = <-z.free
			if cap(z.cur.in) < zstdChunk {
				// Allocated once per job: EncodeAll growing out by
				// doubling would leave garbage that inflates the heap.
				z.cur.in = make([]byte, 0, zstdChunk)
				z.cur.out = make([]byte, 0, zstdChunk+zstdChunk/128+1<<10)
			}
		}
		room := zstdChunk - len(z.cur.in)
		k := min(room, len(p))
		z.cur.in = append(z.cur.in, p[:k]...)
		p, n = p[k:], n+k
		if len(z.cur.in) == zstdChunk {
			z.dispatch()
		}
	}
	return n, z.failed()
}

func (z *parallelZstd) dispatch() {
	j := z.cur
	z.cur = nil
	z.wrote = true
	z.order <- j
	z.work <- j
}

// Close compresses what is buffered, waits for every frame to be written
// and returns the first error.
func (z *parallelZstd) Close() error {
	if z.closed {
		return z.failed()
	}
	z.closed = true
	if z.cur == nil && !z.wrote {
		z.cur = <-z.free
	}
	if z.cur != nil && (len(z.cur.in) > 0 || !z.wrote) {
		z.dispatch()
	} else if z.cur != nil {
		z.free <- z.cur
		z.cur = nil
	}
	close(z.work)
	close(z.order)
	z.wg.Wait()
	<-z.done
	return z.failed()
}

// abort stops the pipeline without caring about the output.
func (z *parallelZstd) abort() {
	z.fail(errors.New("aborted"))
	_ = z.Close()
}
