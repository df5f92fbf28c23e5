// Package proc is the only caller of os/exec: every child process runs in
// its own process group, is cancelled through its context (SIGTERM to the
// group, SIGKILL after a grace period), and has its stderr kept as a
// bounded, redacted tail.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/planrun/planrun/engine"
)

// TailSize bounds the captured stdout/stderr tails.
const TailSize = 64 << 10

// GracePeriod is how long a cancelled group gets between SIGTERM and SIGKILL.
var GracePeriod = 10 * time.Second

// Cmd describes one child process.
type Cmd struct {
	Name string   // program: a name looked up in PATH, or a path
	Args []string // arguments after the program name
	Env  []string // full environment (nil: none besides what the caller gives)
	Dir  string
	// Stdin, Stdout: streams; a nil Stdout is captured into Result.Stdout.
	Stdin  io.Reader
	Stdout io.Writer
	// Stderr, if set, also receives stderr (besides the tail).
	Stderr  io.Writer
	Secrets *engine.Redactor
	// Inside, when set, is the process the child only relays, e.g. the
	// tool `docker exec` starts in a container: signals to the client do
	// not reach it, so Run signals it through Inside.
	Inside *Inside
}

// Inside is a process a child started where the child's signals do not
// reach (another PID namespace).
type Inside struct {
	// Announce prefixes the child's first stderr line, which ends with the
	// process's pid where it runs; Run consumes that line.
	Announce string
	// Signal sends sig ("TERM", "KILL") to pid where the process runs.
	Signal func(ctx context.Context, pid, sig string) error
	// Attach, if set, gets the words after the pid on the announcement
	// line (e.g. that the process writes to a FIFO rather than to the
	// child's stdout) and may start moving data; Run waits for the returned
	// function after the child exits, and its error fails the run.
	Attach func(pid string, words []string) (wait func(childErr error) error)
}

// Result is what a finished child left behind.
type Result struct {
	ExitCode int
	Stdout   string // tail (only when Cmd.Stdout was nil), redacted
	Stderr   string // tail, redacted
	Duration time.Duration
}

// ExitError is returned when the child ran but exited non-zero or by signal.
type ExitError struct {
	Name     string
	ExitCode int
	Signal   string
	Stderr   string // redacted tail
}

func (e *ExitError) Error() string {
	how := fmt.Sprintf("exit status %d", e.ExitCode)
	if e.Signal != "" {
		how = "killed by " + e.Signal
	}
	msg := fmt.Sprintf("%s: %s", e.Name, how)
	if tail := lastLines(e.Stderr, 20); tail != "" {
		msg += ": " + tail
	}
	return msg
}

// CommandLine renders the argv for logs and dry-run, shell-quoted and redacted.
func CommandLine(secrets *engine.Redactor, name string, args ...string) string {
	parts := make([]string, 0, len(args)+1)
	for _, a := range append([]string{name}, args...) {
		parts = append(parts, Quote(secrets.Redact(a)))
	}
	return strings.Join(parts, " ")
}

// Quote shell-quotes s when needed (POSIX single quotes): for display,
// and for the shell commands planrun writes (restore_command).
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,@%+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Run starts the child and waits. A non-zero exit is an *ExitError; a
// cancelled context kills the whole process group and returns ctx.Err()
// wrapped with the child's name.
func Run(ctx context.Context, c Cmd) (Result, error) {
	// Any user on the host can read /proc/*/cmdline: a known secret in argv
	// is refused, not run.
	for i, a := range c.Args {
		if c.Secrets.Redact(a) != a {
			return Result{ExitCode: -1}, fmt.Errorf("%s: argument %d contains a secret value; pass secrets through env or files, never argv", c.Name, i+1)
		}
	}
	// The lookup validate --strict does too: the child's PATH first.
	path, err := engine.LookPath(c.Name, c.Env)
	if err != nil {
		return Result{ExitCode: -1}, err
	}
	cmd := exec.Command(path, c.Args...)
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	cmd.Stdin = c.Stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	stderr := newTail(TailSize)
	var stdout *tail
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	} else {
		stdout = newTail(TailSize)
		cmd.Stdout = stdout
	}
	cmd.Stderr = stderr
	if c.Stderr != nil {
		cmd.Stderr = io.MultiWriter(stderr, c.Stderr)
	}
	var inside *announced
	if c.Inside != nil {
		inside = &announced{in: c.Inside, next: cmd.Stderr, known: make(chan struct{})}
		cmd.Stderr = inside
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("%s: %w", c.Name, err)
	}
	pgid := cmd.Process.Pid

	// Cancellation: SIGTERM the group, then SIGKILL it after the grace period.
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		if inside != nil {
			// The tool first: its client then exits with it.
			signalInside(c.Inside, inside, done, "TERM")
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(GracePeriod):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	werr := cmd.Wait()
	close(done)
	// Whatever the leader's fate, leave no member of its group behind.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if inside != nil {
		inside.flush()
	}
	if inside != nil && inside.pid != "" && (werr != nil || ctx.Err() != nil) {
		// A client that died (killed, or its stdout closed) leaves the tool
		// running in the container, holding its snapshot and locks. Wait
		// has copied all of stderr: the pid is known or never will be.
		signalInside(c.Inside, inside, nil, "KILL")
	}
	if inside != nil && inside.wait != nil {
		// The data path's own failure (a write to the artifact, a read of
		// the input) is the cause, whatever the tool then did.
		if aerr := inside.wait(werr); aerr != nil && ctx.Err() == nil {
			return Result{ExitCode: -1, Duration: time.Since(start), Stderr: c.Secrets.Redact(stderr.String())}, fmt.Errorf("%s: %w", c.Name, aerr)
		}
	}

	res := Result{Duration: time.Since(start), Stderr: c.Secrets.Redact(stderr.String())}
	if stdout != nil {
		res.Stdout = c.Secrets.Redact(stdout.String())
	}
	if werr == nil {
		return res, nil
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		res.ExitCode = ee.ExitCode()
		if ctx.Err() != nil {
			return res, fmt.Errorf("%s: %w", c.Name, ctx.Err())
		}
		xe := &ExitError{Name: c.Name, ExitCode: res.ExitCode, Stderr: res.Stderr}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			xe.Signal = ws.Signal().String()
		}
		return res, xe
	}
	res.ExitCode = -1
	if ctx.Err() != nil {
		return res, fmt.Errorf("%s: %w", c.Name, ctx.Err())
	}
	return res, fmt.Errorf("%s: %w", c.Name, werr)
}

// announced consumes the first stderr line when it announces a pid.
type announced struct {
	in    *Inside
	next  io.Writer
	line  []byte
	pid   string
	wait  func(error) error // from Inside.Attach
	known chan struct{}     // closed once the first line is in
	once  sync.Once
}

func (a *announced) Write(p []byte) (int, error) {
	n := len(p)
	select {
	case <-a.known:
		_, err := a.next.Write(p)
		return n, err
	default:
	}
	i := bytes.IndexByte(p, '\n')
	if i < 0 && len(a.line)+len(p) < 256 {
		a.line = append(a.line, p...)
		return n, nil
	}
	rest := []byte(nil)
	if i >= 0 {
		a.line, rest = append(a.line, p[:i+1]...), p[i+1:]
	} else {
		a.line, rest = append(a.line, p...), nil
	}
	first := strings.TrimSpace(string(a.line))
	words := []string(nil)
	if after, ok := strings.CutPrefix(first, a.in.Announce); ok {
		words = strings.Fields(after)
	}
	if len(words) > 0 && strings.Trim(words[0], "0123456789") == "" {
		a.pid = words[0]
		if a.in.Attach != nil {
			a.wait = a.in.Attach(a.pid, words[1:])
		}
	} else {
		rest = append(a.line, rest...) // not an announcement: pass it on
	}
	a.once.Do(func() { close(a.known) })
	if len(rest) > 0 {
		if _, err := a.next.Write(rest); err != nil {
			return n, err
		}
	}
	return n, nil
}

// flush passes on a first line that never ended (the child died in it):
// it is the child's message, not an announcement.
func (a *announced) flush() {
	select {
	case <-a.known:
	default:
		if len(a.line) > 0 {
			_, _ = a.next.Write(a.line)
		}
	}
}

// signalInside signals the announced process, waiting for the announcement
// up to the grace period (a cancel can come before it) unless done closes.
func signalInside(in *Inside, a *announced, done <-chan struct{}, sig string) {
	select {
	case <-a.known:
	case <-done:
		return
	case <-time.After(GracePeriod):
		return
	}
	if a.pid == "" {
		return
	}
	// The step's context is gone; this signal gets its own short one.
	ctx, cancel := context.WithTimeout(context.Background(), GracePeriod)
	defer cancel()
	_ = in.Signal(ctx, a.pid, sig)
}

// tail keeps the last n bytes written to it.
type tail struct {
	mu  sync.Mutex
	n   int
	buf []byte
	cut bool
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.n {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.n:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > t.n {
		b, t.cut = b[len(b)-t.n:], true
	}
	if t.cut {
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// lastLines returns the last n non-empty lines of s, joined with " | ".
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
