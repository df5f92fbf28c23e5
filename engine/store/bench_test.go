package store

import (
	"context"
	"os"
	"testing"

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
			_, _, err := st.LastSuccessOf(ctx, "plan-1", engine.KindDrill)
			return err
		}},
		{"metrics", func() error { _, err := st.Summaries(ctx, ""); return err }},
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
