package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrLocked is returned when another run of the same plan holds the lock.
type ErrLocked struct {
	Plan   string
	Holder string // "run <id> (pid <pid>)" as written by the holder
	Path   string
}

func (e *ErrLocked) Error() string {
	h := e.Holder
	if h == "" {
		h = "another process"
	}
	return fmt.Sprintf("plan %q is already running: lock %s held by %s", e.Plan, e.Path, h)
}

// Lock is an exclusive, per-plan lock (flock on a file under the state
// dir). The kernel releases it when the process dies, so a crash never
// leaves a stale lock behind.
type Lock struct {
	f *os.File
}

// AcquireLock takes the plan's lock. With wait it polls until the lock is
// free or ctx ends (a signal while waiting stops the wait); otherwise it
// fails at once with *ErrLocked.
func AcquireLock(ctx context.Context, stateDir, plan, runID string, wait bool) (*Lock, error) {
	dir := filepath.Join(stateDir, "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	path := filepath.Join(dir, plan+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if !wait || !errors.Is(err, syscall.EWOULDBLOCK) {
			break
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			holder, _ := os.ReadFile(path)
			return nil, fmt.Errorf("waiting for the lock of plan %q (held by %s): %w", plan, strings.TrimSpace(string(holder)), context.Cause(ctx))
		case <-t.C:
		}
	}
	if err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &ErrLocked{Plan: plan, Holder: strings.TrimSpace(string(holder)), Path: path}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("run %s (pid %d)\n", runID, os.Getpid())), 0)
	}
	return &Lock{f: f}, nil
}

// Release frees the lock.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}
