package store

import (
	"context"
	"fmt"

	"github.com/planrun/planrun/engine"
)

// Summary is the state of one plan's runs of one kind (apply, restore,
// drill): what `planrun metrics` exports.
type Summary struct {
	Plan    string
	Kind    string
	Running int // runs recorded as running
	// Last is the newest finished run (nil: none has finished yet).
	Last         *engine.RunRecord
	LastAttempts []engine.AttemptRecord
	// LastSuccess is the newest successful run (nil: none succeeded).
	LastSuccess         *engine.RunRecord
	LastSuccessAttempts []engine.AttemptRecord
}

// Summaries returns a Summary for each plan (or only plan, if not "") and
// kind that has runs, by plan then kind. Each is a few index seeks, so
// the cost does not grow with the number of runs recorded.
func (s *Store) Summaries(ctx context.Context, plan string) ([]Summary, error) {
	plans := []string{plan}
	if plan == "" {
		var err error
		if plans, err = distinctPlans(ctx, s.db); err != nil {
			return nil, fmt.Errorf("run store: %w", err)
		}
	}
	var out []Summary
	for _, p := range plans {
		for _, kind := range []string{engine.KindApply, engine.KindRestore, engine.KindDrill} {
			sum, ok, err := s.summary(ctx, p, kind)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, sum)
			}
		}
	}
	return out, nil
}

func (s *Store) summary(ctx context.Context, plan, kind string) (Summary, bool, error) {
	sum := Summary{Plan: plan, Kind: kind}
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM runs WHERE plan = ? AND kind = ? AND status = ?`,
		plan, kind, engine.StatusRunning).Scan(&sum.Running); err != nil {
		return sum, false, fmt.Errorf("run store: %w", err)
	}
	last, err := s.queryRuns(ctx, `SELECT `+runColumns+` FROM runs
		WHERE plan = ? AND kind = ? AND status <> ? ORDER BY started DESC, rowid DESC LIMIT 1`, plan, kind, engine.StatusRunning)
	if err != nil {
		return sum, false, err
	}
	if len(last) == 0 {
		return sum, sum.Running > 0, nil // no finished run: no success either
	}
	sum.Last = &last[0]
	if sum.LastAttempts, err = s.attempts(ctx, sum.Last.ID); err != nil {
		return sum, false, err
	}
	succ, err := s.queryRuns(ctx, lastSuccessQuery(runColumns), plan, kind, engine.StatusSuccess)
	if err != nil || len(succ) == 0 {
		return sum, err == nil, err
	}
	sum.LastSuccess = &succ[0]
	sum.LastSuccessAttempts = sum.LastAttempts
	if succ[0].ID != sum.Last.ID {
		if sum.LastSuccessAttempts, err = s.attempts(ctx, succ[0].ID); err != nil {
			return sum, false, err
		}
	}
	return sum, true, nil
}
