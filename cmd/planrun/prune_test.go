package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
)

// oldRuns records n successful runs of plan, one a day from days ago
// (less an hour, clear of day boundaries) on, each with a log file where planrun writes them; it returns the ids and
// the log files.
func oldRuns(t *testing.T, db, state, plan string, n, days int) (ids, logs []string) {
	t.Helper()
	st, err := store.Open(db)
	require.NoError(t, err)
	defer st.Close()
	ctx := context.Background()
	for i := range n {
		started := time.Now().UTC().Add(-time.Duration(days+i)*24*time.Hour + time.Hour)
		id := engine.NewRunID()
		log := filepath.Join(state, "logs", plan, started.Format("20060102T150405Z")+"-"+id[:8]+".log")
		require.NoError(t, os.MkdirAll(filepath.Dir(log), 0o700))
		require.NoError(t, os.WriteFile(log, []byte("run started\n"), 0o600))
		host, _ := os.Hostname() // runs of this host, as apply records them
		r := engine.RunRecord{ID: id, Plan: plan, Host: host, Started: started, Status: engine.StatusRunning, LogFile: log}
		require.NoError(t, st.StartRun(ctx, r))
		r.Status, r.Finished = engine.StatusSuccess, started.Add(time.Minute)
		require.NoError(t, st.FinishRun(ctx, r))
		ids, logs = append(ids, id), append(logs, log)
	}
	return ids, logs
}

func storedRuns(t *testing.T, db, plan string) int {
	t.Helper()
	st, err := store.Open(db)
	require.NoError(t, err)
	defer st.Close()
	runs, err := st.Runs(context.Background(), store.RunFilter{Plan: plan})
	require.NoError(t, err)
	return len(runs)
}

func TestHistoryPrune(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	db := filepath.Join(state, "runs.db")
	t.Setenv("PLANRUN_STATE_DIR", state)
	t.Setenv("PLANRUN_DB", "")
	_, logs := oldRuns(t, db, state, "kaleem-daily", 10, 1) // 1 … 10 days old (less an hour)
	oldRuns(t, db, state, "chitlaq-full", 3, 50)

	// A record whose log_file is not a planrun run log is never followed.
	victim := filepath.Join(t.TempDir(), "precious.txt")
	require.NoError(t, os.WriteFile(victim, []byte("keep me"), 0o600))
	func() {
		st, err := store.Open(db)
		require.NoError(t, err)
		defer st.Close()
		host, _ := os.Hostname()
		r := engine.RunRecord{ID: "ffffffff-odd", Plan: "kaleem-daily", Host: host, Started: time.Now().Add(-90 * 24 * time.Hour),
			Status: engine.StatusRunning, LogFile: victim}
		require.NoError(t, st.StartRun(context.Background(), r))
		r.Status, r.Finished = engine.StatusFailed, r.Started.Add(time.Minute)
		require.NoError(t, st.FinishRun(context.Background(), r))
	}()

	r := runCLI(t, "history", "prune", "--keep-days", "3", "--keep-runs", "2", "--plan", "kaleem-daily", "--dry-run")
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "would prune 8 runs and 7 log files; 6 runs remain")
	assert.Equal(t, 11, storedRuns(t, db, "kaleem-daily"), "a dry run deletes nothing")
	for _, l := range logs {
		assert.FileExists(t, l)
	}

	r = runCLI(t, "history", "prune", "--keep-days", "3", "--keep-runs", "2", "--plan", "kaleem-daily")
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "pruned 8 runs and 7 log files; 6 runs remain")
	assert.Regexp(t, `kaleem-daily +8 +`, r.stdout)
	assert.Equal(t, 3, storedRuns(t, db, "kaleem-daily")) // younger than 3 days
	assert.Equal(t, 3, storedRuns(t, db, "chitlaq-full"), "--plan prunes that plan only")
	for i, l := range logs {
		if i < 3 {
			assert.FileExists(t, l)
		} else {
			assert.NoFileExists(t, l)
		}
	}
	assert.FileExists(t, victim)

	r = runCLI(t, "history", "prune", "--keep-runs", "1")
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Equal(t, 1, storedRuns(t, db, "chitlaq-full"))
	assert.Equal(t, 1, storedRuns(t, db, "kaleem-daily"))
	r = runCLI(t, "history", "prune", "--keep-runs", "1")
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "nothing to prune")

	for _, args := range [][]string{
		{"history", "prune"},                       // no rule: everything would go
		{"history", "--keep-days", "3"},            // no subcommand
		{"history", "trim", "--keep-days", "3"},    // unknown subcommand
		{"history", "prune", "--keep-days", "x"},   // not a number
		{"history", "prune", "x", "--keep-runs=1"}, // extra argument
	} {
		r := runCLI(t, args...)
		assert.Equal(t, exitUsage, r.code, "%q", args)
		assert.Contains(t, r.stderr, "usage: planrun history", "%q", args)
	}
}

// After a run, the settings' rules prune the history.
func TestHistoryPrunedAfterEveryRun(t *testing.T) {
	plan, _, state := tinyEnv(t)
	db := filepath.Join(state, "runs.db")
	_, logs := oldRuns(t, db, state, "tiny", 5, 40)

	// Default: 400 days: runs 40 … 44 days old stay.
	r := runCLI(t, "apply", plan)
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Equal(t, 6, storedRuns(t, db, "tiny"))

	// 0 days: off, whatever the run count says.
	t.Setenv("PLANRUN_HISTORY_KEEP_DAYS", "0")
	t.Setenv("PLANRUN_HISTORY_KEEP_RUNS", "1")
	r = runCLI(t, "apply", plan)
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Equal(t, 7, storedRuns(t, db, "tiny"))

	// 30 days or the newest 3: the old runs and their logs go.
	t.Setenv("PLANRUN_HISTORY_KEEP_DAYS", "30")
	t.Setenv("PLANRUN_HISTORY_KEEP_RUNS", "3")
	r = runCLI(t, "apply", plan)
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Equal(t, 3, storedRuns(t, db, "tiny"))
	for _, l := range logs {
		assert.NoFileExists(t, l)
	}
	recent, err := filepath.Glob(filepath.Join(state, "logs", "tiny", "*.log"))
	require.NoError(t, err)
	assert.Len(t, recent, 3, "the kept runs keep their logs")

	// A bad setting fails before the run, like every other setting.
	t.Setenv("PLANRUN_HISTORY_KEEP_DAYS", "soon")
	r = runCLI(t, "apply", plan)
	assert.Equal(t, engine.ExitInvalid, r.code)
	assert.Contains(t, r.stderr, `"soon"`)
}
