package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
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
	// "host" or "fleet". It is asked again after each TryLock: a locker
	// that fell back to this host says so for the lock it just answered.
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

// heldLock is a resource lock the run holds.
type heldLock struct {
	name string
	lock HeldLock
	plan bool  // the plan's locks: (held for the whole run)
	lost error // once lost: it is never taken again
}

// lockRefusal is why a scope's locks were not all taken; outcome is one
// of the LockWait outcomes.
type lockRefusal struct {
	outcome string
	err     error
}

// errLockLost is the cause of a step's context when a lock it needs is
// lost while it runs.
type errLockLost struct{ h *heldLock }

func (e errLockLost) Error() string { return "resource lock " + e.h.name + " lost" }

// lockCheckTimeout bounds one Check of a held lock.
const lockCheckTimeout = 30 * time.Second

// resolveLocks evaluates a locks: list over vars and env (never step
// outputs) into sorted, distinct resource names: the order every run
// takes them in, so two runs never wait for each other crosswise within
// one scope.
func (r *run) resolveLocks(names []*LockName, what string) ([]string, error) {
	scope := r.scope.exprScope(r.runMap(), nil)
	out := make([]string, 0, len(names))
	for _, n := range names {
		name := n.Text
		if n.tpl != nil {
			v, err := n.tpl.Eval(scope)
			if err != nil {
				return nil, fmt.Errorf("%s:%d:%d: %s: %v", r.plan.File, n.Line, n.Col, what, err)
			}
			name = FormatValue(v)
		}
		if msg := badLockName(name); msg != "" {
			return nil, fmt.Errorf("%s:%d:%d: %s: %s (from %q)", r.plan.File, n.Line, n.Col, what, msg, n.Text)
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// takeLocks takes names in order for step ("" for the plan) under the
// policy onLock/wait. It returns a LockWait for every lock asked for; on a
// refusal it releases what it took.
func (r *run) takeLocks(ctx context.Context, names []string, step, onLock string, wait time.Duration, log *slog.Logger) ([]*heldLock, []LockWait, *lockRefusal) {
	var taken []*heldLock
	var waits []LockWait
	for _, name := range names {
		h, w, refusal := r.takeLock(ctx, name, step, onLock, wait, log)
		waits = append(waits, w)
		if refusal != nil {
			for _, t := range taken {
				t.lock.Release()
			}
			return nil, waits, refusal
		}
		taken = append(taken, h)
	}
	return taken, waits, nil
}

// takeLock takes one resource lock. With on_lock: wait it polls TryLock
// (200 ms, doubling up to 2 s) until the lock is free, wait expires (0:
// until ctx ends: the plan's timeout or a signal) or a signal arrives.
func (r *run) takeLock(ctx context.Context, name, step, onLock string, wait time.Duration, log *slog.Logger) (*heldLock, LockWait, *lockRefusal) {
	scope := r.locker.Scope()
	lw := LockWait{Resource: name, Scope: scope}
	began := time.Now()
	refuse := func(outcome string, err error) (*heldLock, LockWait, *lockRefusal) {
		lw.Waited, lw.Outcome = time.Since(began), outcome
		lw.Error = r.scope.Secrets.Redact(err.Error())
		return nil, lw, &lockRefusal{outcome: outcome, err: err}
	}
	try := func(ctx context.Context) (HeldLock, error) {
		me := LockHolder{Host: r.host, PID: os.Getpid(), RunID: r.id, Plan: r.plan.Name, Step: step, Since: time.Now().UTC()}
		held, by, err := r.locker.TryLock(ctx, name, me)
		scope = r.locker.Scope() // a locker that fell back says where this answer came from
		lw.Scope = scope
		if err == nil && held == nil {
			lw.Holder = "an unknown run"
			if by != nil {
				lw.Holder = by.String()
			}
		}
		return held, err
	}
	held, err := try(ctx)
	if err != nil {
		return refuse(LockError, fmt.Errorf("resource lock %s (%s): cannot ask for it: %w", name, scope, err))
	}
	if held == nil {
		switch onLock {
		case OnLockSkip:
			return refuse(LockSkipped, fmt.Errorf("resource lock %s (%s) is held by %s (on_lock: skip)", name, scope, lw.Holder))
		case OnLockFail:
			return refuse(LockBusy, fmt.Errorf("resource lock %s (%s) is held by %s (on_lock: fail)", name, scope, lw.Holder))
		}
		wctx := ctx
		upTo := "the plan's timeout, else until a signal"
		if wait > 0 {
			var cancel context.CancelFunc
			wctx, cancel = context.WithTimeoutCause(ctx, wait, fmt.Errorf("%w (%s)", errLockWait, wait))
			defer cancel()
			upTo = wait.String()
		}
		log.Warn("waiting for a resource lock", "resource", name, "scope", scope, "holder", lw.Holder, "up_to", upTo)
		delay := 200 * time.Millisecond
		for held == nil {
			t := time.NewTimer(delay)
			select {
			case <-wctx.Done():
				t.Stop()
				cause := context.Cause(wctx)
				if errors.Is(cause, errLockWait) || errors.Is(cause, errPlanTimeout) {
					return refuse(LockTimeout, fmt.Errorf("resource lock %s (%s) still held by %s after waiting %s: %v",
						name, scope, lw.Holder, time.Since(began).Round(time.Millisecond), cause))
				}
				return refuse(LockInterrupted, fmt.Errorf("waiting for resource lock %s (held by %s): %w", name, lw.Holder, cause))
			case <-t.C:
			}
			delay = min(2*delay, 2*time.Second)
			if held, err = try(wctx); err != nil {
				if wctx.Err() != nil {
					continue // the wait ended while asking: say why above
				}
				return refuse(LockError, fmt.Errorf("resource lock %s (%s): cannot ask for it: %w", name, scope, err))
			}
		}
	}
	lw.Waited, lw.Outcome = time.Since(began), LockAcquired
	attrs := []any{"resource", name, "scope", scope, "waited", lw.Waited.Round(time.Millisecond)}
	if lw.Holder != "" {
		attrs = append(attrs, "holder_was", lw.Holder)
	}
	log.Info("resource lock acquired", attrs...)
	return &heldLock{name: name, lock: held}, lw, nil
}

// takePlanLocks takes the plan's locks: after its own lock and the start
// of its record. A non-nil Result ends the run before its work starts.
func (r *run) takePlanLocks(ctx context.Context) *Result {
	if len(r.plan.Locks) == 0 {
		return nil
	}
	res := &Result{RunID: r.id, LogFile: r.logFile, Status: StatusFailed, ExitCode: ExitFailed}
	names, err := r.resolveLocks(r.plan.Locks, "locks")
	if err != nil {
		res.Err = err
		r.log.Error("cannot start", "err", err)
		return res
	}
	held, waits, refusal := r.takeLocks(ctx, names, "", r.plan.Defaults.OnLock, r.plan.Defaults.LockWait, r.log)
	r.planWaits = waits
	if refusal == nil {
		for _, h := range held {
			h.plan = true
		}
		r.planLocks = held
		return nil
	}
	res.Err = refusal.err
	switch refusal.outcome {
	case LockSkipped:
		// Not a failure: the run that holds the resource does its work.
		res.Status, res.ExitCode = StatusSkipped, ExitLocked
		r.log.Warn("run skipped: a resource lock is held (defaults.on_lock: skip)", "err", refusal.err.Error())
		return res
	case LockInterrupted:
		res.Status, res.ExitCode = StatusInterrupted, ExitInterrupted
		var sc SignalCause
		if errors.As(refusal.err, &sc) {
			res.ExitCode = sc.ExitCode()
		}
		r.interrupted = refusal.err
	case LockBusy, LockTimeout:
		res.ExitCode = ExitLocked
	}
	r.log.Error("cannot start", "err", refusal.err.Error())
	return res
}

// releasePlanLocks frees the plan's locks at the end of the run.
func (r *run) releasePlanLocks() {
	for _, h := range r.planLocks {
		h.lock.Release()
	}
}

// planHeld is the plan's lock of name, or nil.
func (r *run) planHeld(name string) *heldLock {
	for _, h := range r.planLocks {
		if h.name == name {
			return h
		}
	}
	return nil
}

// pollLost notes the plan's locks a locker already knows are lost
// (between steps, without a round trip).
func (r *run) pollLost() {
	for _, h := range r.planLocks {
		if h.lost != nil {
			continue
		}
		select {
		case <-h.lock.Lost():
			r.markLost(h, r.lostReason(h))
		default:
		}
	}
}

// checkLocks confirms each lock is still held (a round trip for a fleet
// lock); the first lost one is returned, marked lost.
func (r *run) checkLocks(locks []*heldLock) error {
	for _, h := range locks {
		if h.lost != nil {
			return h.lost
		}
		ctx, cancel := context.WithTimeout(r.opts.Hard, lockCheckTimeout)
		err := h.lock.Check(ctx)
		cancel()
		if err != nil {
			return r.markLost(h, err)
		}
	}
	return nil
}

// lostReason asks a lock that reported itself lost why.
func (r *run) lostReason(h *heldLock) error {
	ctx, cancel := context.WithTimeout(r.opts.Hard, lockCheckTimeout)
	defer cancel()
	if err := h.lock.Check(ctx); err != nil {
		return err
	}
	return errors.New("the locker reported it lost")
}

// markLost records that a held lock was lost: the run fails, no
// destructive step starts any more, and the lock is never taken again
// (another run may hold it by now).
func (r *run) markLost(h *heldLock, cause error) error {
	if h.lost != nil {
		return h.lost
	}
	msg := r.scope.Secrets.Redact(cause.Error())
	// The locker's own reason may name the lock and say it already.
	msg = strings.TrimPrefix(strings.TrimPrefix(msg, "fleet lock "+h.name+": "), "resource lock "+h.name+": ")
	msg = strings.TrimSuffix(msg, "; the lock is not re-taken")
	h.lost = fmt.Errorf("resource lock %s lost: %s; not re-taken", h.name, msg)
	h.lock.Release()
	if r.lockLost == "" {
		r.lockLost = h.name
	}
	if r.lostLocks == nil {
		r.lostLocks = map[string]error{}
	}
	r.lostLocks[h.name] = h.lost
	r.failed = true
	if r.firstErr == nil {
		r.firstErr = h.lost
	}
	r.log.Error("resource lock lost: not re-taken; the run fails and its destructive steps do not start", "resource", h.name, "err", msg)
	if h.plan {
		for i := range r.planWaits {
			if r.planWaits[i].Resource == h.name {
				r.planWaits[i].Outcome, r.planWaits[i].Error = LockLost, msg
			}
		}
	}
	return h.lost
}

// watchLocks returns parent cancelled (cause errLockLost) as soon as one
// of locks is lost, and the function that stops watching.
func watchLocks(parent context.Context, locks []*heldLock) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	stop := make(chan struct{})
	for _, h := range locks {
		go func() {
			select {
			case <-h.lock.Lost():
				cancel(errLockLost{h})
			case <-stop:
			}
		}()
	}
	return ctx, func() {
		close(stop)
		cancel(nil)
	}
}

// lostDuring is the lock lost while an attempt under ctx (watched by
// watchLocks) ran, if any.
func lostDuring(ctx context.Context, locks []*heldLock) errLockLost {
	var lost errLockLost
	if errors.As(context.Cause(ctx), &lost) {
		return lost
	}
	for _, h := range locks {
		select {
		case <-h.lock.Lost():
			return errLockLost{h}
		default:
		}
	}
	return lost
}
