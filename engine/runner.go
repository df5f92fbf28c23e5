package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Exit codes (DESIGN §7).
const (
	ExitOK          = 0
	ExitFailed      = 1
	ExitInvalid     = 2
	ExitLocked      = 3
	ExitInterrupted = 130 // SIGINT; SIGTERM gives 143
)

// SignalCause is the context cause when the run was interrupted by a signal.
type SignalCause struct{ Signal syscall.Signal }

func (s SignalCause) Error() string { return "interrupted by " + unix.SignalName(s.Signal) }

// ExitCode is 128 + the signal number, as shells report it.
func (s SignalCause) ExitCode() int { return 128 + int(s.Signal) }

var errPlanTimeout = errors.New("plan timeout")

// On-lock policies (the plan's on_lock).
const (
	OnLockSkip = "skip"
	OnLockFail = "fail"
	OnLockWait = "wait"
)

// Options configure one apply.
type Options struct {
	Recorder  Recorder // nil: record nothing
	StateDir  string
	LogFormat string
	Stderr    io.Writer // log lines
	Trigger   string
	Wait      bool // wait for the plan lock instead of failing
	// Hard is cancelled on a second signal: it aborts cleanup steps too.
	Hard context.Context
	// NoLock skips the per-plan lock (tests).
	NoLock bool
	// TTY, when set (stderr is a terminal), receives a live progress line
	// for streaming steps.
	TTY io.Writer
	// Locker takes the resource locks of locks: (nil: a FileLocker under
	// StateDir, which excludes on this host only).
	Locker ResourceLocker

	// Set by Restore: the run's kind, the backup run it reads, and the
	// report made from the finished steps before the run is recorded.
	kind      string
	sourceRun string
	report    func(r *run, res *Result) *RestoreReport
}

// Result is the outcome of an apply.
type Result struct {
	RunID    string
	Status   string
	ExitCode int
	Err      error
	LogFile  string
}

// stepState is what later expressions see of a finished step.
type stepState struct {
	status   string // success | failed | skipped | interrupted
	outcome  string // before continue_on_error
	outputs  Outputs
	finished time.Time
	err      string // why it failed (redacted)
}

// run is one apply in progress.
type run struct {
	plan    *Plan
	scope   *Scope
	opts    Options
	id      string
	log     *slog.Logger
	tail    *TailBuffer
	logFile string
	steps   map[string]*stepState
	host    string
	// artifacts are the records of successful attempts, in order: the
	// run's manifest.
	artifacts []ArtifactRecord

	failed        bool            // a step failed (without continue_on_error)
	backupFailed  string          // id of a failed backup step, for the interlock
	guardTripped  string          // id of a step whose guard tripped, for the interlock
	preflightFail bool            // the plan's preflight checks failed
	interrupted   error           // signal cause, once interrupted
	outer         context.Context // the caller's (signal) context, without the plan timeout
	timedOut      bool
	firstErr      error
	monitorFailed bool
	// dry: a dry run, which prepares every step like apply but runs none.
	dry bool
	// Resource locks (locks:): the locker, the plan's locks held for the
	// whole run and what was asked for them, and the first lock lost.
	locker    ResourceLocker
	planLocks []*heldLock
	planWaits []LockWait
	lockLost  string           // the first lock lost
	lostLocks map[string]error // every lock lost, by resource: never taken again
	// sig is what the monitors are being told (run.signal, run.exit_code,
	// run.error and the final run.status in their templates).
	sig notice
}

// notice is one signal to the monitors.
type notice struct {
	signal string // start, success, fail or log
	code   int    // the run's exit code
	status string // the run's final status ("" while it runs)
	err    string // why it failed (redacted)
}

// storeWrite runs one run-store write under its own bounded context:
// records are written whatever signals arrived, so a run is never left
// without its outcome.
func storeWrite[T any](write func(ctx context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return write(ctx)
}

// NewRunID returns a random UUID (v4): unique, and usable as a
// Healthchecks rid.
func NewRunID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		n, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
		return fmt.Sprintf("run-%d", n)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Apply runs the plan: lock, record, steps in order with conditions,
// retries and timeouts, monitor pings, and the final status.
func Apply(ctx context.Context, p *Plan, scope *Scope, o Options) Result {
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Hard == nil {
		o.Hard = context.Background()
	}
	r := &run{plan: p, scope: scope, opts: o, id: scope.RunID, steps: map[string]*stepState{}, tail: NewTailBuffer(LogTailSize)}
	r.host = scope.Host

	// Logs: stderr, the run's own file and the in-memory tail, all redacted.
	sinks := []io.Writer{o.Stderr, r.tail}
	if f, path, err := openRunLog(o.StateDir, p.Name, r.id, scope.Started); err == nil {
		defer f.Close()
		sinks = append(sinks, f)
		r.logFile = path
	} else {
		fmt.Fprintf(o.Stderr, "planrun: warning: no run log file: %v\n", err)
	}
	rw := scope.Secrets.Writer(io.MultiWriter(sinks...))
	defer rw.Flush()
	r.log = NewLogger(o.LogFormat, rw).With("run", r.id[:8], "plan", p.Name)
	for _, w := range scope.Warnings {
		r.log.Warn(w)
	}
	if w, ok := o.Recorder.(Warner); ok {
		w.WarnTo(func(msg string) { r.log.Warn(msg) })
	}

	if !o.NoLock {
		lock, err := r.acquire(ctx)
		var held *ErrLocked
		if errors.As(err, &held) && r.onLock() == OnLockSkip {
			// Not a failure: the run that holds the lock does the work.
			r.log.Warn("run skipped: the plan is already running (on_lock: skip)", "holder", held.Holder)
			r.notify(o.Hard, notice{signal: "log", code: ExitLocked, status: StatusSkipped, err: err.Error()},
				"planrun: run skipped: "+err.Error())
			// No run is recorded, so no log file either: prune could never
			// find it (the skip went to stderr and the monitors).
			if r.logFile != "" {
				os.Remove(r.logFile)
			}
			return Result{RunID: r.id, Status: StatusSkipped, ExitCode: ExitLocked, Err: err}
		}
		if err != nil {
			code, status := ExitFailed, StatusFailed
			var sc SignalCause
			switch {
			case errors.As(context.Cause(ctx), &sc): // signalled while waiting
				code, status = sc.ExitCode(), StatusInterrupted
			case held != nil, errors.Is(err, errLockWait):
				code = ExitLocked
			}
			return r.notStarted(err, code, status)
		}
		defer lock.Release()
	}

	rec := RunRecord{
		ID: r.id, Plan: p.Name, PlanFile: p.File, PlanSHA256: p.SHA256, Host: r.host,
		Trigger: o.Trigger, PID: os.Getpid(), Started: scope.Started, Status: StatusRunning, LogFile: r.logFile,
		Kind: r.kind(), SourceRun: o.sourceRun,
	}
	if a, ok := o.Recorder.(Abandoner); ok && !o.NoLock {
		n, err := storeWrite(func(ctx context.Context) (int, error) {
			return a.AbandonRuns(ctx, r.host, p.Name, r.kind(), time.Now().UTC())
		})
		if err != nil {
			r.log.Error("run store", "err", err)
		} else if n > 0 {
			msg := fmt.Sprintf("%d earlier run(s) of plan %s never finished: the planrun process died (killed, crashed or the host went down); recorded as interrupted", n, p.Name)
			r.log.Warn("earlier runs of this plan never finished (their process died); recorded as interrupted", "runs", n)
			// Nobody told the monitors when that run died: tell them now.
			r.notify(o.Hard, notice{signal: "fail", code: ExitFailed, status: StatusInterrupted, err: msg}, "planrun: "+msg)
		}
	}
	if o.Recorder != nil {
		if _, err := storeWrite(func(ctx context.Context) (any, error) { return nil, o.Recorder.StartRun(ctx, rec) }); err != nil {
			return r.notStarted(fmt.Errorf("run store: %w", err), ExitFailed, StatusFailed)
		}
	}
	r.log.Info("run started", "file", p.File, "steps", len(p.Steps), "log", r.logFile)

	r.outer = ctx
	runCtx := ctx
	if p.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeoutCause(ctx, p.Timeout, errPlanTimeout)
		defer cancel()
	}
	r.locker = o.Locker
	if r.locker == nil {
		r.locker = NewFileLocker(o.StateDir)
	}
	// The plan's resource locks come before the start signal: a run that
	// waits has not started its work, and one that skips never does.
	var res Result
	if stop := r.takePlanLocks(runCtx); stop != nil {
		res = *stop
	} else {
		defer r.releasePlanLocks()
		r.notify(ctx, notice{signal: "start"}, "")
		if p.Preflight && r.kind() == KindApply {
			r.preflight(runCtx)
		}
		for i, s := range p.Steps {
			r.runStep(runCtx, i, s)
		}
		r.noteCancel(runCtx) // a signal during the last step
		r.pollLost()

		res = Result{RunID: r.id, LogFile: r.logFile}
		switch {
		case r.interrupted != nil:
			res.Status, res.Err = StatusInterrupted, r.interrupted
			res.ExitCode = ExitInterrupted
			var sc SignalCause
			if errors.As(r.interrupted, &sc) {
				res.ExitCode = sc.ExitCode()
			}
		case r.failed:
			res.Status, res.ExitCode, res.Err = StatusFailed, ExitFailed, r.firstErr
		default:
			res.Status, res.ExitCode = StatusSuccess, ExitOK
		}
	}
	rec.LockWaits = r.planWaits
	if o.report != nil {
		rec.Report = o.report(r, &res)
	}
	finished := time.Now().UTC()
	level := slog.LevelInfo
	if res.ExitCode != 0 {
		level = slog.LevelError
	}
	attrs := []any{"status", res.Status, "exit_code", res.ExitCode, "duration", finished.Sub(scope.Started)}
	if res.Err != nil {
		attrs = append(attrs, "err", res.Err.Error())
	}
	r.log.Log(context.Background(), level, "run finished", attrs...)
	rec.Finished, rec.Status, rec.ExitCode = finished, res.Status, res.ExitCode
	if res.Err != nil {
		rec.Error = scope.Secrets.Redact(res.Err.Error())
	}
	final := notice{signal: "fail", code: res.ExitCode, status: res.Status, err: rec.Error}
	switch res.Status {
	case StatusSuccess:
		final.signal = "success"
	case StatusSkipped:
		final.signal = "log" // a resource was busy: not a failure
	}
	r.notify(o.Hard, final, r.tail.String())
	if o.Recorder != nil {
		if _, err := storeWrite(func(ctx context.Context) (any, error) { return nil, o.Recorder.FinishRun(ctx, rec) }); err != nil {
			r.log.Error("run store", "err", err)
		}
	}
	rw.Flush()
	return res
}

// notStarted ends a run that could not start (lock, run store): logged,
// one fail signal, nothing more recorded.
func (r *run) notStarted(err error, code int, status string) Result {
	r.log.Error("cannot start", "err", err)
	r.notify(r.opts.Hard, notice{signal: "fail", code: code, status: status, err: err.Error()}, "planrun: run not started: "+err.Error())
	return Result{RunID: r.id, Status: status, ExitCode: code, Err: err, LogFile: r.logFile}
}

// Refuse reports a run that cannot even begin — the plan does not load
// (p then holds only what was valid of it: see LoadMonitors), an env file
// is missing or unsafe, the run store cannot be opened — to the plan's
// monitors: one fail signal with exitCode and the reason. It takes no lock
// and records nothing; env files and vars that cannot be used are left
// out, so a monitor whose URL comes from elsewhere still hears of it.
func Refuse(p *Plan, inv Invocation, o Options, exitCode int, reason error) {
	if p == nil || len(p.Monitor) == 0 {
		return
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Hard == nil {
		o.Hard = context.Background()
	}
	scope := prepareLenient(p, inv)
	r := &run{plan: p, scope: scope, opts: o, id: scope.RunID, host: scope.Host,
		steps: map[string]*stepState{}, tail: NewTailBuffer(LogTailSize), failed: true}
	rw := scope.Secrets.Writer(io.MultiWriter(o.Stderr, r.tail))
	defer rw.Flush()
	r.log = NewLogger(o.LogFormat, rw).With("run", r.id[:8], "plan", p.Name)
	msg := scope.Secrets.Redact(reason.Error())
	r.notify(o.Hard, notice{signal: "fail", code: exitCode, status: StatusFailed, err: msg}, "planrun: run not started: "+msg)
}

func openRunLog(stateDir, plan, id string, started time.Time) (*os.File, string, error) {
	if stateDir == "" {
		return nil, "", errors.New("no state dir")
	}
	dir := filepath.Join(stateDir, "logs", plan)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", err
	}
	path := filepath.Join(dir, started.Format("20060102T150405Z")+"-"+id[:8]+".log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	return f, path, err
}

// kind is the run's kind: apply, restore or drill.
func (r *run) kind() string {
	if r.opts.kind == "" {
		return KindApply
	}
	return r.opts.kind
}

// lockName serialises runs of a plan, and separately its restores and
// drills: a drill may run while tonight's backup does, two restores not.
func (r *run) lockName() string {
	if r.kind() == KindApply {
		return r.plan.Name
	}
	return r.plan.Name + ".restore"
}

// errLockWait is the cause when lock_wait expires.
var errLockWait = errors.New("lock_wait exceeded")

// onLock is the run's lock policy: --wait, else the plan's on_lock.
func (r *run) onLock() string {
	switch {
	case r.opts.Wait:
		return OnLockWait
	case r.plan.OnLock == "":
		return OnLockSkip
	}
	return r.plan.OnLock
}

// acquire takes the plan's lock; when it is held and the policy is wait,
// it waits up to lock_wait (else the plan's timeout, else until a signal).
func (r *run) acquire(ctx context.Context) (*Lock, error) {
	lock, err := AcquireLock(ctx, r.opts.StateDir, r.lockName(), r.id, false)
	var held *ErrLocked
	if !errors.As(err, &held) || r.onLock() != OnLockWait {
		return lock, err
	}
	wait := r.plan.LockWait
	if wait <= 0 {
		wait = r.plan.Timeout
	}
	if wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, wait, fmt.Errorf("%w (%s)", errLockWait, wait))
		defer cancel()
	}
	r.log.Warn("waiting for the lock", "holder", held.Holder, "up_to", wait)
	return AcquireLock(ctx, r.opts.StateDir, r.lockName(), r.id, true)
}

// runMap returns the run.* map for expressions.
func (r *run) runMap() map[string]any {
	status := StatusRunning
	if r.failed || r.interrupted != nil {
		status = StatusFailed
	}
	if r.sig.status != "" {
		status = r.sig.status
	}
	errText := r.sig.err
	if errText == "" && r.firstErr != nil {
		errText = r.scope.Secrets.Redact(r.firstErr.Error())
	}
	m := map[string]any{
		"id": "<run id>", "plan": r.plan.Name, "host": r.host, "started": r.scope.Started,
		"log_tail": "<log tail>", "log_file": "<log file>", "dry_run": true, "status": status,
		"signal": r.sig.signal, "exit_code": r.sig.code, "error": errText, "duration": 0,
	}
	if !r.dry {
		m["id"], m["log_tail"], m["log_file"], m["dry_run"] = r.id, r.scope.Secrets.Redact(r.tail.String()), r.logFile, false
		m["duration"] = int(time.Since(r.scope.Started).Round(time.Second).Seconds())
	}
	return m
}

func (r *run) exprScope() map[string]any {
	steps := make(map[string]any, len(r.steps))
	for id, st := range r.steps {
		steps[id] = map[string]any{"outputs": map[string]any(st.outputs), "status": st.status, "outcome": st.outcome}
	}
	sc := r.scope.exprScope(r.runMap(), steps)
	sc["history"] = r.historyFuncs()
	failed := r.failed || r.interrupted != nil || r.timedOut
	sc["success"] = func() bool { return !failed }
	sc["failure"] = func() bool { return failed }
	sc["cancelled"] = func() bool { return r.interrupted != nil }
	return sc
}

// noteCancel records why the run's context ended, once.
func (r *run) noteCancel(ctx context.Context) {
	if ctx.Err() == nil {
		return
	}
	cause := context.Cause(ctx)
	// A signal that arrives after the plan timeout still interrupts.
	if sig := context.Cause(r.outer); r.outer.Err() != nil && r.interrupted == nil && !errors.Is(sig, errPlanTimeout) {
		r.interrupted = sig
		r.log.Warn("interrupted: running only always()/failure() steps", "cause", sig.Error())
		if !errors.Is(cause, errPlanTimeout) {
			return
		}
	}
	if errors.Is(cause, errPlanTimeout) {
		if !r.timedOut {
			r.timedOut = true
			r.failed = true
			if r.firstErr == nil {
				r.firstErr = fmt.Errorf("plan timeout %s exceeded", r.plan.Timeout)
			}
			r.log.Error("plan timeout exceeded", "timeout", r.plan.Timeout)
		}
		return
	}
	if r.interrupted == nil {
		r.interrupted = cause
		r.log.Warn("interrupted: running only always()/failure() steps", "cause", cause.Error())
	}
}
