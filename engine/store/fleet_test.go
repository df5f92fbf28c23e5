package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// onHost records a complete run of plan on host with one attempt.
func onHost(t *testing.T, st *Store, id, host, plan, kind, status string, started time.Time) {
	t.Helper()
	ctx := context.Background()
	r := run(id, plan, started, engine.StatusRunning)
	r.Host, r.Kind = host, kind
	require.NoError(t, st.StartRun(ctx, r))
	require.NoError(t, st.RecordAttempt(ctx, engine.AttemptRecord{RunID: id, StepID: "dump", Attempt: 1,
		Status: status, Started: started, Finished: started.Add(time.Minute), Outputs: map[string]any{"of": id}}))
	if status != engine.StatusRunning {
		r.Status, r.Finished = status, started.Add(time.Minute)
		require.NoError(t, st.FinishRun(ctx, r))
	}
}

func runIDs(t *testing.T, st *Store, f RunFilter) []string {
	t.Helper()
	runs, err := st.Runs(context.Background(), f)
	require.NoError(t, err)
	var out []string
	for _, r := range runs {
		out = append(out, r.ID)
	}
	return out
}

func TestRunsHostFilter(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := b.open(t)
		onHost(t, st, "a1", "alpha", "p", engine.KindApply, engine.StatusSuccess, t0)
		onHost(t, st, "b1", "beta", "p", engine.KindApply, engine.StatusSuccess, t0.Add(time.Minute))
		onHost(t, st, "a2", "alpha", "q", engine.KindDrill, engine.StatusFailed, t0.Add(2*time.Minute))
		assert.Equal(t, []string{"a2", "b1", "a1"}, runIDs(t, st, RunFilter{}))
		assert.Equal(t, []string{"a2", "a1"}, runIDs(t, st, RunFilter{Host: "alpha"}))
		assert.Equal(t, []string{"a1"}, runIDs(t, st, RunFilter{Host: "alpha", Plan: "p"}))
		assert.Equal(t, []string{"a2"}, runIDs(t, st, RunFilter{Host: "alpha", Kind: engine.KindDrill}))
		assert.Empty(t, runIDs(t, st, RunFilter{Host: "gamma"}))
	})
}

// Runs started at the same instant (a clock's resolution, an import)
// come newest first by id, on both databases, bytewise ("B" < "b").
func TestRunsStartedTogetherOrderByID(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := b.open(t)
		for _, id := range []string{"b-1", "B-2", "a-3"} {
			onHost(t, st, id, "h", "p", engine.KindApply, engine.StatusSuccess, t0)
		}
		onHost(t, st, "next", "h", "p", engine.KindApply, engine.StatusSuccess, t0.Add(time.Nanosecond))
		assert.Equal(t, []string{"next", "b-1", "a-3", "B-2"}, runIDs(t, st, RunFilter{}))
		assert.Equal(t, []string{"next", "b-1"}, runIDs(t, st, RunFilter{Limit: 2}))
	})
}

func TestFleetSummaries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		sums, err := st.Summaries(ctx, SummaryFilter{})
		require.NoError(t, err)
		assert.Empty(t, sums, "an empty store")

		// beta: p ok, then p failed; a drill of p still running.
		onHost(t, st, "beta-p-1", "beta", "p", engine.KindApply, engine.StatusSuccess, t0)
		onHost(t, st, "beta-p-2", "beta", "p", engine.KindApply, engine.StatusFailed, t0.Add(time.Hour))
		onHost(t, st, "beta-p-d", "beta", "p", engine.KindDrill, engine.StatusRunning, t0.Add(2*time.Hour))
		// alpha: p never succeeded; q succeeded; a restore of q.
		onHost(t, st, "alpha-p-1", "alpha", "p", engine.KindApply, engine.StatusFailed, t0)
		onHost(t, st, "alpha-q-1", "alpha", "q", engine.KindApply, engine.StatusSuccess, t0.Add(time.Minute))
		onHost(t, st, "alpha-q-r", "alpha", "q", engine.KindRestore, engine.StatusSuccess, t0.Add(3*time.Hour))
		// A host recorded before hosts were (the column's default).
		onHost(t, st, "nohost-p", "", "p", engine.KindApply, engine.StatusSuccess, t0)

		type row struct {
			host, plan, kind  string
			running           int
			last, lastSuccess string
		}
		summarise := func(f SummaryFilter) []row {
			sums, err := st.Summaries(ctx, f)
			require.NoError(t, err)
			var out []row
			for _, s := range sums {
				r := row{host: s.Host, plan: s.Plan, kind: s.Kind, running: s.Running}
				if s.Last != nil {
					r.last = s.Last.ID
					require.Len(t, s.LastAttempts, 1, s.Last.ID)
					assert.Equal(t, s.Last.ID, s.LastAttempts[0].Outputs["of"], "the last run's own attempts")
				}
				if s.LastSuccess != nil {
					r.lastSuccess = s.LastSuccess.ID
					require.Len(t, s.LastSuccessAttempts, 1, s.LastSuccess.ID)
					assert.Equal(t, s.LastSuccess.ID, s.LastSuccessAttempts[0].Outputs["of"])
					assert.Equal(t, engine.StatusSuccess, s.LastSuccess.Status)
				}
				out = append(out, r)
			}
			return out
		}
		all := []row{
			{"", "p", engine.KindApply, 0, "nohost-p", "nohost-p"},
			{"alpha", "p", engine.KindApply, 0, "alpha-p-1", ""},
			{"alpha", "q", engine.KindApply, 0, "alpha-q-1", "alpha-q-1"},
			{"alpha", "q", engine.KindRestore, 0, "alpha-q-r", "alpha-q-r"},
			{"beta", "p", engine.KindApply, 0, "beta-p-2", "beta-p-1"},
			{"beta", "p", engine.KindDrill, 1, "", ""},
		}
		assert.Equal(t, all, summarise(SummaryFilter{}))
		assert.Equal(t, all[4:], summarise(SummaryFilter{Host: "beta"}))
		assert.Equal(t, []row{all[0], all[1], all[4], all[5]}, summarise(SummaryFilter{Plan: "p"}))
		assert.Equal(t, all[2:4], summarise(SummaryFilter{Host: "alpha", Plan: "q"}))
		assert.Empty(t, summarise(SummaryFilter{Host: "gamma"}))
	})
}

// Many groups: the skip scan visits each (host, plan, kind) once, in
// order, whatever the runs around it.
func TestFleetSummariesManyGroups(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		kinds := []string{engine.KindApply, engine.KindRestore, engine.KindDrill}
		var want []string
		require.NoError(t, st.Batch(ctx, func(rec engine.Recorder) error {
			for h := range 4 {
				for p := range 3 {
					for k, kind := range kinds[:1+(h+p)%3] {
						want = append(want, fmt.Sprintf("h%d/p%d/%s", h, p, kind))
						for i := range 3 {
							started := t0.Add(time.Duration(i*10+k) * time.Minute)
							r := engine.RunRecord{ID: fmt.Sprintf("h%d-p%d-%s-%d", h, p, kind, i), Host: fmt.Sprintf("h%d", h),
								Plan: fmt.Sprintf("p%d", p), Kind: kind, Started: started, Finished: started.Add(time.Second),
								Status: engine.StatusSuccess}
							if err := rec.StartRun(ctx, r); err != nil {
								return err
							}
						}
					}
				}
			}
			return nil
		}))
		sums, err := st.Summaries(ctx, SummaryFilter{})
		require.NoError(t, err)
		var got []string
		for _, s := range sums {
			got = append(got, fmt.Sprintf("%s/%s/%s", s.Host, s.Plan, s.Kind))
			require.NotNil(t, s.Last)
			assert.Equal(t, fmt.Sprintf("%s-%s-%s-2", s.Host, s.Plan, s.Kind), s.Last.ID)
		}
		assert.Equal(t, want, got)
		sums, err = st.Summaries(ctx, SummaryFilter{Plan: "p1"})
		require.NoError(t, err)
		var wantP1 []string
		for _, g := range want {
			if strings.Contains(g, "/p1/") {
				wantP1 = append(wantP1, g)
			}
		}
		got = nil
		for _, s := range sums {
			got = append(got, fmt.Sprintf("%s/%s/%s", s.Host, s.Plan, s.Kind))
		}
		assert.Equal(t, wantP1, got)
	})
}

// A host's newest success or manifest; "" reads any host's (a restore on
// a new machine).
func TestLastSuccessAndManifestByHost(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		for _, r := range []struct {
			id, host string
			at       time.Duration
		}{{"old-alpha", "alpha", 0}, {"new-beta", "beta", time.Hour}} {
			rr := run(r.id, "p", t0.Add(r.at), engine.StatusRunning)
			rr.Host = r.host
			require.NoError(t, st.StartRun(ctx, rr))
			require.NoError(t, st.RecordAttempt(ctx, engine.AttemptRecord{RunID: r.id, StepID: "dump", Attempt: 1,
				Status: engine.StatusSuccess, Records: []engine.ArtifactRecord{{StepID: "dump", Path: "/b/" + r.id}}}))
			rr.Status, rr.Finished = engine.StatusSuccess, rr.Started.Add(time.Minute)
			require.NoError(t, st.FinishRun(ctx, rr))
		}
		for host, want := range map[string]string{"": "new-beta", "alpha": "old-alpha", "beta": "new-beta"} {
			r, ok, err := st.LastSuccessOf(ctx, host, "p", engine.KindApply)
			require.NoError(t, err)
			assert.True(t, ok)
			assert.Equal(t, want, r.ID, "LastSuccessOf host %q", host)
			m, err := st.LatestManifest(ctx, host, "p")
			require.NoError(t, err)
			assert.Equal(t, want, m.RunID, "LatestManifest host %q", host)
			assert.Equal(t, "/b/"+want, m.Artifacts[0].Path)
		}
		_, ok, err := st.LastSuccessOf(ctx, "gamma", "p", engine.KindApply)
		assert.NoError(t, err)
		assert.False(t, ok)
		_, err = st.LatestManifest(ctx, "gamma", "p")
		assert.ErrorIs(t, err, ErrNotFound)
		assert.ErrorContains(t, err, "gamma")
	})
}

func TestLockWaitsRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		planLock := engine.LockWait{Resource: "restic:/backups/restic-local", Scope: "host", Waited: 1500 * time.Millisecond,
			Outcome: engine.LockAcquired, Holder: "srv1 pid 77 run 01HX (kaleem-monthly)"}
		fleetLock := engine.LockWait{Resource: "offsite", Scope: "fleet", Waited: time.Minute, Outcome: engine.LockTimeout,
			Error: "lock_wait 1m0s expired"}
		r := run("waits", "p", t0, engine.StatusRunning)
		r.LockWaits = []engine.LockWait{planLock}
		require.NoError(t, st.StartRun(ctx, r))
		got, _, err := st.Run(ctx, "waits")
		require.NoError(t, err)
		assert.Equal(t, []engine.LockWait{planLock}, got.LockWaits, "written at start")

		att := engine.AttemptRecord{RunID: "waits", StepID: "upload", Attempt: 0, Status: engine.StatusSkipped,
			Reason: "resource offsite busy", LockWaits: []engine.LockWait{fleetLock}}
		require.NoError(t, st.RecordAttempt(ctx, att))
		require.NoError(t, st.RecordAttempt(ctx, engine.AttemptRecord{RunID: "waits", StepID: "other", Status: engine.StatusSuccess}))

		// FinishRun without waits keeps the start's; with waits, writes them.
		r.LockWaits, r.Status, r.Finished = nil, engine.StatusSuccess, t0.Add(time.Hour)
		require.NoError(t, st.FinishRun(ctx, r))
		got, atts, err := st.Run(ctx, "waits")
		require.NoError(t, err)
		assert.Equal(t, []engine.LockWait{planLock}, got.LockWaits, "kept at finish")
		require.Len(t, atts, 2)
		assert.Equal(t, []engine.LockWait{fleetLock}, atts[0].LockWaits)
		assert.Nil(t, atts[1].LockWaits)

		r.LockWaits = []engine.LockWait{planLock, fleetLock}
		require.NoError(t, st.FinishRun(ctx, r))
		runs, err := st.Runs(ctx, RunFilter{})
		require.NoError(t, err)
		require.Len(t, runs, 1)
		assert.Equal(t, r.LockWaits, runs[0].LockWaits, "written at finish, read by Runs")
	})
}

func TestImportRunIsIdempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		r := run("synced", "p", t0, engine.StatusRunning)
		r.Host, r.Kind, r.LockWaits = "edge-7", engine.KindApply, []engine.LockWait{{Resource: "r", Scope: "fleet", Outcome: engine.LockAcquired}}
		atts := []engine.AttemptRecord{
			{RunID: "synced", StepID: "dump", Attempt: 1, Status: engine.StatusFailed, Error: "boom"},
			{RunID: "synced", StepID: "dump", Attempt: 2, Status: engine.StatusSuccess, Outputs: map[string]any{"n": "1"},
				Records: []engine.ArtifactRecord{{StepID: "dump", Path: "/b/1"}}},
		}
		// First sync: the run as it was when the central store came back.
		require.NoError(t, st.ImportRun(ctx, r, atts[:1]))
		got, gotAtts, err := st.Run(ctx, "synced")
		require.NoError(t, err)
		assert.Equal(t, r, got)
		assert.Len(t, gotAtts, 1)

		// Later syncs of the finished run, twice: the same state.
		r.Status, r.Finished, r.ExitCode = engine.StatusSuccess, t0.Add(time.Minute), 0
		var states []string
		for range 2 {
			require.NoError(t, st.ImportRun(ctx, r, atts))
			got, gotAtts, err := st.Run(ctx, "synced")
			require.NoError(t, err)
			assert.Equal(t, r, got)
			states = append(states, mustJSON(t, gotAtts))
		}
		assert.Equal(t, mustJSON(t, atts), states[0])
		assert.Equal(t, states[0], states[1])
		var n int
		require.NoError(t, st.db.QueryRow(`SELECT count(*) FROM attempts`).Scan(&n))
		assert.Equal(t, 2, n, "attempts replaced, not appended")
		m, err := st.LatestManifest(ctx, "edge-7", "p")
		require.NoError(t, err)
		assert.Equal(t, "synced", m.RunID)

		// A run first recorded here (StartRun) is overwritten the same way.
		require.NoError(t, st.StartRun(ctx, run("local", "p", t0, engine.StatusRunning)))
		done := run("local", "p", t0, engine.StatusFailed)
		require.NoError(t, st.ImportRun(ctx, done, nil))
		got, gotAtts, err = st.Run(ctx, "local")
		require.NoError(t, err)
		assert.Equal(t, engine.StatusFailed, got.Status)
		assert.Empty(t, gotAtts)

		// Nothing half-written: a bad attempt rolls the whole import back.
		bad := r
		bad.Status = engine.StatusFailed
		err = st.ImportRun(ctx, bad, []engine.AttemptRecord{{RunID: "other", StepID: "x"}})
		assert.ErrorContains(t, err, "other")
		got, _, err = st.Run(ctx, "synced")
		require.NoError(t, err)
		assert.Equal(t, engine.StatusSuccess, got.Status)
		assert.Error(t, st.ImportRun(ctx, engine.RunRecord{}, nil), "no id")
	})
}

// Prune keeps each host's newest runs of a plan: one busy host's runs do
// not push out a quiet host's history, and --host prunes only that host.
func TestPruneIsPerHost(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
		for i := range 5 {
			onHost(t, st, fmt.Sprintf("busy-%d", i), "busy", "p", engine.KindApply, engine.StatusSuccess, now.Add(-time.Duration(i)*time.Hour))
			onHost(t, st, fmt.Sprintf("other-%d", i), "other", "p", engine.KindApply, engine.StatusSuccess, now.Add(-time.Duration(i)*time.Hour))
		}
		onHost(t, st, "quiet-old", "quiet", "p", engine.KindApply, engine.StatusSuccess, now.Add(-100*24*time.Hour))

		res, err := st.Prune(ctx, PruneRules{KeepDays: -1, KeepRuns: 2, Host: "busy", Now: now})
		require.NoError(t, err)
		assert.Equal(t, []string{"busy-2", "busy-3", "busy-4"}, ids(res.Runs))
		for _, r := range res.Runs {
			assert.Equal(t, "busy", r.Host)
		}
		assert.Len(t, runIDs(t, st, RunFilter{Host: "other"}), 5, "other hosts untouched")

		res, err = st.Prune(ctx, PruneRules{KeepDays: 30, KeepRuns: 1, Now: now})
		require.NoError(t, err)
		assert.Equal(t, []string{"busy-0", "busy-1"}, runIDs(t, st, RunFilter{Host: "busy"}), "within 30 days")
		assert.Equal(t, []string{"quiet-old"}, runIDs(t, st, RunFilter{Host: "quiet"}), "a host's newest run stays, however old")
		assert.Empty(t, res.Runs)
	})
}

// Prune takes the store's write lock (SQLite: the file's; PostgreSQL: the
// tables'), so runs recorded meanwhile wait for it instead of failing or
// being deleted half-written; a running run is never pruned.
func TestPruneWhileRecording(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.open(t)
		const runs = 20
		written := make(chan error, 1)
		go func() { written <- writeRuns(ctx, st, "busy", runs) }()
		var pruned int
		prune := func() {
			res, err := st.Prune(ctx, PruneRules{KeepDays: -1, KeepRuns: 0, Now: time.Now().Add(time.Hour)})
			require.NoError(t, err)
			pruned += len(res.Runs)
		}
		// A prune each time a new run has started (not a tight loop:
		// SQLite's writers would wait out their busy timeout), then one
		// after the last run.
		newest := ""
		for done := false; !done; {
			select {
			case err := <-written:
				require.NoError(t, err)
				done = true
			default:
			}
			runs, err := st.Runs(ctx, RunFilter{Limit: 1})
			require.NoError(t, err)
			if len(runs) > 0 && runs[0].ID != newest {
				newest = runs[0].ID
				prune()
			}
		}
		prune()
		left, err := st.Runs(ctx, RunFilter{})
		require.NoError(t, err)
		assert.Equal(t, runs, pruned+len(left), "every run either pruned whole or still there")
		assert.LessOrEqual(t, len(left), 2, "the last prune left the newest run and success")
		for _, r := range left {
			_, atts, err := st.Run(ctx, r.ID)
			require.NoError(t, err)
			assert.Len(t, atts, 3, "run %s kept all its attempts", r.ID)
		}
	})
}
