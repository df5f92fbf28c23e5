package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
)

// memRecorder keeps records in memory.
type memRecorder struct {
	mu       sync.Mutex
	runs     []engine.RunRecord
	finished []engine.RunRecord
	attempts []engine.AttemptRecord
}

func (m *memRecorder) StartRun(_ context.Context, r engine.RunRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs = append(m.runs, r)
	return nil
}
func (m *memRecorder) RecordAttempt(_ context.Context, a engine.AttemptRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.attempts = append(m.attempts, a)
	return nil
}
func (m *memRecorder) FinishRun(_ context.Context, r engine.RunRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.finished = append(m.finished, r)
	return nil
}

func (m *memRecorder) statusOf(step string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, a := range m.attempts {
		if a.StepID == step {
			out = append(out, a.Status)
		}
	}
	return out
}

// Fake step types for runner tests.
type echoParams struct {
	Value  string `yaml:"value" doc:"returned as the output"`
	Fail   int    `yaml:"fail" doc:"fail this many attempts first"`
	Secret string `yaml:"secret" secret:"true"`
}

type blockParams struct {
	Started string `yaml:"started" doc:"file created when the step starts"`
}

type monParams struct {
	URL      string `yaml:"url" secret:"true"`
	Signal   string `yaml:"signal"`
	ExitCode int    `yaml:"exit_code"`
	Body     string `yaml:"body"`
}

type fakes struct {
	mu      sync.Mutex
	calls   map[string]int
	signals []string
	bodies  []string
}

func (f *fakes) registry() *engine.Registry {
	f.calls = map[string]int{}
	echo := engine.Def[echoParams]{
		Name: "echo", Summary: "returns its value", Kind: engine.KindBackup,
		Outputs: []engine.Output{{Name: "value"}},
		Run: func(ctx context.Context, env *engine.Env, p *echoParams) (engine.Outputs, error) {
			f.mu.Lock()
			f.calls[env.StepID]++
			n := f.calls[env.StepID]
			f.mu.Unlock()
			env.Log.Info("echo says " + p.Value)
			if n <= p.Fail {
				return nil, fmt.Errorf("attempt %d fails (value %s)", n, p.Value)
			}
			return engine.Outputs{"value": p.Value}, nil
		},
	}
	destroy := engine.Def[echoParams]{
		Name: "destroy", Summary: "a destructive step", Kind: engine.KindDestructive,
		Run: func(ctx context.Context, env *engine.Env, p *echoParams) (engine.Outputs, error) {
			f.mu.Lock()
			f.calls[env.StepID]++
			f.mu.Unlock()
			return nil, nil
		},
	}
	block := engine.Def[blockParams]{
		Name: "block", Summary: "blocks until cancelled",
		Run: func(ctx context.Context, env *engine.Env, p *blockParams) (engine.Outputs, error) {
			if p.Started != "" {
				_ = os.WriteFile(p.Started, nil, 0o600)
			}
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}
	mon := engine.Def[monParams]{
		Name: "mon", Summary: "records monitor signals", Monitor: true,
		Run: func(ctx context.Context, env *engine.Env, p *monParams) (engine.Outputs, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.signals = append(f.signals, fmt.Sprintf("%s:%d", p.Signal, p.ExitCode))
			f.bodies = append(f.bodies, p.Body)
			return nil, nil
		},
	}
	return engine.NewRegistry(echo.Type(), destroy.Type(), block.Type(), mon.Type())
}

type harness struct {
	t      *testing.T
	fakes  *fakes
	rec    *memRecorder
	stderr *bytes.Buffer
	state  string
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, fakes: &fakes{}, rec: &memRecorder{}, stderr: &bytes.Buffer{}, state: t.TempDir()}
}

func (h *harness) apply(ctx context.Context, src string, environ ...string) engine.Result {
	h.t.Helper()
	p, err := engine.Load("t.yaml", []byte(src), h.fakes.registry())
	require.NoError(h.t, err)
	scope, err := engine.Prepare(p, engine.Invocation{Environ: environ})
	require.NoError(h.t, err)
	return engine.Apply(ctx, p, scope, engine.Options{Recorder: h.rec, StateDir: h.state, Stderr: h.stderr})
}

func TestApplySuccessPassesOutputs(t *testing.T) {
	h := newHarness(t)
	res := h.apply(context.Background(), `version: 1
name: ok
vars: {greeting: hello}
steps:
  - id: a
    type: echo
    with: {value: "${{ vars.greeting }}"}
  - id: b
    type: echo
    with: {value: "${{ steps.a.outputs.value }} world"}
`)
	assert.Equal(t, engine.ExitOK, res.ExitCode)
	assert.Equal(t, engine.StatusSuccess, res.Status)
	require.Len(t, h.rec.attempts, 2)
	assert.Equal(t, "hello world", h.rec.attempts[1].Outputs["value"])
	require.Len(t, h.rec.finished, 1)
	assert.Equal(t, engine.StatusSuccess, h.rec.finished[0].Status)
}

func TestApplyRetriesThenSucceeds(t *testing.T) {
	h := newHarness(t)
	res := h.apply(context.Background(), `version: 1
name: retry
steps:
  - id: a
    type: echo
    retry: {attempts: 3, delay: 1ms, max_delay: 2ms}
    with: {value: x, fail: 2}
`)
	assert.Equal(t, engine.ExitOK, res.ExitCode)
	assert.Equal(t, []string{"failed", "failed", "success"}, h.rec.statusOf("a"))
}

func TestApplyFailureSemantics(t *testing.T) {
	h := newHarness(t)
	res := h.apply(context.Background(), `version: 1
name: fail
steps:
  - id: soft
    type: echo
    continue_on_error: true
    with: {value: x, fail: 1}
  - id: after-soft
    type: echo
    with: {value: y}
  - id: hard
    type: echo
    with: {value: z, fail: 5}
  - id: skipped
    type: echo
    with: {value: never}
  - id: on-failure
    type: echo
    when: failure()
    with: {value: handler}
  - id: on-success
    type: echo
    when: success()
    with: {value: nope}
  - id: cleanup
    type: echo
    when: always()
    with: {value: "${{ steps.hard.status }}/${{ steps.soft.outcome }}"}
`)
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	assert.Equal(t, []string{"failed"}, h.rec.statusOf("soft"))
	assert.Equal(t, []string{"success"}, h.rec.statusOf("after-soft"), "continue_on_error keeps the run going")
	assert.Equal(t, []string{"failed"}, h.rec.statusOf("hard"))
	assert.Equal(t, []string{"skipped"}, h.rec.statusOf("skipped"))
	assert.Equal(t, []string{"success"}, h.rec.statusOf("on-failure"))
	assert.Equal(t, []string{"skipped"}, h.rec.statusOf("on-success"))
	assert.Equal(t, []string{"success"}, h.rec.statusOf("cleanup"))
	last := h.rec.attempts[len(h.rec.attempts)-1]
	assert.Equal(t, "failed/failed", last.Outputs["value"])
	assert.Contains(t, res.Err.Error(), "step hard")
}

func TestApplyWhenFalseSkipsWithReason(t *testing.T) {
	h := newHarness(t)
	res := h.apply(context.Background(), `version: 1
name: when
steps:
  - id: n8n
    type: echo
    when: env.N8N_ENABLED == "1"
    with: {value: x}
`, "N8N_ENABLED=0")
	assert.Equal(t, engine.ExitOK, res.ExitCode)
	require.Len(t, h.rec.attempts, 1)
	assert.Equal(t, "skipped", h.rec.attempts[0].Status)
	assert.Contains(t, h.rec.attempts[0].Reason, `env.N8N_ENABLED == "1"`)
}

func TestApplySafetyInterlock(t *testing.T) {
	h := newHarness(t)
	res := h.apply(context.Background(), `version: 1
name: interlock
steps:
  - id: dump
    type: echo
    continue_on_error: true
    with: {value: x, fail: 9}
  - id: prune
    type: destroy
  - id: forced
    type: destroy
    after_backup_failure: true
`)
	assert.Equal(t, engine.ExitOK, res.ExitCode, "the failed backup step has continue_on_error")
	assert.Equal(t, []string{"skipped"}, h.rec.statusOf("prune"))
	assert.Contains(t, h.rec.attempts[1].Reason, `backup step "dump" failed`)
	assert.Equal(t, []string{"success"}, h.rec.statusOf("forced"))
	assert.Equal(t, 0, h.fakes.calls["prune"])
	assert.Equal(t, 1, h.fakes.calls["forced"])
}

func TestApplyStepTimeout(t *testing.T) {
	h := newHarness(t)
	res := h.apply(context.Background(), `version: 1
name: timeout
steps:
  - id: slow
    type: block
    timeout: 50ms
  - id: always
    type: echo
    when: always()
    with: {value: ran}
`)
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	assert.Contains(t, res.Err.Error(), "step timeout 50ms exceeded")
	assert.Equal(t, []string{"success"}, h.rec.statusOf("always"))
}

func TestApplyPlanTimeoutRunsCleanup(t *testing.T) {
	h := newHarness(t)
	res := h.apply(context.Background(), `version: 1
name: plan-timeout
timeout: 50ms
steps:
  - id: slow
    type: block
  - id: next
    type: echo
    with: {value: x}
  - id: on-failure
    type: echo
    when: failure()
    with: {value: handler}
`)
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	assert.Contains(t, res.Err.Error(), "plan timeout")
	assert.Equal(t, []string{"skipped"}, h.rec.statusOf("next"))
	assert.Equal(t, []string{"success"}, h.rec.statusOf("on-failure"))
}

func TestApplyInterruptedBySignal(t *testing.T) {
	h := newHarness(t)
	started := filepath.Join(t.TempDir(), "started")
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		// Cancel once the blocking step has started (no sleeps: poll the marker).
		for {
			if _, err := os.Stat(started); err == nil {
				cancel(engine.SignalCause{Signal: syscall.SIGTERM})
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	res := h.apply(ctx, fmt.Sprintf(`version: 1
name: sig
monitor:
  - type: mon
    with: {url: "https://hc.example/abc"}
steps:
  - id: slow
    type: block
    with: {started: %q}
  - id: next
    type: echo
    with: {value: x}
  - id: cleanup
    type: echo
    when: always()
    with: {value: cleaned}
`, started))
	assert.Equal(t, 143, res.ExitCode)
	assert.Equal(t, engine.StatusInterrupted, res.Status)
	assert.Equal(t, []string{"interrupted"}, h.rec.statusOf("slow"))
	assert.Equal(t, []string{"skipped"}, h.rec.statusOf("next"))
	assert.Equal(t, []string{"success"}, h.rec.statusOf("cleanup"))
	assert.Equal(t, []string{"start:0", "fail:143"}, h.fakes.signals)
	require.Len(t, h.rec.finished, 1)
	assert.Equal(t, engine.StatusInterrupted, h.rec.finished[0].Status)
}

func TestApplyMonitorSuccessAndLockHeld(t *testing.T) {
	h := newHarness(t)
	src := `version: 1
name: locked
monitor:
  - type: mon
    with: {url: "https://hc.example/abc"}
steps:
  - id: a
    type: echo
    with: {value: x}
`
	lock, err := engine.AcquireLock(context.Background(), h.state, "locked", "other-run", false)
	require.NoError(t, err)
	res := h.apply(context.Background(), src)
	assert.Equal(t, engine.ExitLocked, res.ExitCode)
	assert.Equal(t, engine.StatusSkipped, res.Status)
	var le *engine.ErrLocked
	require.ErrorAs(t, res.Err, &le)
	assert.Contains(t, le.Error(), "other-run")
	assert.Equal(t, []string{"log:0"}, h.fakes.signals, "on_lock: skip (the default) sends a log signal, never fail")
	assert.Empty(t, h.rec.runs, "nothing recorded for a run that never started")
	logs, _ := filepath.Glob(filepath.Join(h.state, "logs", "locked", "*.log"))
	assert.Empty(t, logs, "no log file left for a run that is not recorded (history prune could never remove it)")
	lock.Release()

	h.fakes.signals = nil
	res = h.apply(context.Background(), src)
	assert.Equal(t, engine.ExitOK, res.ExitCode)
	assert.Equal(t, []string{"start:0", "success:0"}, h.fakes.signals)
}

func TestApplyRedactsSecretsEverywhere(t *testing.T) {
	h := newHarness(t)
	const canary = "Canary-S3cr3t-9f2"
	res := h.apply(context.Background(), `version: 1
name: redact
monitor:
  - type: mon
    with: {url: "https://hc.example/abc"}
steps:
  - id: a
    type: echo
    with: {value: "pw=${{ env.DB_PASSWORD }} uri=${{ env.MONGO_URI }}"}
  - id: b
    type: echo
    with: {value: "${{ env.PLAIN }}", secret: "${{ env.PLAIN }}", fail: 1}
`, "DB_PASSWORD="+canary, "MONGO_URI=mongodb://backup:UriPass77@127.0.0.1:27017/kaleem?authSource=admin", "PLAIN=ParamSecret55")
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	var all strings.Builder
	all.WriteString(h.stderr.String())
	for _, a := range h.rec.attempts {
		fmt.Fprintf(&all, "%v %s %s\n", a.Outputs, a.Error, a.Reason)
	}
	for _, r := range h.rec.finished {
		all.WriteString(r.Error)
	}
	all.WriteString(strings.Join(h.fakes.bodies, "\n"))
	logs, _ := filepath.Glob(filepath.Join(h.state, "logs", "redact", "*.log"))
	require.Len(t, logs, 1)
	b, _ := os.ReadFile(logs[0])
	all.Write(b)
	text := all.String()
	for _, secret := range []string{canary, "UriPass77", "ParamSecret55"} {
		assert.NotContains(t, text, secret)
	}
	assert.Contains(t, text, "pw=*** uri=mongodb://backup:***@127.0.0.1")
	assert.Contains(t, h.fakes.bodies[len(h.fakes.bodies)-1], "echo says", "fail ping carries the log tail")
}

func TestApplyRunLogIsPrivate(t *testing.T) {
	h := newHarness(t)
	res := h.apply(context.Background(), `version: 1
name: logs
steps:
  - id: a
    type: echo
    with: {value: x}
`)
	require.Equal(t, engine.ExitOK, res.ExitCode)
	fi, err := os.Stat(res.LogFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestApplyUndefinedEnvFailsStepClearly(t *testing.T) {
	h := newHarness(t)
	res := h.apply(context.Background(), `version: 1
name: undef
steps:
  - id: a
    type: echo
    with: {value: "${{ env.NOT_SET_ANYWHERE }}"}
`)
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	assert.Contains(t, res.Err.Error(), "env.NOT_SET_ANYWHERE }} is undefined")
}

func TestPrepareVarOverrideMustExist(t *testing.T) {
	reg := (&fakes{}).registry()
	p, err := engine.Load("v.yaml", []byte("version: 1\nname: v\nvars: {a: x}\nsteps: [{id: s, type: echo}]\n"), reg)
	require.NoError(t, err)
	_, err = engine.Prepare(p, engine.Invocation{Vars: map[string]string{"b": "1"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `no var "b"`)
	s, err := engine.Prepare(p, engine.Invocation{Vars: map[string]string{"a": "over"}})
	require.NoError(t, err)
	assert.Equal(t, "over", s.Vars["a"])
}

func TestLockExcludesSecondHolder(t *testing.T) {
	dir := t.TempDir()
	l1, err := engine.AcquireLock(context.Background(), dir, "p", "run-1", false)
	require.NoError(t, err)
	_, err = engine.AcquireLock(context.Background(), dir, "p", "run-2", false)
	var le *engine.ErrLocked
	require.True(t, errors.As(err, &le))
	assert.Contains(t, le.Holder, "run-1")
	assert.Contains(t, le.Holder, fmt.Sprintf("pid %d", os.Getpid()))
	other, err := engine.AcquireLock(context.Background(), dir, "other-plan", "run-3", false)
	require.NoError(t, err, "locks are per plan")
	other.Release()
	l1.Release()
	l2, err := engine.AcquireLock(context.Background(), dir, "p", "run-2", false)
	require.NoError(t, err)
	l2.Release()
}

func TestProgressLineOnTTY(t *testing.T) {
	stream := engine.Def[echoParams]{
		Name: "stream", Summary: "reports progress",
		Run: func(ctx context.Context, env *engine.Env, p *echoParams) (engine.Outputs, error) {
			env.Progress.Set(3 << 20)
			return nil, nil
		},
	}
	reg := engine.NewRegistry(stream.Type())
	p, err := engine.Load("t.yaml", []byte("version: 1\nname: tty\nsteps: [{id: s, type: stream}]\n"), reg)
	require.NoError(t, err)
	scope, err := engine.Prepare(p, engine.Invocation{})
	require.NoError(t, err)
	var tty bytes.Buffer
	res := engine.Apply(context.Background(), p, scope, engine.Options{StateDir: t.TempDir(), Stderr: io.Discard, TTY: &tty})
	require.Equal(t, 0, res.ExitCode, "%v", res.Err)
	assert.Contains(t, tty.String(), "s: 3.0 MiB")
}

func TestAssertFailsTheStepNamingExpressionAndValues(t *testing.T) {
	h := newHarness(t)
	res := h.apply(context.Background(), `version: 1
name: asserts
steps:
  - id: a
    type: echo
    with: {value: "7"}
  - id: b
    type: echo
    retry: {attempts: 3, delay: 1ms}
    with: {value: "8"}
    assert:
      - steps.b.outputs.value != ""
      - steps.b.outputs.value == steps.a.outputs.value
  - id: c
    type: echo
    with: {value: x}
`)
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	assert.Equal(t, []string{"failed"}, h.rec.statusOf("b"), "a false assertion is not retried")
	assert.Equal(t, []string{"skipped"}, h.rec.statusOf("c"))
	require.Error(t, res.Err)
	assert.Contains(t, res.Err.Error(), `assert failed: steps.b.outputs.value == steps.a.outputs.value (steps.b.outputs.value = 8, steps.a.outputs.value = 7)`)
	assert.NotContains(t, res.Err.Error(), `value != ""`, "only the false assertion is named")
}

func TestAssertPasses(t *testing.T) {
	h := newHarness(t)
	res := h.apply(context.Background(), `version: 1
name: asserts
steps:
  - id: a
    type: echo
    with: {value: "7"}
    assert: ['steps.a.outputs.value == "7"']
`)
	assert.Equal(t, engine.ExitOK, res.ExitCode, "%v", res.Err)
}

func TestAssertIsValidated(t *testing.T) {
	for _, tc := range []struct{ assert, want string }{
		{`[steps.later.outputs.value == "x"]`, `refers to step "later", which runs later`},
		{`[steps.a.outputs.nope == "x"]`, `has no output "nope"`},
		{`[failure()]`, `belong in when`},
		{`["steps.a.outputs.value =="]`, `t.yaml:6:`},
		{`steps.a.outputs.value`, `expected a list of boolean expressions`},
	} {
		src := "version: 1\nname: v\nsteps:\n  - id: a\n    type: echo\n    assert: " + tc.assert + "\n  - id: later\n    type: echo\n"
		_, err := engine.Load("t.yaml", []byte(src), (&fakes{}).registry())
		require.Error(t, err, tc.assert)
		assert.Contains(t, err.Error(), tc.want, tc.assert)
	}
}

// The dry run prepares steps exactly like apply; what only the run can
// know (an earlier step's outputs, even inside filter()) is shown as
// written instead of failing, and a plain mistake is still an error.
func TestDryRunSharesThePreparePath(t *testing.T) {
	reg := (&fakes{}).registry()
	p, err := engine.Load("t.yaml", []byte(`version: 1
name: dry
vars: {suffix: ".age"}
steps:
  - id: list
    type: echo
    with: {value: x}
  - id: pick
    type: echo
    when: steps.list.outputs.value != ""
    with: {value: '${{ join(filter(split(steps.list.outputs.value, ","), {# endsWith vars.suffix}), ",") }}'}
  - id: plain
    type: echo
    with: {value: "${{ vars.suffix }}", fail: 0}
`), reg)
	require.NoError(t, err)
	scope, err := engine.Prepare(p, engine.Invocation{})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, engine.DryRun(&out, p, scope))
	assert.Contains(t, out.String(), "step 2/3 pick (echo): would run (when steps.list.outputs.value != \"\" is decided when the run gets there")
	assert.Contains(t, out.String(), `value: ${{ join(filter(`)
	assert.Contains(t, out.String(), "value: .age")

	bad, err := engine.Load("t.yaml", []byte(`version: 1
name: dry
steps:
  - id: a
    type: echo
    with: {value: '${{ int("x") }}'}
`), reg)
	require.NoError(t, err)
	scope, err = engine.Prepare(bad, engine.Invocation{})
	require.NoError(t, err)
	out.Reset()
	assert.Error(t, engine.DryRun(&out, bad, scope), "an expression that fails for a reason known now fails the dry run")
}
