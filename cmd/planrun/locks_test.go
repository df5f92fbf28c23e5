package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

// lockWorld is two plans sharing one real restic repository, run by the
// built binary as separate processes (as cron starts them).
type lockWorld struct {
	t         *testing.T
	bin       string
	dir       string
	env       []string
	vars      string // the plans' vars
	gate      string // the holding plan waits for this file
	started   string // ... after creating this one
	holderLog string
}

func newLockWorld(t *testing.T) *lockWorld {
	testenv.RequireTool(t, "restic")
	w := &lockWorld{t: t, bin: testenv.PlanrunBin(t), dir: t.TempDir()}
	data := filepath.Join(w.dir, "data")
	require.NoError(t, os.MkdirAll(data, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(data, "a.txt"), []byte("payload"), 0o600))
	pw := filepath.Join(w.dir, "restic.pass")
	require.NoError(t, os.WriteFile(pw, []byte("correct horse battery staple\n"), 0o600))
	w.gate, w.started = filepath.Join(w.dir, "gate"), filepath.Join(w.dir, "started")
	w.vars = `vars: {repo: "` + filepath.Join(w.dir, "repo") + `", pw: "` + pw + `", data: "` + data +
		`", cache: "` + filepath.Join(w.dir, "cache") + `", gate: "` + w.gate + `", started: "` + w.started + `"}` + "\n"
	w.env = append(os.Environ(), "PLANRUN_STATE_DIR="+filepath.Join(w.dir, "state"), "PLANRUN_DB=", "HOME="+w.dir)
	return w
}

// repoKeys are the restic params every step of the plans uses.
const repoKeys = `repository: "${{ vars.repo }}", password_file: "${{ vars.pw }}", cache_dir: "${{ vars.cache }}"`

// daily holds the repository for its whole run (plan-level locks:): it
// waits at the gate, then backs up and prunes (restic's exclusive lock).
func (w *lockWorld) daily() string {
	return w.plan("lk-daily", `defaults: {timeout: 5m}
locks: ["restic:${{ vars.repo }}"]
steps:
  - id: gate
    type: exec
    with:
      env: {GATE: "${{ vars.gate }}", STARTED: "${{ vars.started }}"}
      shell: 'touch "$STARTED"; while [ ! -e "$GATE" ]; do sleep 0.05; done'
  - id: init
    type: restic-init
    with: {`+repoKeys+`}
  - id: backup
    type: restic-backup
    with: {`+repoKeys+`, paths: ["${{ vars.data }}"]}
  - id: prune
    type: restic-forget
    with: {`+repoKeys+`, keep_last: 1, prune: true}
`)
}

// restoreTest takes the repository per step (step-level locks:).
func (w *lockWorld) restoreTest(policy string) string {
	return w.plan("lk-restore-test", `defaults: {timeout: 5m, on_lock: `+policy+`}
steps:
  - id: backup
    type: restic-backup
    locks: &repo ["restic:${{ vars.repo }}"]
    with: {`+repoKeys+`, paths: ["${{ vars.data }}"]}
  - id: check
    type: restic-check
    locks: *repo
    with: {`+repoKeys+`}
`)
}

func (w *lockWorld) plan(name, rest string) string {
	f := filepath.Join(w.dir, name+".yaml")
	src := "version: 1\nname: " + name + "\n" + w.vars + rest
	require.NoError(w.t, os.WriteFile(f, []byte(src), 0o600))
	return f
}

// start runs `planrun apply plan` in the background, stderr to a file.
func (w *lockWorld) start(plan, logName string) (*exec.Cmd, string) {
	log := filepath.Join(w.dir, logName)
	f, err := os.Create(log)
	require.NoError(w.t, err)
	cmd := exec.Command(w.bin, "apply", plan)
	cmd.Env, cmd.Stdout, cmd.Stderr = w.env, f, f
	require.NoError(w.t, cmd.Start())
	w.t.Cleanup(func() {
		f.Close()
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, log
}

func (w *lockWorld) exitCode(cmd *exec.Cmd) int {
	err := cmd.Wait()
	var exit *exec.ExitError
	if err != nil {
		require.ErrorAs(w.t, err, &exit)
		return exit.ExitCode()
	}
	return 0
}

func (w *lockWorld) cli(args ...string) []byte {
	cmd := exec.Command(w.bin, args...)
	cmd.Env = w.env
	out, err := cmd.Output()
	require.NoError(w.t, err, "planrun %s", strings.Join(args, " "))
	return out
}

// showRun is the newest run of plan as `planrun show --json` prints it.
func (w *lockWorld) showRun(plan string) (engine.RunRecord, []engine.AttemptRecord) {
	var runs []engine.RunRecord
	require.NoError(w.t, json.Unmarshal(w.cli("runs", "--plan", plan, "--json"), &runs))
	require.NotEmpty(w.t, runs, plan)
	var shown struct {
		Run      engine.RunRecord       `json:"run"`
		Attempts []engine.AttemptRecord `json:"attempts"`
	}
	require.NoError(w.t, json.Unmarshal(w.cli("show", runs[0].ID, "--json"), &shown))
	return shown.Run, shown.Attempts
}

func fileContains(path, what string) func() bool {
	return func() bool {
		b, err := os.ReadFile(path)
		return err == nil && strings.Contains(string(b), what)
	}
}

func readFile(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// Two plans that share a restic repository, started at once: the second
// waits for the first's resource lock instead of failing on restic's own
// lock, and both succeed.
func TestResourceLockSerialisesPlansSharingAResticRepository(t *testing.T) {
	w := newLockWorld(t)
	daily, dailyLog := w.start(w.daily(), "daily.log")
	require.Eventually(t, func() bool { _, err := os.Stat(w.started); return err == nil }, 30*time.Second, 20*time.Millisecond)
	test, testLog := w.start(w.restoreTest("wait"), "test.log")
	require.Eventually(t, fileContains(testLog, "waiting for a resource lock"), 30*time.Second, 20*time.Millisecond,
		"the restore test waits for the daily run's lock")
	require.NoError(t, os.WriteFile(w.gate, nil, 0o600))

	assert.Equal(t, 0, w.exitCode(daily), readFile(t, dailyLog))
	assert.Equal(t, 0, w.exitCode(test), readFile(t, testLog))
	for _, log := range []string{dailyLog, testLog} {
		assert.NotContains(t, readFile(t, log), "already locked", "restic never saw the other run's lock")
	}
	assert.Contains(t, readFile(t, testLog), "holder_was=")

	run, _ := w.showRun("lk-daily")
	require.Len(t, run.LockWaits, 1)
	assert.Equal(t, engine.LockAcquired, run.LockWaits[0].Outcome)
	assert.Equal(t, "host", run.LockWaits[0].Scope)
	run, atts := w.showRun("lk-restore-test")
	assert.Equal(t, engine.StatusSuccess, run.Status)
	require.NotEmpty(t, atts)
	assert.Equal(t, "backup", atts[0].StepID)
	require.Len(t, atts[0].LockWaits, 1)
	assert.Equal(t, engine.LockAcquired, atts[0].LockWaits[0].Outcome)
	assert.Contains(t, atts[0].LockWaits[0].Holder, "plan lk-daily")
	assert.Positive(t, atts[0].LockWaits[0].Waited)
}

// With on_lock: skip the second plan's steps are recorded as skipped,
// naming the holder; a plan-level skip records a skipped run (exit 3).
func TestResourceLockSkipIsRecorded(t *testing.T) {
	w := newLockWorld(t)
	daily, dailyLog := w.start(w.daily(), "daily.log")
	require.Eventually(t, func() bool { _, err := os.Stat(w.started); return err == nil }, 30*time.Second, 20*time.Millisecond)

	test, testLog := w.start(w.restoreTest("skip"), "test.log")
	assert.Equal(t, 0, w.exitCode(test), readFile(t, testLog))
	run, atts := w.showRun("lk-restore-test")
	assert.Equal(t, engine.StatusSuccess, run.Status)
	require.Len(t, atts, 2)
	for _, a := range atts {
		assert.Equal(t, engine.StatusSkipped, a.Status, a.StepID)
		assert.Contains(t, a.Reason, "held by plan lk-daily", a.StepID)
		require.Len(t, a.LockWaits, 1, a.StepID)
		assert.Equal(t, engine.LockSkipped, a.LockWaits[0].Outcome, a.StepID)
	}

	whole := w.plan("lk-whole", `defaults: {on_lock: skip}
locks: ["restic:${{ vars.repo }}"]
steps:
  - id: check
    type: restic-check
    with: {`+repoKeys+`}
`)
	skipped, skippedLog := w.start(whole, "whole.log")
	assert.Equal(t, engine.ExitLocked, w.exitCode(skipped), readFile(t, skippedLog))
	run, atts = w.showRun("lk-whole")
	assert.Equal(t, engine.StatusSkipped, run.Status)
	assert.Equal(t, engine.ExitLocked, run.ExitCode)
	assert.Empty(t, atts)
	require.Len(t, run.LockWaits, 1)
	assert.Equal(t, engine.LockSkipped, run.LockWaits[0].Outcome)

	require.NoError(t, os.WriteFile(w.gate, nil, 0o600))
	assert.Equal(t, 0, w.exitCode(daily), readFile(t, dailyLog))
}
