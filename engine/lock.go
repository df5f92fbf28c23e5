package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// FileLocker is the default ResourceLocker: a flock per resource on a file
// under <state dir>/locks/resources, so it excludes runs on this host
// only. The kernel frees the lock when the holder dies; the file keeps the
// holder (LockHolder as JSON) so a waiting run can name it.
type FileLocker struct {
	Dir string
}

// NewFileLocker returns the file locker of a state dir.
func NewFileLocker(stateDir string) *FileLocker {
	return &FileLocker{Dir: filepath.Join(stateDir, "locks", "resources")}
}

// Scope is "host": the locks exclude runs on this machine.
func (l *FileLocker) Scope() string { return "host" }

// TryLock takes resource's lock without waiting.
func (l *FileLocker) TryLock(_ context.Context, resource string, holder LockHolder) (HeldLock, *LockHolder, error) {
	if l.Dir == "" {
		return nil, nil, errors.New("no state dir for resource locks")
	}
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("resource lock: %w", err)
	}
	path := filepath.Join(l.Dir, ResourceLockFile(resource))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("resource lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		data, _ := os.ReadFile(path)
		f.Close()
		var h LockHolder
		if json.Unmarshal(data, &h) != nil || h.PID == 0 {
			return nil, nil, nil // the holder has not written itself yet
		}
		return nil, &h, nil
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("resource lock %s: %w", path, err)
	}
	if data, err := json.Marshal(holder); err == nil && f.Truncate(0) == nil {
		_, _ = f.WriteAt(append(data, '\n'), 0)
	}
	return &fileLock{f: f}, nil, nil
}

// ResourceLockFile is the lock file name of a resource: a readable prefix
// (characters outside [A-Za-z0-9._-] become _, no leading dot) and a hash
// of the whole name, so different names never share a file and no name
// can point outside the lock dir.
func ResourceLockFile(resource string) string {
	safe := []byte(resource)
	for i, c := range safe {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' && i > 0
		if !ok {
			safe[i] = '_'
		}
	}
	if len(safe) > 64 {
		safe = safe[:64]
	}
	sum := sha256.Sum256([]byte(resource))
	return string(safe) + "-" + hex.EncodeToString(sum[:8]) + ".lock"
}

// fileLock is a held FileLocker lock: a local flock cannot be lost while
// the process lives.
type fileLock struct {
	f *os.File
}

// neverLost is the Lost channel of locks that cannot be lost.
var neverLost = make(chan struct{})

func (l *fileLock) Check(context.Context) error { return nil }
func (l *fileLock) Lost() <-chan struct{}       { return neverLost }

func (l *fileLock) Release() {
	if l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}
