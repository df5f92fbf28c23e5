package container

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/internal/proc"
	"golang.org/x/sys/unix"
)

// In a real container on this host, a tool's output takes the FIFO, every
// byte arrives, and nothing is left in the container's /tmp; without a
// root to enter, the same command goes through the engine's relay.
func TestFIFORealContainer(t *testing.T) {
	docker := testenv.RequireDocker(t)
	pg := testenv.PGContainer(t)
	const n = 64 << 20
	want := sha256.Sum256([]byte(strings.Repeat("x", n)))
	for _, direct := range []bool{true, false} {
		tg := Target{Container: &Container{Name: pg.Name, Engine: "docker", User: "postgres"}}
		if err := tg.Probe(context.Background(), os.Environ(), nil); err != nil {
			t.Fatal(err)
		}
		if tg.root == "" {
			t.Fatal("Probe found no container root to enter; the tests run as root on the engine's host")
		}
		if !direct {
			tg.root = ""
		}
		h := sha256.New()
		c := tg.Wrap(proc.Cmd{Name: "sh", Args: []string{"-c", "head -c " + strconv.Itoa(n) + " /dev/zero | tr '\\0' x"},
			Env: os.Environ(), Stdout: h})
		// Which way the container's shell took: its announcement says.
		announced := ""
		if attach := c.Inside.Attach; attach != nil {
			c.Inside.Attach = func(pid string, words []string) func(error) error {
				announced = strings.Join(words, " ")
				return attach(pid, words)
			}
		}
		if _, err := proc.Run(context.Background(), c); err != nil {
			t.Fatalf("direct=%v: %v", direct, err)
		}
		if got := h.Sum(nil); string(got) != string(want[:]) {
			t.Errorf("direct=%v: the output differs", direct)
		}
		if used := announced == "fifo"; used != direct {
			t.Errorf("direct=%v: FIFO used = %v", direct, used)
		}
		out, err := exec.Command(docker, "exec", pg.Name, "ls", "-A", "/tmp").CombinedOutput()
		if err != nil || strings.Contains(string(out), ".planrun-") {
			t.Errorf("direct=%v: container /tmp: %v %s", direct, err, out)
		}
	}
}

// failingReader gives n zero bytes, then an error (a truncated artifact).
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("artifact cut short")
	}
	k := min(len(p), r.n)
	clear(p[:k])
	r.n -= k
	return k, nil
}

// A restore's input takes a FIFO too: every byte reaches the tool, and an
// input that fails mid-stream kills the tool before it sees end of input.
func TestFIFOInRealContainer(t *testing.T) {
	docker := testenv.RequireDocker(t)
	pg := testenv.PGContainer(t)
	tg := Target{Container: &Container{Name: pg.Name, Engine: "docker", User: "postgres"}}
	if err := tg.Probe(context.Background(), os.Environ(), nil); err != nil {
		t.Fatal(err)
	}
	run := func(in io.Reader, script string) (string, string, error) {
		c := tg.Wrap(proc.Cmd{Name: "sh", Args: []string{"-c", script}, Env: os.Environ(), Stdin: in})
		if c.Stdin != nil {
			t.Fatal("the engine client still gets the input: no FIFO")
		}
		announced := ""
		attach := c.Inside.Attach
		c.Inside.Attach = func(pid string, words []string) func(error) error {
			announced = strings.Join(words, " ")
			return attach(pid, words)
		}
		res, err := proc.RunFed(context.Background(), c)
		return announced, res.Stdout + res.Stderr, err
	}
	const n = 48 << 20
	announced, out, err := run(strings.NewReader(strings.Repeat("y", n)), "sha256sum")
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte(strings.Repeat("y", n)))
	if announced != "fifo-in" || !strings.Contains(out, hex.EncodeToString(want[:])) {
		t.Fatalf("announced %q, output %q", announced, out)
	}
	_, out, err = run(&failingReader{n: 8 << 20}, "cat > /dev/null && echo saw-end-of-input >&2")
	if err == nil || !strings.Contains(err.Error(), "reading input: artifact cut short") {
		t.Fatalf("err %v", err)
	}
	if strings.Contains(out, "saw-end-of-input") {
		t.Fatalf("the tool saw end of input after a failed read: %s", out)
	}
	ls, err := exec.Command(docker, "exec", pg.Name, "ls", "-A", "/tmp").CombinedOutput()
	if err != nil || strings.Contains(string(ls), ".planrun-") {
		t.Errorf("container /tmp: %v %s", err, ls)
	}
}

// widen gives a FIFO the larger buffer (fifoSize is within the default
// fs.pipe-max-size, so any user gets it).
func TestWidenFIFO(t *testing.T) {
	path := t.TempDir() + "/p"
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	size := func() int {
		n, err := unix.FcntlInt(w.Fd(), unix.F_GETPIPE_SZ, 0)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if size() >= fifoSize {
		t.Fatalf("a new FIFO already has %d bytes of buffer", size())
	}
	widen(r)
	if got := size(); got != fifoSize {
		t.Fatalf("buffer after widen: %d bytes, want %d", got, fifoSize)
	}
}
