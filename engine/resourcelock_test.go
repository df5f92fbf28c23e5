package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

// fakeLocker is a ResourceLocker whose locks a test can lose, as a fleet
// lock's connection drops.
type fakeLocker struct {
	mu     sync.Mutex
	held   map[string]*fakeLock
	tryErr error
}

type fakeLock struct {
	l        *fakeLocker
	name     string
	holder   engine.LockHolder
	lost     chan struct{}
	checkErr error
}

func newFakeLocker() *fakeLocker { return &fakeLocker{held: map[string]*fakeLock{}} }

func (l *fakeLocker) Scope() string { return "fleet" }

func (l *fakeLocker) TryLock(_ context.Context, resource string, holder engine.LockHolder) (engine.HeldLock, *engine.LockHolder, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tryErr != nil {
		return nil, nil, l.tryErr
	}
	if h := l.held[resource]; h != nil {
		by := h.holder
		return nil, &by, nil
	}
	h := &fakeLock{l: l, name: resource, holder: holder, lost: make(chan struct{})}
	l.held[resource] = h
	return h, nil, nil
}

// lose makes resource's lock fail its Check; with signal its Lost channel
// closes too (a watcher noticed), otherwise only a Check finds out.
func (l *fakeLocker) lose(resource string, signal bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.held[resource]
	if h == nil || h.checkErr != nil {
		return
	}
	h.checkErr = errors.New("connection dropped")
	if signal {
		close(h.lost)
	}
}

func (h *fakeLock) Check(context.Context) error {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	return h.checkErr
}

func (h *fakeLock) Lost() <-chan struct{} { return h.lost }

func (h *fakeLock) Release() {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	if h.l.held[h.name] == h {
		delete(h.l.held, h.name)
	}
}

// lockFixture has step types that record what ran, hold until released,
// and lose a fake lock.
type lockFixture struct {
	mu      sync.Mutex
	calls   []string
	started map[string]chan struct{}
	release map[string]chan struct{}
	signals []string
	locker  *fakeLocker
	state   string
}

type workParams struct {
	Hold string `yaml:"hold" doc:"block until the test releases this name"`
}

type loseParams struct {
	Resource string `yaml:"resource" required:"true"`
	Signal   bool   `yaml:"signal"`
}

type lockMonParams struct {
	Signal   string `yaml:"signal"`
	ExitCode int    `yaml:"exit_code"`
	Body     string `yaml:"body"`
}

func newLockFixture(t *testing.T, holds ...string) *lockFixture {
	f := &lockFixture{started: map[string]chan struct{}{}, release: map[string]chan struct{}{},
		locker: newFakeLocker(), state: t.TempDir()}
	for _, h := range holds {
		f.started[h], f.release[h] = make(chan struct{}), make(chan struct{})
	}
	return f
}

func (f *lockFixture) registry() *engine.Registry {
	work := engine.Def[workParams]{
		Name: "work", Summary: "records that it ran; may hold until released", Kind: engine.KindBackup,
		Run: func(ctx context.Context, env *engine.Env, p *workParams) (engine.Outputs, error) {
			f.mu.Lock()
			f.calls = append(f.calls, env.PlanName+"/"+env.StepID)
			f.mu.Unlock()
			if p.Hold == "" {
				return nil, nil
			}
			close(f.started[p.Hold])
			select {
			case <-f.release[p.Hold]:
				return nil, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	}
	destroy := engine.Def[workParams]{
		Name: "destroy", Summary: "a destructive step", Kind: engine.KindDestructive,
		Run: func(ctx context.Context, env *engine.Env, p *workParams) (engine.Outputs, error) {
			f.mu.Lock()
			f.calls = append(f.calls, env.PlanName+"/"+env.StepID)
			f.mu.Unlock()
			return nil, nil
		},
	}
	lose := engine.Def[loseParams]{
		Name: "lose", Summary: "loses a fake lock",
		Run: func(ctx context.Context, env *engine.Env, p *loseParams) (engine.Outputs, error) {
			f.locker.lose(p.Resource, p.Signal)
			return nil, nil
		},
	}
	mon := engine.Def[lockMonParams]{
		Name: "mon", Summary: "records monitor signals", Monitor: true,
		Run: func(ctx context.Context, env *engine.Env, p *lockMonParams) (engine.Outputs, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.signals = append(f.signals, fmt.Sprintf("%s:%d", p.Signal, p.ExitCode))
			return nil, nil
		},
	}
	return engine.NewRegistry(work.Type(), destroy.Type(), lose.Type(), mon.Type())
}

func (f *lockFixture) ran() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// apply runs src with the file locker under the fixture's state dir, or
// the fake locker with fake.
func (f *lockFixture) apply(t *testing.T, ctx context.Context, src string, fake bool, log *testenv.SyncBuffer) (engine.Result, *memRecorder) {
	t.Helper()
	p, err := engine.Load("t.yaml", []byte(src), f.registry())
	require.NoError(t, err)
	scope, err := engine.Prepare(p, engine.Invocation{})
	require.NoError(t, err)
	rec := &memRecorder{}
	o := engine.Options{Recorder: rec, StateDir: f.state, Stderr: log}
	if fake {
		o.Locker = f.locker
	}
	return engine.Apply(ctx, p, scope, o), rec
}

// applied is the outcome of a run started by applyAsync.
type applied struct {
	res engine.Result
	rec *memRecorder
}

// applyAsync runs apply in the background.
func (f *lockFixture) applyAsync(t *testing.T, ctx context.Context, src string, fake bool, log *testenv.SyncBuffer) <-chan applied {
	done := make(chan applied, 1)
	go func() {
		res, rec := f.apply(t, ctx, src, fake, log)
		done <- applied{res, rec}
	}()
	return done
}

func attemptsOf(rec *memRecorder, step string) []engine.AttemptRecord {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []engine.AttemptRecord
	for _, a := range rec.attempts {
		if a.StepID == step {
			out = append(out, a)
		}
	}
	return out
}

// holdFileLock takes resource as another run would, with the file locker.
func holdFileLock(t *testing.T, state, resource string) engine.HeldLock {
	t.Helper()
	held, by, err := engine.NewFileLocker(state).TryLock(context.Background(), resource,
		engine.LockHolder{Host: "h1", PID: 4242, RunID: "0123456789ab", Plan: "other", Step: "prune", Since: time.Now()})
	require.NoError(t, err)
	require.Nil(t, by)
	require.NotNil(t, held)
	t.Cleanup(held.Release)
	return held
}

func TestResourceLocksSerialiseTwoRuns(t *testing.T) {
	f := newLockFixture(t, "a")
	planA := "version: 1\nname: a\nsteps:\n  - id: hold\n    type: work\n    locks: [\"restic:/backups/r\"]\n    with: {hold: a}\n"
	planB := "version: 1\nname: b\nsteps:\n  - id: use\n    type: work\n    locks: [\"restic:/backups/r\"]\n"
	var logA, logB testenv.SyncBuffer
	doneA := f.applyAsync(t, context.Background(), planA, false, &logA)
	<-f.started["a"]
	doneB := f.applyAsync(t, context.Background(), planB, false, &logB)
	require.Eventually(t, func() bool { return strings.Contains(logB.String(), "waiting for a resource lock") },
		10*time.Second, 10*time.Millisecond, "b waits for a's lock")
	assert.Equal(t, []string{"a/hold"}, f.ran(), "b's step does not start while a holds the resource")
	close(f.release["a"])
	a, b := <-doneA, <-doneB
	require.Equal(t, engine.ExitOK, a.res.ExitCode, "%v", a.res.Err)
	require.Equal(t, engine.ExitOK, b.res.ExitCode, "%v", b.res.Err)
	assert.Equal(t, []string{"a/hold", "b/use"}, f.ran())

	waitsA := attemptsOf(a.rec, "hold")[0].LockWaits
	require.Len(t, waitsA, 1)
	assert.Equal(t, engine.LockWait{Resource: "restic:/backups/r", Scope: "host", Waited: waitsA[0].Waited, Outcome: engine.LockAcquired}, waitsA[0])
	waitsB := attemptsOf(b.rec, "use")[0].LockWaits
	require.Len(t, waitsB, 1)
	assert.Equal(t, engine.LockAcquired, waitsB[0].Outcome)
	assert.Positive(t, waitsB[0].Waited)
	assert.Contains(t, waitsB[0].Holder, "plan a step hold")
	assert.Contains(t, logB.String(), "resource lock acquired")
}

func TestResourceLockBusyPolicies(t *testing.T) {
	cases := []struct {
		policy, status, outcome string
		exit                    int
	}{
		{"on_lock: skip", engine.StatusSkipped, engine.LockSkipped, engine.ExitOK},
		{"on_lock: fail", engine.StatusFailed, engine.LockBusy, engine.ExitFailed},
		{"lock_wait: 300ms", engine.StatusFailed, engine.LockTimeout, engine.ExitFailed},
	}
	for _, c := range cases {
		t.Run(c.policy, func(t *testing.T) {
			f := newLockFixture(t)
			holdFileLock(t, f.state, "rclone:r2:bucket/path")
			var log testenv.SyncBuffer
			res, rec := f.apply(t, context.Background(), `version: 1
name: busy
steps:
  - id: copy
    type: work
    locks: ["rclone:r2:bucket/path"]
    `+c.policy+`
    retry: {attempts: 3, delay: 1s}
`, false, &log)
			assert.Equal(t, c.exit, res.ExitCode, "%v", res.Err)
			atts := attemptsOf(rec, "copy")
			require.Len(t, atts, 1, "a busy resource is not retried")
			assert.Equal(t, c.status, atts[0].Status)
			require.Len(t, atts[0].LockWaits, 1)
			w := atts[0].LockWaits[0]
			assert.Equal(t, c.outcome, w.Outcome)
			assert.Equal(t, "rclone:r2:bucket/path", w.Resource)
			assert.Contains(t, w.Holder, "plan other step prune (run 01234567, pid 4242 on h1")
			assert.Contains(t, atts[0].Reason+atts[0].Error, "held by plan other step prune")
			assert.Empty(t, f.ran(), "the step never started")
		})
	}
}

func TestSignalWhileWaitingForAResourceLock(t *testing.T) {
	f := newLockFixture(t)
	holdFileLock(t, f.state, "postgres:chitlaq")
	ctx, cancel := context.WithCancelCause(context.Background())
	var log testenv.SyncBuffer
	done := f.applyAsync(t, ctx, "version: 1\nname: sig\nsteps:\n  - id: s\n    type: work\n    locks: [postgres:chitlaq]\n", false, &log)
	require.Eventually(t, func() bool { return strings.Contains(log.String(), "waiting for a resource lock") },
		10*time.Second, 10*time.Millisecond)
	cancel(engine.SignalCause{Signal: syscall.SIGTERM})
	o := <-done
	assert.Equal(t, engine.StatusInterrupted, o.res.Status)
	assert.Equal(t, 143, o.res.ExitCode)
	atts := attemptsOf(o.rec, "s")
	require.Len(t, atts, 1)
	assert.Equal(t, engine.StatusInterrupted, atts[0].Status)
	require.Len(t, atts[0].LockWaits, 1)
	assert.Equal(t, engine.LockInterrupted, atts[0].LockWaits[0].Outcome)
	assert.Empty(t, f.ran())
}

func TestPlanLevelResourceLocks(t *testing.T) {
	cases := []struct {
		defaults, status, outcome, signal string
		exit                              int
	}{
		{"{on_lock: skip}", engine.StatusSkipped, engine.LockSkipped, "log:0", engine.ExitLocked},
		{"{on_lock: fail}", engine.StatusFailed, engine.LockBusy, "fail:3", engine.ExitLocked},
		{"{lock_wait: 200ms}", engine.StatusFailed, engine.LockTimeout, "fail:3", engine.ExitLocked},
	}
	for _, c := range cases {
		t.Run(c.defaults, func(t *testing.T) {
			f := newLockFixture(t)
			holdFileLock(t, f.state, "restic:/backups/r")
			var log testenv.SyncBuffer
			res, rec := f.apply(t, context.Background(), `version: 1
name: whole
vars: {repo: /backups/r}
locks: ["restic:${{ vars.repo }}"]
defaults: `+c.defaults+`
monitor:
  - type: mon
steps:
  - id: s
    type: work
  - id: cleanup
    type: work
    when: always()
`, false, &log)
			assert.Equal(t, c.exit, res.ExitCode)
			assert.Equal(t, c.status, res.Status)
			require.Len(t, rec.runs, 1, "the run is recorded")
			require.Len(t, rec.finished, 1)
			fin := rec.finished[0]
			assert.Equal(t, c.status, fin.Status)
			assert.Equal(t, c.exit, fin.ExitCode)
			assert.Contains(t, fin.Error, "resource lock restic:/backups/r (host)")
			require.Len(t, fin.LockWaits, 1)
			assert.Equal(t, c.outcome, fin.LockWaits[0].Outcome)
			assert.Contains(t, fin.LockWaits[0].Holder, "plan other")
			assert.Empty(t, rec.attempts, "no step runs, not even always() ones")
			assert.Empty(t, f.ran())
			assert.Equal(t, []string{c.signal}, f.signals, "no start signal for work that never started")
		})
	}
}

func TestPlanLockIsNotTakenAgainByAStep(t *testing.T) {
	f := newLockFixture(t)
	var log testenv.SyncBuffer
	res, rec := f.apply(t, context.Background(), `version: 1
name: both
locks: [x]
steps:
  - id: s
    type: work
    locks: ["y", "x", "y"]
    on_lock: fail
`, false, &log)
	require.Equal(t, engine.ExitOK, res.ExitCode, "%v", res.Err)
	require.Len(t, rec.finished[0].LockWaits, 1)
	assert.Equal(t, "x", rec.finished[0].LockWaits[0].Resource)
	waits := attemptsOf(rec, "s")[0].LockWaits
	require.Len(t, waits, 1, "x is the plan's, y is asked for once")
	assert.Equal(t, "y", waits[0].Resource)
	assert.Equal(t, engine.LockAcquired, waits[0].Outcome)
}

func TestStepLocksAreTakenInSortedOrder(t *testing.T) {
	f := newLockFixture(t)
	var log testenv.SyncBuffer
	res, rec := f.apply(t, context.Background(), `version: 1
name: order
vars: {n: a}
steps:
  - id: s
    type: work
    locks: ["c", "${{ vars.n }}", "b"]
`, true, &log)
	require.Equal(t, engine.ExitOK, res.ExitCode, "%v", res.Err)
	var got []string
	for _, w := range attemptsOf(rec, "s")[0].LockWaits {
		got = append(got, w.Resource)
		assert.Equal(t, "fleet", w.Scope)
	}
	assert.Equal(t, []string{"a", "b", "c"}, got)
	assert.Empty(t, f.locker.held, "released after the step")
}

func TestLostPlanLockStopsDestructiveSteps(t *testing.T) {
	f := newLockFixture(t)
	var log testenv.SyncBuffer
	res, rec := f.apply(t, context.Background(), `version: 1
name: lost
locks: ["restic:/r"]
steps:
  - id: first
    type: work
  - id: drop
    type: lose
    with: {resource: "restic:/r"}
  - id: prune
    type: destroy
    when: always()
    after_backup_failure: true
  - id: prune-again
    type: destroy
    when: always()
  - id: later
    type: work
  - id: cleanup
    type: work
    when: always()
`, true, &log)
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	require.Error(t, res.Err)
	assert.Equal(t, "resource lock restic:/r lost: connection dropped; not re-taken", res.Err.Error())
	assert.Equal(t, []string{"lost/first", "lost/cleanup"}, f.ran(), "no destructive step starts after the loss; cleanup still runs")

	prune := attemptsOf(rec, "prune")
	require.Len(t, prune, 1)
	assert.Equal(t, engine.StatusFailed, prune[0].Status, "the check before the destructive step found the loss")
	assert.Contains(t, prune[0].Error, "not re-taken")
	again := attemptsOf(rec, "prune-again")
	require.Len(t, again, 1)
	assert.Equal(t, engine.StatusSkipped, again[0].Status)
	assert.Contains(t, again[0].Reason, "safety interlock: resource lock restic:/r was lost")
	later := attemptsOf(rec, "later")
	require.Len(t, later, 1)
	assert.Contains(t, later[0].Reason, "resource lock restic:/r was lost")

	fin := rec.finished[0]
	require.Len(t, fin.LockWaits, 1)
	assert.Equal(t, engine.LockLost, fin.LockWaits[0].Outcome)
	assert.Equal(t, "connection dropped", fin.LockWaits[0].Error)
	assert.Contains(t, fin.Error, "not re-taken")
}

func TestLostLockCancelsTheRunningStep(t *testing.T) {
	f := newLockFixture(t, "h")
	var log testenv.SyncBuffer
	done := f.applyAsync(t, context.Background(), `version: 1
name: cancel
steps:
  - id: hold
    type: work
    locks: ["restic:/r"]
    retry: {attempts: 3, delay: 1s}
    with: {hold: h}
  - id: uses-it
    type: work
    when: always()
    locks: ["restic:/r"]
`, true, &log)
	<-f.started["h"]
	f.locker.lose("restic:/r", true)
	o := <-done
	assert.Equal(t, engine.ExitFailed, o.res.ExitCode)
	atts := attemptsOf(o.rec, "hold")
	require.Len(t, atts, 1, "a lost lock is not re-taken for a retry")
	assert.Equal(t, engine.StatusFailed, atts[0].Status)
	assert.Contains(t, atts[0].Error, "resource lock restic:/r lost: connection dropped; not re-taken")
	require.Len(t, atts[0].LockWaits, 1)
	assert.Equal(t, engine.LockLost, atts[0].LockWaits[0].Outcome)
	// A later step that needs the resource fails: it is not taken again.
	uses := attemptsOf(o.rec, "uses-it")
	require.Len(t, uses, 1)
	assert.Equal(t, engine.StatusFailed, uses[0].Status)
	assert.Contains(t, uses[0].Error, "resource lock restic:/r lost")
	assert.Equal(t, []string{"cancel/hold"}, f.ran())
}

func TestStepNeedingALostPlanLockFails(t *testing.T) {
	f := newLockFixture(t)
	var log testenv.SyncBuffer
	res, rec := f.apply(t, context.Background(), `version: 1
name: need
locks: ["restic:/r"]
steps:
  - id: drop
    type: lose
    with: {resource: "restic:/r", signal: true}
  - id: uses-it
    type: work
    when: always()
    locks: ["restic:/r"]
  - id: cleanup
    type: work
    when: always()
`, true, &log)
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	drop := attemptsOf(rec, "drop")
	require.Len(t, drop, 1)
	assert.Equal(t, engine.StatusFailed, drop[0].Status, "the running step is cancelled")
	uses := attemptsOf(rec, "uses-it")
	require.Len(t, uses, 1)
	assert.Equal(t, engine.StatusFailed, uses[0].Status)
	assert.Contains(t, uses[0].Error, "resource lock restic:/r lost")
	assert.Equal(t, []string{"need/cleanup"}, f.ran())
	assert.Equal(t, engine.LockLost, rec.finished[0].LockWaits[0].Outcome)
}

func TestResourceLockerErrorFailsTheStep(t *testing.T) {
	f := newLockFixture(t)
	f.locker.tryErr = errors.New("run store unreachable")
	var log testenv.SyncBuffer
	res, rec := f.apply(t, context.Background(), "version: 1\nname: err\nsteps:\n  - id: s\n    type: work\n    locks: [x]\n", true, &log)
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	atts := attemptsOf(rec, "s")
	require.Len(t, atts, 1)
	assert.Equal(t, engine.LockError, atts[0].LockWaits[0].Outcome)
	assert.Contains(t, atts[0].Error, "resource lock x (fleet): cannot ask for it: run store unreachable")
	assert.Empty(t, f.ran())
}

func TestResourceLockValidation(t *testing.T) {
	f := newLockFixture(t)
	cases := []struct{ src, want string }{
		{"locks: [\"\"]\nsteps:\n  - {id: s, type: work}\n", `t.yaml:3:9: locks: empty resource name`},
		{"steps:\n  - {id: a, type: work}\n  - {id: s, type: work, locks: [\"x:${{ steps.a.status }}\"]}\n",
			`t.yaml:5:33: step "s": locks: cannot refer to steps`},
		{"steps:\n  - {id: s, type: work, locks: [\"${{ vars.nope }}\"]}\n", `t.yaml:4:33: step "s": locks: unknown var "nope"`},
		{"steps:\n  - {id: s, type: work, locks: x}\n", `t.yaml:4:32: step "s": locks: expected a list of strings`},
		{"steps:\n  - {id: s, type: work, locks: [x], on_lock: maybe}\n", `t.yaml:4:46: step "s": on_lock: must be one of wait, skip, fail`},
		{"defaults: {lock_wait: soon}\nsteps:\n  - {id: s, type: work}\n", `t.yaml:3:23: defaults.lock_wait: invalid duration "soon"`},
		{"steps:\n  - {id: s, type: work, locks: [\" x\"]}\n", `t.yaml:4:33: step "s": locks: resource name " x" has leading or trailing spaces`},
	}
	for _, c := range cases {
		_, err := engine.Load("t.yaml", []byte("version: 1\nname: v\n"+c.src), f.registry())
		require.Error(t, err, c.src)
		assert.Contains(t, err.Error(), c.want, c.src)
	}
	// Known only at run time: a name that evaluates to nothing.
	var log testenv.SyncBuffer
	res, rec := f.apply(t, context.Background(), "version: 1\nname: v\nvars: {repo: \"\"}\nsteps:\n  - {id: s, type: work, locks: [\"${{ vars.repo }}\"]}\n", true, &log)
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	assert.Contains(t, attemptsOf(rec, "s")[0].Error, `t.yaml:5:33: step "s": locks: empty resource name (from "${{ vars.repo }}")`)
}

func TestDryRunPrintsResolvedLocks(t *testing.T) {
	f := newLockFixture(t)
	p, err := engine.Load("t.yaml", []byte(`version: 1
name: dry
vars: {repo: /backups/r, remote: "r2:b"}
locks: ["restic:${{ vars.repo }}"]
defaults: {lock_wait: 5m}
steps:
  - id: s
    type: work
    locks: ["rclone:${{ vars.remote }}"]
    on_lock: skip
`), f.registry())
	require.NoError(t, err)
	scope, err := engine.Prepare(p, engine.Invocation{})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, engine.DryRun(&out, p, scope))
	assert.Contains(t, out.String(), "locks: restic:/backups/r, held for the whole run (on_lock: wait, up to 5m0s)")
	assert.Contains(t, out.String(), "  locks: rclone:r2:b (on_lock: skip)")
	_, err = os.Stat(filepath.Join(f.state, "locks"))
	assert.True(t, os.IsNotExist(err), "a dry run takes no lock")
}

func TestRestoreAndDrillInheritLocks(t *testing.T) {
	dir := t.TempDir()
	src := fmt.Sprintf(`version: 1
name: db
vars: {repo: /backups/r}
locks: ["whole:${{ vars.repo }}"]
defaults: {on_lock: fail}
steps:
  - id: dump
    type: dump
    locks: ["restic:${{ vars.repo }}"]
    lock_wait: 10m
    with: {dir: %q, items: [a]}
`, dir)
	p, err := engine.Load("db.yaml", []byte(src), restoreRegistry())
	require.NoError(t, err)
	scope, err := engine.Prepare(p, engine.Invocation{})
	require.NoError(t, err)
	rec := &memRecorder{}
	state := t.TempDir()
	res := engine.Apply(context.Background(), p, scope, engine.Options{Recorder: rec, StateDir: state, Stderr: &bytes.Buffer{}})
	require.Equal(t, engine.ExitOK, res.ExitCode, "%v", res.Err)
	m := &engine.Manifest{Format: engine.ManifestFormat, RunID: res.RunID, Plan: "db", Started: scope.Started}
	for _, a := range rec.attempts {
		m.Artifacts = append(m.Artifacts, a.Records...)
	}

	rp, err := engine.BuildRestore(engine.RestoreRequest{Plan: p, Manifest: m, Drill: true}, restoreRegistry())
	require.NoError(t, err)
	require.Len(t, rp.Plan.Locks, 1)
	assert.Equal(t, "whole:${{ vars.repo }}", rp.Plan.Locks[0].Text)
	assert.Equal(t, engine.OnLockFail, rp.Plan.Defaults.OnLock)
	require.NotEmpty(t, rp.Plan.Steps)
	for _, s := range rp.Plan.Steps {
		require.Len(t, s.Locks, 1, s.ID)
		assert.Equal(t, "restic:${{ vars.repo }}", s.Locks[0].Text, s.ID)
		assert.Equal(t, engine.OnLockFail, s.OnLock, s.ID)
		assert.Equal(t, 10*time.Minute, s.LockWait, s.ID)
	}

	// Another run holds the repository: the drill's steps fail naming it.
	holdFileLock(t, state, "restic:/backups/r")
	dscope, err := engine.Prepare(rp.Plan, engine.Invocation{})
	require.NoError(t, err)
	drec := &memRecorder{}
	dres := engine.Restore(context.Background(), rp, dscope, engine.Options{Recorder: drec, StateDir: state, Stderr: &bytes.Buffer{}})
	assert.Equal(t, engine.ExitFailed, dres.ExitCode)
	require.Len(t, drec.finished, 1)
	assert.Equal(t, "whole:/backups/r", drec.finished[0].LockWaits[0].Resource)
	for _, a := range drec.attempts {
		assert.Equal(t, engine.LockBusy, a.LockWaits[0].Outcome, a.StepID)
		assert.Contains(t, a.Error, "held by plan other", a.StepID)
	}
}

func TestResourceLockFileNames(t *testing.T) {
	names := []string{"restic:/backups/restic-local", "restic:/backups/restic_local", "../../etc/passwd", ".hidden", "postgres:chitlaq", strings.Repeat("x", 500)}
	seen := map[string]string{}
	for _, n := range names {
		file := engine.ResourceLockFile(n)
		assert.NotContains(t, file, "/", n)
		assert.False(t, strings.HasPrefix(file, "."), n)
		assert.LessOrEqual(t, len(file), 100, n)
		assert.True(t, strings.HasSuffix(file, ".lock"), n)
		if prev, dup := seen[file]; dup {
			t.Errorf("%q and %q share the lock file %s", prev, n, file)
		}
		seen[file] = n
	}
	assert.True(t, strings.HasPrefix(engine.ResourceLockFile("restic:/backups/restic-local"), "restic__backups_restic-local-"))
}

func TestSignalWhileWaitingForThePlanLocks(t *testing.T) {
	f := newLockFixture(t)
	holdFileLock(t, f.state, "restic:/backups/r")
	ctx, cancel := context.WithCancelCause(context.Background())
	var log testenv.SyncBuffer
	done := f.applyAsync(t, ctx, "version: 1\nname: sig\nlocks: [\"restic:/backups/r\"]\nmonitor:\n  - type: mon\nsteps:\n  - {id: s, type: work}\n", false, &log)
	require.Eventually(t, func() bool { return strings.Contains(log.String(), "waiting for a resource lock") },
		10*time.Second, 10*time.Millisecond)
	cancel(engine.SignalCause{Signal: syscall.SIGINT})
	o := <-done
	assert.Equal(t, engine.StatusInterrupted, o.res.Status)
	assert.Equal(t, 130, o.res.ExitCode)
	require.Len(t, o.rec.finished, 1)
	assert.Equal(t, engine.StatusInterrupted, o.rec.finished[0].Status)
	require.Len(t, o.rec.finished[0].LockWaits, 1)
	assert.Equal(t, engine.LockInterrupted, o.rec.finished[0].LockWaits[0].Outcome)
	assert.Equal(t, []string{"fail:130"}, f.signals)
	assert.Empty(t, o.rec.attempts)
}
