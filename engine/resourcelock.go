package engine

import (
	"context"
	"fmt"
	"time"
)

// Resource locks (`locks:` on a plan or a step) serialise runs of any
// plans that use the same resource: a restic repository, an off-site
// remote, a database being restored. A ResourceLocker takes them: a flock
// under the state dir for one host (FileLocker), PostgreSQL advisory locks
// for a fleet sharing a PostgreSQL run store (engine/store).

// LockHolder says who holds (or asks for) a resource lock.
type LockHolder struct {
	Host  string    `json:"host"`
	PID   int       `json:"pid"`
	RunID string    `json:"run_id"`
	Plan  string    `json:"plan"`
	Step  string    `json:"step,omitempty"` // "" for a plan-level lock
	Since time.Time `json:"since"`
}

func (h LockHolder) String() string {
	who := fmt.Sprintf("plan %s", h.Plan)
	if h.Step != "" {
		who += fmt.Sprintf(" step %s", h.Step)
	}
	short := h.RunID
	if len(short) > 8 {
		short = short[:8]
	}
	s := fmt.Sprintf("%s (run %s, pid %d on %s", who, short, h.PID, h.Host)
	if !h.Since.IsZero() {
		s += ", since " + h.Since.UTC().Format(time.RFC3339)
	}
	return s + ")"
}

// ResourceLocker takes the locks that plans and steps declare.
type ResourceLocker interface {
	// TryLock takes resource's lock for holder without waiting. When
	// another run holds it, it returns a nil HeldLock and that holder as
	// far as it is known (nil: unknown), with a nil error. An error means
	// the lock could not even be asked for (the store is down): the steps
	// that need it fail.
	TryLock(ctx context.Context, resource string, holder LockHolder) (HeldLock, *LockHolder, error)
	// Scope names where the locks exclude, for messages and records:
	// "host" or "fleet".
	Scope() string
}

// HeldLock is a resource lock this run holds.
type HeldLock interface {
	// Check confirms the lock is still held (a round trip to the server
	// for a fleet lock); an error means it is lost. The engine checks
	// before every step that needs the lock and every destructive step.
	Check(ctx context.Context) error
	// Lost is closed once the lock is known to be lost (a watcher may
	// find out between steps).
	Lost() <-chan struct{}
	// Release frees the lock (idempotent).
	Release()
}

// LockWait records one resource lock a run or step asked for.
type LockWait struct {
	Resource string        `json:"resource"`
	Scope    string        `json:"scope"` // host or fleet
	Waited   time.Duration `json:"waited_ns"`
	// Outcome: acquired, skipped (on_lock: skip), busy (on_lock: fail),
	// timeout (lock_wait expired), error (could not ask), lost (held,
	// then lost during the run), interrupted (a signal while waiting).
	Outcome string `json:"outcome"`
	// Holder is who held it when this run found it busy ("" when free).
	Holder string `json:"holder,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Lock wait outcomes.
const (
	LockAcquired    = "acquired"
	LockSkipped     = "skipped"
	LockBusy        = "busy"
	LockTimeout     = "timeout"
	LockError       = "error"
	LockLost        = "lost"
	LockInterrupted = "interrupted"
)
