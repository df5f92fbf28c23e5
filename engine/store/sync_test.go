package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncRun records one run of three attempts through rec, with a hook
// between the attempts (where a test takes the central store away).
func syncRun(t *testing.T, rec engine.Recorder, id string, between func(i int)) engine.RunRecord {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	r := engine.RunRecord{ID: id, Plan: "p", Host: "h1", Started: now, Status: engine.StatusRunning, Kind: engine.KindApply,
		LockWaits: []engine.LockWait{{Resource: "restic:/r", Scope: "fleet", Outcome: engine.LockAcquired, Waited: time.Second}}}
	require.NoError(t, rec.StartRun(ctx, r))
	for i := 1; i <= 3; i++ {
		if between != nil {
			between(i)
		}
		require.NoError(t, rec.RecordAttempt(ctx, engine.AttemptRecord{RunID: id, StepID: "s" + string(rune('0'+i)), StepType: "exec",
			Attempt: 1, Status: engine.StatusSuccess, Started: now, Finished: now.Add(time.Second), Duration: time.Second,
			Outputs: map[string]any{"i": i}}))
	}
	r.Finished, r.Status = now.Add(3*time.Second), engine.StatusSuccess
	require.NoError(t, rec.FinishRun(context.Background(), r))
	return r
}

// sameRun asserts that central holds exactly what local holds for id.
func sameRun(t *testing.T, local, central *Store, id string) {
	t.Helper()
	ctx := context.Background()
	lr, la, err := local.Run(ctx, id)
	require.NoError(t, err)
	cr, ca, err := central.Run(ctx, id)
	require.NoError(t, err, "the run reached the central store")
	assert.Equal(t, lr, cr)
	require.Len(t, ca, len(la))
	for i := range la {
		la[i].Outputs, ca[i].Outputs = nil, nil // json.Number vs int is the same either way; compared below
		assert.Equal(t, la[i], ca[i])
	}
}

func pending(t *testing.T, local *Store) []string {
	t.Helper()
	ids, err := Pending(context.Background(), local)
	require.NoError(t, err)
	return ids
}

func TestSyncedWritesThroughWhileCentralAnswers(t *testing.T) {
	local, central := openTemp(t), backends[1].open(t)
	rec := NewSynced(local, central, nil, func(err error) { t.Errorf("unexpected warning: %v", err) })
	syncRun(t, rec, "run-up", nil)
	sameRun(t, local, central, "run-up")
	assert.Empty(t, pending(t, local), "a finished, copied run leaves the outbox")
}

func TestSyncedRecordsLocallyWhenCentralIsDownAtStart(t *testing.T) {
	local, central := openTemp(t), backends[1].open(t)
	rec := NewSynced(local, nil, nil, nil)
	syncRun(t, rec, "run-down", nil)
	_, _, err := central.Run(context.Background(), "run-down")
	require.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, []string{"run-down"}, pending(t, local))

	n, err := SyncPending(context.Background(), local, central)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	sameRun(t, local, central, "run-down")
	assert.Empty(t, pending(t, local))
	// Copying again (another host's sync, a retry) changes nothing.
	lr, la := mustRun(t, local, "run-down")
	require.NoError(t, central.ImportRun(context.Background(), lr, la))
	sameRun(t, local, central, "run-down")
}

func mustRun(t *testing.T, st *Store, id string) (engine.RunRecord, []engine.AttemptRecord) {
	t.Helper()
	r, a, err := st.Run(context.Background(), id)
	require.NoError(t, err)
	return r, a
}

// The central store stops answering after the first attempt: the run goes
// on, the warning comes once, and the next sync copies the whole run.
func TestSyncedCentralLostMidRun(t *testing.T) {
	local := openTemp(t)
	dsn := backends[1].dsn(t)
	central, err := Open(dsn)
	require.NoError(t, err)
	var warnings []error
	rec := NewSynced(local, central, nil, func(err error) { warnings = append(warnings, err) })
	syncRun(t, rec, "run-mid", func(i int) {
		if i == 2 {
			central.Close()
		}
	})
	require.Len(t, warnings, 1, "one warning per run")
	assert.Contains(t, warnings[0].Error(), "recorded locally")
	assert.Equal(t, []string{"run-mid"}, pending(t, local))

	central, err = Open(dsn)
	require.NoError(t, err)
	defer central.Close()
	cr, ca, err := central.Run(context.Background(), "run-mid")
	require.NoError(t, err)
	assert.Equal(t, engine.StatusRunning, cr.Status, "before the sync the central store saw only the start")
	assert.Len(t, ca, 1)
	n, err := SyncPending(context.Background(), local, central)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	sameRun(t, local, central, "run-mid")
	assert.Empty(t, pending(t, local))
}

// A run still running is copied but stays in the outbox until it ends.
func TestSyncPendingKeepsRunningRuns(t *testing.T) {
	local, central := openTemp(t), backends[1].open(t)
	rec := NewSynced(local, nil, nil, nil)
	ctx := context.Background()
	r := engine.RunRecord{ID: "run-live", Plan: "p", Host: "h1", Started: time.Now().UTC(), Status: engine.StatusRunning}
	require.NoError(t, rec.StartRun(ctx, r))
	n, err := SyncPending(ctx, local, central)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, []string{"run-live"}, pending(t, local))
	cr, _, err := central.Run(ctx, "run-live")
	require.NoError(t, err)
	assert.Equal(t, engine.StatusRunning, cr.Status)
}

// A sync that fails leaves the outbox as it was, and says which run.
func TestSyncPendingFailureKeepsOutbox(t *testing.T) {
	local := openTemp(t)
	central := backends[1].open(t)
	rec := NewSynced(local, nil, nil, nil)
	syncRun(t, rec, "run-a", nil)
	central.Close()
	_, err := SyncPending(context.Background(), local, central)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run-a")
	assert.Equal(t, []string{"run-a"}, pending(t, local))
	assert.False(t, errors.Is(err, ErrNotFound))
}

// Guards read the host's own history, which is complete without the
// central store.
func TestSyncedStepHistoryIsLocal(t *testing.T) {
	local := openTemp(t)
	rec := NewSynced(local, nil, nil, nil)
	syncRun(t, rec, "run-h", nil)
	h, err := rec.StepHistory(context.Background(), "h1", "p", "s2", 5)
	require.NoError(t, err)
	require.Len(t, h, 1)
	assert.Equal(t, "run-h", h[0].RunID)
}

// Prune keeps a run that waits in the outbox, whatever its age.
func TestPruneKeepsRunsWaitingToBeCopied(t *testing.T) {
	local := openTemp(t)
	rec := NewSynced(local, nil, nil, nil)
	ctx := context.Background()
	old := time.Now().UTC().Add(-100 * 24 * time.Hour)
	for i, id := range []string{"waiting", "newer"} {
		r := engine.RunRecord{ID: id, Plan: "p", Host: "h1", Started: old.Add(time.Duration(i) * time.Hour), Status: engine.StatusRunning}
		require.NoError(t, rec.StartRun(ctx, r))
		r.Status, r.Finished = engine.StatusSuccess, r.Started.Add(time.Minute)
		require.NoError(t, rec.FinishRun(ctx, r))
	}
	require.NoError(t, forget(ctx, local, "newer"))
	// Without the outbox, "waiting" is old and not the newest: it would go.
	res, err := local.Prune(ctx, PruneRules{KeepDays: 30, KeepRuns: -1})
	require.NoError(t, err)
	assert.Empty(t, res.Runs)
	require.NoError(t, forget(ctx, local, "waiting"))
	res, err = local.Prune(ctx, PruneRules{KeepDays: 30, KeepRuns: -1})
	require.NoError(t, err)
	require.Len(t, res.Runs, 1)
	assert.Equal(t, "waiting", res.Runs[0].ID)
}
