package store

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// history records, per plan, one run a day for days days before now
// (id <plan>-<days ago>), each with one attempt; statuses and kinds come
// from the callbacks.
func history(t *testing.T, st *Store, now time.Time, plan string, days int, status func(ago int) string, kind func(ago int) string) {
	t.Helper()
	ctx := context.Background()
	for ago := days; ago >= 1; ago-- {
		r := run(fmt.Sprintf("%s-%03d", plan, ago), plan, now.Add(-time.Duration(ago)*24*time.Hour), engine.StatusRunning)
		r.Kind = kind(ago)
		require.NoError(t, st.StartRun(ctx, r))
		require.NoError(t, st.RecordAttempt(ctx, engine.AttemptRecord{RunID: r.ID, StepID: "dump", Attempt: 1,
			Status: engine.StatusSuccess, Started: r.Started, Finished: r.Started.Add(time.Minute)}))
		r.Status, r.Finished = status(ago), r.Started.Add(time.Minute)
		require.NoError(t, st.FinishRun(ctx, r))
	}
}

func always(v string) func(int) string { return func(int) string { return v } }

func ids(runs []PrunedRun) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.ID)
	}
	sort.Strings(out)
	return out
}

func remaining(t *testing.T, st *Store, plan string) []string {
	t.Helper()
	runs, err := st.Runs(context.Background(), RunFilter{Plan: plan})
	require.NoError(t, err)
	var out []string
	for _, r := range runs {
		out = append(out, r.ID)
	}
	sort.Strings(out)
	return out
}

func span(plan string, from, to int) []string {
	var out []string
	for ago := from; ago <= to; ago++ {
		out = append(out, fmt.Sprintf("%s-%03d", plan, ago))
	}
	return out
}

func TestPruneKeepsWhatEitherRuleKeeps(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
		for _, tc := range []struct {
			name  string
			rules PruneRules
			kept  []string // of plan a's 10 runs (a-001 newest … a-010 oldest)
		}{
			{"days only", PruneRules{KeepDays: 4, KeepRuns: -1}, span("a", 1, 4)}, // 4 days ago to the second is kept
			{"runs only", PruneRules{KeepDays: -1, KeepRuns: 5}, span("a", 1, 5)},
			{"either: days keep more", PruneRules{KeepDays: 5, KeepRuns: 2}, span("a", 1, 5)},
			{"either: runs keep more", PruneRules{KeepDays: 2, KeepRuns: 7}, span("a", 1, 7)},
			{"zero runs", PruneRules{KeepDays: -1, KeepRuns: 0}, span("a", 1, 1)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st := b.open(t)
				history(t, st, now, "a", 10, always(engine.StatusSuccess), always(engine.KindApply))
				history(t, st, now, "b", 3, always(engine.StatusSuccess), always(engine.KindApply))
				tc.rules.Now = now
				res, err := st.Prune(context.Background(), tc.rules)
				require.NoError(t, err)
				assert.Equal(t, tc.kept, remaining(t, st, "a"))
				// The newest run of a plan is always kept, so b loses at
				// most its two older runs.
				gone := ids(res.Runs)
				assert.Equal(t, 13-len(gone), res.Remain)
				for _, id := range gone {
					assert.NotContains(t, tc.kept, id)
				}
				// Attempts went with their runs.
				var orphans int
				require.NoError(t, st.db.QueryRow(`SELECT count(*) FROM attempts WHERE run_id NOT IN (SELECT id FROM runs)`).Scan(&orphans))
				assert.Zero(t, orphans)
				var atts int
				require.NoError(t, st.db.QueryRow(`SELECT count(*) FROM attempts`).Scan(&atts))
				assert.Equal(t, res.Remain, atts)
			})
		}
	})
}

func TestPruneNeverDeletesLastSuccessLastDrillOrRunning(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
		st := b.open(t)
		// 30 daily backups: only the one 20 days ago succeeded. Drills 25
		// and 15 days ago (the older one passed), a restore 12 days ago.
		history(t, st, now, "p", 30, func(ago int) string {
			if ago == 20 || ago == 25 {
				return engine.StatusSuccess
			}
			return engine.StatusFailed
		}, func(ago int) string {
			switch ago {
			case 25, 15:
				return engine.KindDrill
			case 12:
				return engine.KindRestore
			}
			return engine.KindApply
		})
		ctx := context.Background()
		// A run still running, started 40 days ago (its process may yet
		// finish it, or the next run will close it).
		running := run("p-running", "p", now.Add(-40*24*time.Hour), engine.StatusRunning)
		require.NoError(t, st.StartRun(ctx, running))

		dry, err := st.Prune(ctx, PruneRules{KeepDays: 1, KeepRuns: 1, Now: now, DryRun: true})
		require.NoError(t, err)
		assert.Len(t, remaining(t, st, "p"), 31, "a dry run deletes nothing")

		res, err := st.Prune(ctx, PruneRules{KeepDays: 1, KeepRuns: 1, Now: now})
		require.NoError(t, err)
		assert.Equal(t, ids(dry.Runs), ids(res.Runs), "the dry run lists what the prune deletes")
		assert.Equal(t, []string{
			"p-001",     // newest run (and newest apply run)
			"p-012",     // newest restore
			"p-015",     // newest drill (failed)
			"p-020",     // last successful backup
			"p-025",     // last passed drill
			"p-running", // running
		}, remaining(t, st, "p"))

		last, ok, err := st.LastSuccess(ctx, "p")
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, "p-020", last.ID)
		drill, ok, err := st.LastSuccessOf(ctx, "", "p", engine.KindDrill)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, "p-025", drill.ID)
	})
}

func TestPrunePlanOnlyAndNeedsARule(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
		st := b.open(t)
		history(t, st, now, "a", 5, always(engine.StatusSuccess), always(engine.KindApply))
		history(t, st, now, "b", 5, always(engine.StatusSuccess), always(engine.KindApply))
		ctx := context.Background()
		_, err := st.Prune(ctx, PruneRules{KeepDays: -1, KeepRuns: -1, Now: now})
		require.Error(t, err)
		res, err := st.Prune(ctx, PruneRules{KeepDays: -1, KeepRuns: 2, Plan: "b", Now: now})
		require.NoError(t, err)
		assert.Equal(t, span("b", 3, 5), ids(res.Runs))
		assert.Len(t, remaining(t, st, "a"), 5)
		assert.Equal(t, span("b", 1, 2), remaining(t, st, "b"))
		// Nothing left to prune: no error, nothing reported.
		res, err = st.Prune(ctx, PruneRules{KeepDays: -1, KeepRuns: 2, Plan: "b", Now: now})
		require.NoError(t, err)
		assert.Empty(t, res.Runs)
	})
}

func TestLargePruneVacuums(t *testing.T) {
	st := openTemp(t)
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	big := strings.Repeat("x", 2000) // an error text: a few pages of runs
	require.NoError(t, st.Batch(ctx, func(rec engine.Recorder) error {
		for i := range 3 * vacuumAfter {
			r := run(fmt.Sprintf("r%05d", i), "p", now.Add(-time.Duration(i)*time.Hour), engine.StatusRunning)
			if err := rec.StartRun(ctx, r); err != nil {
				return err
			}
			r.Status, r.Finished, r.Error = engine.StatusSuccess, r.Started.Add(time.Minute), big
			if err := rec.FinishRun(ctx, r); err != nil {
				return err
			}
		}
		return nil
	}))
	_, err := st.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	require.NoError(t, err)
	before, err := os.Stat(st.Path())
	require.NoError(t, err)
	res, err := st.Prune(ctx, PruneRules{KeepDays: -1, KeepRuns: 10, Now: now})
	require.NoError(t, err)
	assert.Len(t, res.Runs, 3*vacuumAfter-10)
	assert.True(t, res.Vacuumed)
	after, err := os.Stat(st.Path())
	require.NoError(t, err)
	assert.Less(t, after.Size(), before.Size()/10, "the file gave the deleted pages back")
	wal, err := os.Stat(st.Path() + "-wal")
	if err == nil {
		assert.Less(t, wal.Size(), before.Size()/10, "the WAL was truncated after the rewrite")
	}

	// A small prune does not rewrite the store.
	res, err = st.Prune(ctx, PruneRules{KeepDays: -1, KeepRuns: 5, Now: now})
	require.NoError(t, err)
	assert.Len(t, res.Runs, 5)
	assert.False(t, res.Vacuumed)
}

// TestHotQueriesUseIndexes: the queries of runs, show, status, metrics
// and prune never read the whole runs table (they must stay fast with
// 100 000 runs; `make bench` measures them).
func TestHotQueriesUseIndexes(t *testing.T) {
	st := openTemp(t)
	type query struct {
		sql  string
		args []any
	}
	host := "h"
	lastOK, lastOKArgs := lastSuccessQuery("id", nil, "p", "drill")
	hostOK, hostOKArgs := lastSuccessQuery("id", &host, "p", "drill")
	summaries, summariesArgs := summariesQuery(SummaryFilter{})
	hostSummaries, hostSummariesArgs := summariesQuery(SummaryFilter{Host: "h"})
	pairs, pairsArgs := distinctGroups([]string{"host", "plan"}, "", "")
	for name, q := range map[string]query{
		"runs":                {`SELECT id FROM runs WHERE 1 = 1 ORDER BY started DESC, id DESC LIMIT ?`, []any{20}},
		"runs --plan":         {`SELECT id FROM runs WHERE 1 = 1 AND plan = ? ORDER BY started DESC, id DESC LIMIT ?`, []any{"p", 20}},
		"runs --host --plan":  {`SELECT id FROM runs WHERE 1 = 1 AND host = ? AND plan = ? ORDER BY started DESC, id DESC LIMIT ?`, []any{"h", "p", 20}},
		"status: last run":    {`SELECT id FROM runs WHERE 1 = 1 AND plan = ? AND kind = ? ORDER BY started DESC, id DESC LIMIT ?`, []any{"p", "apply", 1}},
		"status: last ok":     {lastOK, lastOKArgs},
		"status: host ok":     {hostOK, hostOKArgs},
		"show: prefix":        {`SELECT id FROM runs WHERE id >= ? AND id < ? AND substr(id, 1, ?) = ? ORDER BY started DESC, id DESC LIMIT 6`, []any{"ab", "ab\U0010FFFF", 2, "ab"}},
		"show: attempts":      {`SELECT seq FROM attempts WHERE run_id = ? ORDER BY seq`, []any{"x"}},
		"summaries":           {summaries, summariesArgs},
		"summaries --host":    {hostSummaries, hostSummariesArgs},
		"summaries: runs":     {`SELECT id FROM runs WHERE id IN (?, ?)`, []any{"a", "b"}},
		"summaries: attempts": {`SELECT seq FROM attempts a WHERE a.run_id IN (?, ?) ORDER BY a.run_id, a.seq`, []any{"a", "b"}},
		"prune: plans":        {pairs + ` SELECT host, plan FROM g`, pairsArgs},
		"prune: n-th newest":  {`SELECT started FROM runs WHERE host = ? AND plan = ? ORDER BY started DESC LIMIT 1 OFFSET ?`, []any{"h", "p", 99}},
		"prune: newest kind":  {`SELECT id FROM runs WHERE host = ? AND plan = ? AND kind = ? ORDER BY started DESC, id DESC LIMIT 1`, []any{"h", "p", "drill"}},
		"prune: candidates":   {`SELECT id FROM runs WHERE host = ? AND plan = ? AND status <> ? AND started < ? AND id NOT IN (?, ?)`, []any{"h", "p", "running", "2025", "a", "b"}},
		"prune: cascade seek": {`SELECT 1 FROM attempts WHERE run_id = ?`, []any{"x"}},
	} {
		rows, err := st.db.Query(`EXPLAIN QUERY PLAN `+q.sql, q.args...)
		require.NoError(t, err, name)
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			plan = append(plan, detail)
		}
		require.NoError(t, rows.Err())
		rows.Close()
		for _, step := range plan {
			// runs and attempts under their own names or an alias
			if slices.Contains([]string{"SCAN runs", "SCAN attempts", "SCAN r", "SCAN m", "SCAN n", "SCAN a"}, step) {
				t.Errorf("%s: reads the whole table: %q", name, plan)
			}
		}
	}
}
