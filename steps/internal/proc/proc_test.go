package proc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
)

func TestRunCapturesOutputAndExitCode(t *testing.T) {
	sec := engine.NewRedactor()
	sec.Add("topsecret")
	res, err := Run(context.Background(), Cmd{Name: "/bin/sh", Args: []string{"-c", "echo out $S; echo err >&2; exit 4"},
		Env: []string{"S=topsecret", "PATH=/usr/bin:/bin"}, Secrets: sec})
	var xe *ExitError
	require.ErrorAs(t, err, &xe)
	assert.Equal(t, 4, xe.ExitCode)
	assert.Equal(t, 4, res.ExitCode)
	assert.Equal(t, "out ***\n", res.Stdout)
	assert.Equal(t, "err\n", res.Stderr)
	assert.Contains(t, err.Error(), "exit status 4: err")
}

func TestRunMissingBinary(t *testing.T) {
	_, err := Run(context.Background(), Cmd{Name: "no-such-tool-xyz"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no-such-tool-xyz: executable not found in PATH")
}

func TestRunTailIsBounded(t *testing.T) {
	res, err := Run(context.Background(), Cmd{Name: "/bin/sh", Args: []string{"-c", "head -c 1000000 /dev/zero | tr '\\0' 'a'; echo; echo last"}})
	require.NoError(t, err)
	assert.LessOrEqual(t, len(res.Stdout), TailSize)
	assert.True(t, strings.HasSuffix(res.Stdout, "last\n"))
}

// Cancelling kills the whole process group: a grandchild that ignores
// nothing but is backgrounded must be gone too.
func TestCancelKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Cmd{Name: "/bin/sh", Args: []string{"-c", "sleep 300 & echo $! > " + pidFile + "; wait"}})
		done <- err
	}()
	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil || len(b) == 0 || b[len(b)-1] != '\n' {
			return false
		}
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	}, 10*time.Second, 5*time.Millisecond)
	cancel()
	err := <-done
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled))
	require.Eventually(t, func() bool { return !alive(pid) }, 10*time.Second, 10*time.Millisecond, "grandchild still running")
}

// alive reports whether pid is a live, non-zombie process.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] != "Z"
}

func TestCommandLineQuotesAndRedacts(t *testing.T) {
	sec := engine.NewRedactor()
	sec.Add("pw123")
	assert.Equal(t, `pg_dump --dbname 'a b' '--x=***' ''`, CommandLine(sec, "pg_dump", "--dbname", "a b", "--x=pw123", ""))
}

func TestRunRefusesSecretsInArgv(t *testing.T) {
	sec := engine.NewRedactor()
	sec.Add("hunter22")
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	_, err := Run(context.Background(), Cmd{Name: "/bin/sh", Args: []string{"-c", "touch " + marker + " # hunter22"}, Secrets: sec})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "argument 2 contains a secret value")
	assert.NotContains(t, err.Error(), "hunter22")
	assert.NoFileExists(t, marker)
}

// A relayed process (docker exec): the announcement line is consumed, not
// shown in errors, and a cancel signals the announced pid through Inside.
func TestCancelSignalsInside(t *testing.T) {
	type call struct{ pid, sig string }
	calls := make(chan call, 4)
	in := &Inside{Announce: "relay pid ", Signal: func(_ context.Context, pid, sig string) error {
		calls <- call{pid, sig}
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	go func() {
		<-started
		cancel()
	}()
	fifo := filepath.Join(t.TempDir(), "ready")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	go func() {
		f, err := os.Open(fifo) // opens once the child has announced
		if err == nil {
			f.Close()
		}
		close(started)
	}()
	res, err := Run(ctx, Cmd{Name: "/bin/sh", Args: []string{"-c", `echo "relay pid 4242" >&2; echo "real error" >&2; : > ` + fifo + `; exec sleep 300`}, Inside: in})
	require.True(t, errors.Is(err, context.Canceled), "err %v", err)
	assert.Equal(t, call{"4242", "TERM"}, <-calls)
	assert.Equal(t, call{"4242", "KILL"}, <-calls, "a client that died leaves nothing behind")
	assert.Contains(t, res.Stderr, "real error")
	assert.NotContains(t, res.Stderr, "relay pid")

	// A first line that is no announcement is kept, and nothing is signalled.
	_, err = Run(context.Background(), Cmd{Name: "/bin/sh", Args: []string{"-c", "echo 'relay pid: none' >&2; exit 3"}, Inside: in})
	var xe *ExitError
	require.ErrorAs(t, err, &xe)
	assert.Contains(t, xe.Stderr, "relay pid: none")
	assert.Empty(t, calls)

	// Nor is a last word without a newline lost.
	_, err = Run(context.Background(), Cmd{Name: "/bin/sh", Args: []string{"-c", "printf 'no such container' >&2; exit 1"}, Inside: in})
	require.ErrorAs(t, err, &xe)
	assert.Contains(t, xe.Stderr, "no such container")
}
