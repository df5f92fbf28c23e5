package container

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/planrun/planrun/steps/internal/proc"
	"golang.org/x/sys/unix"
)

// The engine relays a tool's stdio through its daemon at a high CPU cost
// (Docker 20.10 here: ~30 ms of CPU per MB; `docker exec pg_dump` of 1 GiB
// takes 5.5x as long as on the host). When planrun runs on the engine's
// host and may enter the container's root (/proc/PID/root: root, or the
// container's own uid), the tool writes into (or reads from) a FIFO
// instead and planrun holds the other end: a kernel pipe, no relay. The FIFO lives in a private directory in the
// container's /tmp that planrun removes as soon as both ends are open, so
// nothing is left behind and a late open cannot create a regular file
// there. When mkfifo fails in the container, the script falls back to
// the relay.
const announceFIFO = `d=$1; shift; if mkdir -m 700 "$d" 2>/dev/null && mkfifo -m 600 "$d/out"; then ` +
	`echo "` + announcePrefix + `$$ fifo" >&2; exec "$@" > "$d/out"; fi; ` +
	`echo "` + announcePrefix + `$$" >&2; exec "$@"`

// announceFIFOIn feeds the tool's stdin from a FIFO. There is no relay to
// fall back to (the client's stdin is not attached), but Probe made sure
// a directory can be made in the container's /tmp.
const announceFIFOIn = `d=$1; shift; if mkdir -m 700 "$d" && mkfifo -m 600 "$d/in"; then ` +
	`echo "` + announcePrefix + `$$ fifo-in" >&2; exec "$@" < "$d/in"; fi; ` +
	`echo "planrun-exec: no FIFO for the input in the container's /tmp" >&2; exit 125`

// rootOf is /proc/PID/root when pid is the container id's process on this
// host and planrun may open it; "" otherwise (a remote engine's pid names
// some other process here: its cgroup does not name the container).
func rootOf(pid, id string) string {
	if n, err := strconv.Atoi(pid); err != nil || n <= 0 || len(id) < 12 {
		return ""
	}
	cg, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil || !bytes.Contains(cg, []byte(id)) {
		return ""
	}
	root := "/proc/" + pid + "/root"
	// The tool's shell, as whatever user it runs, must be able to make its
	// FIFO's directory there: a world-writable /tmp, not mounted read-only.
	if fi, err := os.Stat(root + "/tmp"); err != nil || !fi.IsDir() || fi.Mode().Perm()&0o002 == 0 {
		return ""
	}
	probe, err := os.MkdirTemp(root+"/tmp", ".planrun-probe-")
	if err != nil {
		return ""
	}
	os.Remove(probe)
	return root
}

// fifoSize is the FIFO's buffer once both ends are open. The default 64
// KiB makes planrun wake for every few writes of the tool (pg_dump writes
// 4 KiB at a time), and each such wake-up crosses from the container's
// cgroup into planrun's: with 1 MiB the pg_dump step through a container
// took 0.3-0.6 s less per GiB dumped (scripts/bench-container.sh).
const fifoSize = 1 << 20

// widen grows f's pipe buffer to fifoSize. It is only a speed-up: a user
// over the kernel's pipe limits (fs.pipe-max-size, pipe-user-pages-soft)
// keeps the default.
func widen(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, fifoSize) })
	}
}

// fifo is one tool run's FIFO directory (out or in): dir as the container
// sees it, host the same directory seen from the host.
type fifo struct {
	dir, host string
}

// fifoFor is the FIFO for c's output (or else its input), or nil when the
// relay must carry them (no stream, or the container's root is out of
// reach).
func (t *Target) fifoFor(c proc.Cmd) *fifo {
	if t.root == "" || (c.Stdout == nil && c.Stdin == nil) {
		return nil
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil
	}
	dir := "/tmp/.planrun-" + hex.EncodeToString(b)
	return &fifo{dir: dir, host: t.root + dir}
}

// remove deletes the FIFO and its directory.
func (f *fifo) remove() {
	os.Remove(f.host + "/out")
	os.Remove(f.host + "/in")
	os.Remove(f.host)
}

// feed is the proc.Inside.Attach of an input FIFO run: once the tool's
// shell announces the FIFO, copy in into it. As proc.RunFed does, a
// failed read of in kills the tool before it can see end of input, so a
// restore never commits a partial stream as if it were complete.
func (f *fifo) feed(in io.Reader, name string, signal func(ctx context.Context, pid, sig string) error) func(pid string, words []string) func(error) error {
	return func(pid string, words []string) func(error) error {
		if len(words) == 0 || words[0] != "fifo-in" {
			f.remove()
			return nil // the script failed and said why
		}
		var (
			mu     sync.Mutex
			writer *os.File
		)
		done := make(chan error, 1)
		go func() {
			// Blocks until the tool's shell opens its end.
			w, err := os.OpenFile(f.host+"/in", os.O_WRONLY, 0)
			f.remove()
			if err != nil {
				done <- err
				return
			}
			mu.Lock()
			writer = w
			mu.Unlock()
			widen(w)
			sink := &proc.ErrWriter{W: w}
			_, err = io.Copy(sink, in)
			if err != nil && sink.Err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), proc.GracePeriod)
				_ = signal(ctx, pid, "KILL")
				cancel()
				w.Close()
				done <- proc.ReadError(err, name)
				return
			}
			// Success, or the tool stopped reading (its own error wins).
			w.Close()
			done <- nil
		}()
		return func(error) error {
			select {
			case err := <-done:
				return err
			case <-time.After(proc.GracePeriod):
			}
			mu.Lock()
			w := writer
			mu.Unlock()
			if w == nil {
				// The tool died before opening its end: open it here so
				// that the writer's open returns.
				if r, err := os.OpenFile(f.host+"/in", os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
					r.Close()
				}
			} else {
				w.Close() // the client is gone: stop feeding
			}
			<-done
			return nil
		}
	}
}

// attach is the proc.Inside.Attach of a FIFO run: once the tool's shell
// announces the FIFO, copy what the tool writes there into out.
func (f *fifo) attach(out io.Writer) func(pid string, words []string) func(error) error {
	return func(pid string, words []string) func(error) error {
		if len(words) == 0 || words[0] != "fifo" {
			f.remove()
			return nil // mkfifo failed in the container: the relay carries it
		}
		var (
			mu     sync.Mutex
			reader *os.File
		)
		done := make(chan error, 1)
		go func() {
			// Blocks until the tool's shell opens its end.
			r, err := os.Open(f.host + "/out")
			f.remove() // both ends are open (or never will be): the names can go
			if err != nil {
				done <- err
				return
			}
			mu.Lock()
			reader = r
			mu.Unlock()
			widen(r)
			_, err = io.Copy(out, r)
			r.Close()
			done <- err
		}()
		return func(childErr error) error {
			select {
			case err := <-done:
				return err
			case <-time.After(proc.GracePeriod):
			}
			mu.Lock()
			r := reader
			mu.Unlock()
			if r == nil {
				// The tool died before opening its end: open it here so
				// that the reader's open returns (and sees end of file).
				if w, err := os.OpenFile(f.host+"/out", os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
			} else {
				// The client is gone and the FIFO is still open: whatever
				// holds its end, stop reading, and fail unless the client did.
				r.Close()
			}
			if err := <-done; err != nil || childErr != nil {
				return err
			}
			return errors.New("the tool's output FIFO stayed open after the tool ended")
		}
	}
}
