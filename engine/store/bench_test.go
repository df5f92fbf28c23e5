package store

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
)

// BenchmarkHistoryQueries times the store's share of `planrun runs`,
// `show`, `status` and `metrics` (the process start-up left out) on the
// store PLANRUN_BENCH_DB names: scripts/bench-history.sh fills one with
// 100 000 runs of plan-0 … plan-3 and runs this.
func BenchmarkHistoryQueries(b *testing.B) {
	path := os.Getenv("PLANRUN_BENCH_DB")
	if path == "" {
		b.Skip("PLANRUN_BENCH_DB is not set (scripts/bench-history.sh sets it)")
	}
	st, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	newest, err := st.Runs(ctx, RunFilter{Limit: 1})
	if err != nil || len(newest) == 0 {
		b.Fatalf("empty store %s: %v", path, err)
	}
	prefix := newest[0].ID[:8]
	for _, q := range []struct {
		name string
		run  func() error
	}{
		{"runs", func() error { _, err := st.Runs(ctx, RunFilter{Limit: 20}); return err }},
		{"runs-plan", func() error { _, err := st.Runs(ctx, RunFilter{Plan: "plan-1", Limit: 20}); return err }},
		{"show-prefix", func() error { _, _, err := st.Run(ctx, prefix); return err }},
		{"status", func() error {
			if _, _, err := st.LastSuccess(ctx, "plan-1"); err != nil {
				return err
			}
			if _, err := st.Runs(ctx, RunFilter{Plan: "plan-1", Kind: engine.KindApply, Limit: 1}); err != nil {
				return err
			}
			_, _, err := st.LastSuccessOf(ctx, "", "plan-1", engine.KindDrill)
			return err
		}},
		{"metrics", func() error { _, err := st.Summaries(ctx, SummaryFilter{}); return err }},
	} {
		b.Run(q.name, func(b *testing.B) {
			for b.Loop() {
				if err := q.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Fleet shape of BenchmarkFleetSummaries: `planrun status --all` on a
// central store must answer in < 100 ms (issue 15).
const (
	fleetHosts       = 100
	fleetRunsPerHost = 1000
)

var fleetPlans = []string{"db-daily", "files-daily", "mongo-hourly", "offsite-sync"}

// seedFleet records runsPerHost runs on each of hosts hosts, spread over
// fleetPlans, one a quarter hour apart, with one attempt each: every 50th
// run a drill, every 100th a restore, every 10th failed, the newest one
// of each host still running. It returns the number of (host, plan,
// kind) groups.
func seedFleet(b *testing.B, st *Store, hosts, runsPerHost int) int {
	b.Helper()
	groups := map[[3]string]bool{}
	ctx := context.Background()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for h := range hosts {
		host := fmt.Sprintf("host-%03d", h)
		err := st.Batch(ctx, func(rec engine.Recorder) error {
			for i := range runsPerHost {
				started := base.Add(time.Duration(i) * 15 * time.Minute)
				r := engine.RunRecord{ID: fmt.Sprintf("%s-%05d", host, i), Plan: fleetPlans[i%len(fleetPlans)],
					Host: host, Kind: engine.KindApply, Started: started, Finished: started.Add(time.Minute),
					Status: engine.StatusSuccess}
				switch {
				case i%100 == 0:
					r.Kind = engine.KindRestore
				case i%50 == 0:
					r.Kind = engine.KindDrill
				}
				if i%10 == 9 {
					r.Status, r.ExitCode, r.Error = engine.StatusFailed, 1, "exit status 1"
				}
				if i == runsPerHost-1 {
					r.Status, r.Finished = engine.StatusRunning, time.Time{}
				}
				groups[[3]string{r.Host, r.Plan, r.Kind}] = true
				if err := rec.StartRun(ctx, r); err != nil {
					return err
				}
				if err := rec.RecordAttempt(ctx, engine.AttemptRecord{RunID: r.ID, StepID: "dump", StepType: "exec",
					Attempt: 1, Status: engine.StatusSuccess, Started: started, Finished: started.Add(time.Minute),
					Duration: time.Minute, Outputs: map[string]any{"bytes": 12345}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if st.Backend() == "postgres" {
		// Autovacuum analyses tables this size within a minute.
		if _, err := st.db.ExecContext(ctx, `ANALYZE runs, attempts`); err != nil {
			b.Fatal(err)
		}
	}
	return len(groups)
}

// BenchmarkFleetSummaries times Summaries with no filter (status --all,
// metrics) on 100 hosts × 1000 runs, on each backend.
func BenchmarkFleetSummaries(b *testing.B) {
	benchEachBackend(b, func(b *testing.B, st *Store) {
		wantGroups := seedFleet(b, st, fleetHosts, fleetRunsPerHost)
		ctx := context.Background()
		for b.Loop() {
			sums, err := st.Summaries(ctx, SummaryFilter{})
			if err != nil {
				b.Fatal(err)
			}
			if len(sums) != wantGroups {
				b.Fatalf("%d summaries, want %d", len(sums), wantGroups)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
	})
}
