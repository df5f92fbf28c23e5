package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
)

// Every way a run can fail after its monitors are known reaches them
// exactly once (issue 11, item 4); a skipped run reaches them as a log.

const signalsPlan = `version: 1
name: sig
%s
monitor:
  - type: mon
    with:
      url: "${{ env.MON_URL }}"
      body: "${{ run.signal }}|${{ run.status }}|${{ run.exit_code }}|${{ run.error }}"
steps:
  - id: a
    type: %s
    with: {%s}
`

func signalsSrc(extra, typ, with string) string {
	return fmt.Sprintf(signalsPlan, extra, typ, with)
}

// failStart is a recorder whose store is unavailable when the run starts.
type failStart struct{ memRecorder }

func (f *failStart) StartRun(context.Context, engine.RunRecord) error {
	return errors.New("database disk image is malformed")
}

// deadRuns is a recorder that finds two runs whose process died.
type deadRuns struct{ memRecorder }

func (d *deadRuns) AbandonRuns(context.Context, string, string, string, time.Time) (int, error) {
	return 2, nil
}

func (h *harness) applyOpts(src string, rec engine.Recorder, environ ...string) engine.Result {
	h.t.Helper()
	p, err := engine.Load("t.yaml", []byte(src), h.fakes.registry())
	require.NoError(h.t, err)
	scope, err := engine.Prepare(p, engine.Invocation{Environ: environ})
	require.NoError(h.t, err)
	return engine.Apply(context.Background(), p, scope, engine.Options{Recorder: rec, StateDir: h.state, Stderr: h.stderr})
}

func TestLockPolicies(t *testing.T) {
	cases := []struct {
		extra   string
		signals []string
		status  string
		body    string
	}{
		{"", []string{"log:0"}, engine.StatusSkipped, "log|skipped|3|"},
		{"on_lock: skip", []string{"log:0"}, engine.StatusSkipped, "log|skipped|3|"},
		{"on_lock: fail", []string{"fail:3"}, engine.StatusFailed, "fail|failed|3|"},
		{"on_lock: wait\nlock_wait: 50ms", []string{"fail:3"}, engine.StatusFailed, "fail|failed|3|"},
	}
	for _, c := range cases {
		t.Run(c.extra, func(t *testing.T) {
			h := newHarness(t)
			lock, err := engine.AcquireLock(context.Background(), h.state, "sig", "other-run", false)
			require.NoError(t, err)
			defer lock.Release()
			res := h.applyOpts(signalsSrc(c.extra, "echo", "value: x"), h.rec, "MON_URL=https://mon.example/t0ken")
			assert.Equal(t, engine.ExitLocked, res.ExitCode)
			assert.Equal(t, c.status, res.Status)
			assert.Equal(t, c.signals, h.fakes.signals)
			require.Len(t, h.fakes.bodies, 1)
			assert.Contains(t, h.fakes.bodies[0], c.body)
			assert.Contains(t, h.fakes.bodies[0], "other-run", "run.error says who holds the lock")
			assert.Empty(t, h.rec.runs)
			if c.extra == "on_lock: wait\nlock_wait: 50ms" {
				assert.Contains(t, res.Err.Error(), "lock_wait exceeded (50ms)")
			}
		})
	}
}

func TestStoreUnavailableAtStartSignalsOnce(t *testing.T) {
	h := newHarness(t)
	rec := &failStart{}
	res := h.applyOpts(signalsSrc("", "echo", "value: x"), rec, "MON_URL=https://mon.example/t0ken")
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	assert.Equal(t, []string{"fail:1"}, h.fakes.signals)
	assert.Contains(t, h.fakes.bodies[0], "fail|failed|1|run store: database disk image is malformed")
	assert.Empty(t, rec.attempts, "no step runs without its record")
}

func TestDeadRunIsSignalledByTheNextRun(t *testing.T) {
	h := newHarness(t)
	rec := &deadRuns{}
	res := h.applyOpts(signalsSrc("", "echo", "value: x"), rec, "MON_URL=https://mon.example/t0ken")
	assert.Equal(t, engine.ExitOK, res.ExitCode)
	assert.Equal(t, []string{"fail:1", "start:0", "success:0"}, h.fakes.signals)
	assert.Contains(t, h.fakes.bodies[0], "fail|interrupted|1|2 earlier run(s) of plan sig never finished")
	assert.Equal(t, "success|success|0|", h.fakes.bodies[2])
}

func TestPlanTimeoutSignalsFailOnce(t *testing.T) {
	h := newHarness(t)
	res := h.applyOpts(signalsSrc("timeout: 50ms", "block", ""), h.rec, "MON_URL=https://mon.example/t0ken")
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	assert.Equal(t, []string{"start:0", "fail:1"}, h.fakes.signals)
	assert.Contains(t, h.fakes.bodies[1], "fail|failed|1|plan timeout 50ms exceeded")
}

func TestRefuseInvalidPlanReachesTheValidMonitors(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	// Broken step params, an unknown key, and a monitor with a problem of
	// its own (dropped) next to a valid one (told).
	src := `version: 1
name: broken
bogus: 1
monitor:
  - type: mon
    with: {url: "${{ env.MON_URL }}"}
  - type: mon
    with: {url: "${{ vars.nope }}"}
steps:
  - id: a
    type: echo
    with: {valu: x}
`
	path := filepath.Join(dir, "broken.yaml")
	require.NoError(t, os.WriteFile(path, []byte(src), 0o600))
	reg := h.fakes.registry()
	_, loadErr := engine.LoadFile(path, reg)
	require.Error(t, loadErr)
	p := engine.LoadMonitors(path, reg)
	require.NotNil(t, p)
	require.Len(t, p.Monitor, 1)
	engine.Refuse(p, engine.Invocation{Environ: []string{"MON_URL=https://mon.example/t0ken"}},
		engine.Options{Stderr: h.stderr}, engine.ExitInvalid, loadErr)
	assert.Equal(t, []string{"fail:2"}, h.fakes.signals)
	assert.Contains(t, h.fakes.bodies[0], `unknown param "valu"`)

	// No monitor section that can be read: nothing to tell.
	require.NoError(t, os.WriteFile(path, []byte("version: [1\n"), 0o600))
	assert.Nil(t, engine.LoadMonitors(path, reg))
}

func TestRefuseMissingEnvFileStillSignals(t *testing.T) {
	h := newHarness(t)
	p, err := engine.Load("t.yaml", []byte(signalsSrc("env_files: [/nonexistent/x.env]", "echo", "value: x")), h.fakes.registry())
	require.NoError(t, err)
	inv := engine.Invocation{Environ: []string{"MON_URL=https://mon.example/t0ken"}}
	_, err = engine.Prepare(p, inv)
	require.Error(t, err)
	engine.Refuse(p, inv, engine.Options{Stderr: h.stderr}, engine.ExitInvalid, err)
	assert.Equal(t, []string{"fail:2"}, h.fakes.signals)
	assert.Contains(t, h.fakes.bodies[0], "x.env")
}
