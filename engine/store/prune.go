package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
)

// PruneRules say which runs history prune keeps. A run is kept when
// either rule keeps it; a rule that is off (negative) keeps nothing by
// itself. Whatever the rules, the newest run and the newest success of
// each plan and kind (apply, restore, drill) and every running run are
// kept: `status`, `metrics` and restores read them.
type PruneRules struct {
	KeepDays int    // keep runs started less than this many days ago; < 0: off
	KeepRuns int    // keep each plan's newest N runs (all kinds); < 0: off
	Plan     string // only runs of this plan; "" for all
	Now      time.Time
	DryRun   bool // report what would go, delete nothing
}

// PrunedRun is a run that prune deleted (or, in a dry run, would delete).
type PrunedRun struct {
	ID      string
	Plan    string
	Kind    string
	Started time.Time
	LogFile string
}

// PruneResult is what a prune did.
type PruneResult struct {
	Runs     []PrunedRun
	Remain   int  // runs left in the store (counted only when some go)
	Vacuumed bool // the store was rewritten to give the space back
}

// vacuumAfter is how many deleted runs make a prune VACUUM the store: a
// rewrite of the file costs about as much as reading it, worth it when a
// large part went (about 1 KiB per run with its attempts).
const vacuumAfter = 1000

// Prune deletes the runs (and their attempts) that the rules do not keep,
// in one transaction. It does not touch per-run log files: the caller
// removes PrunedRun.LogFile of the runs in the result, which lists the
// deleted runs also when it comes with an error (a failed VACUUM after
// the commit).
func (s *Store) Prune(ctx context.Context, rules PruneRules) (PruneResult, error) {
	var res PruneResult
	if rules.KeepDays < 0 && rules.KeepRuns < 0 {
		return res, errors.New("history prune: give --keep-days, --keep-runs or both (with neither, every run would go)")
	}
	if rules.Now.IsZero() {
		rules.Now = time.Now()
	}
	// The transaction takes the write lock at BEGIN (see the DSN): no
	// run starts or finishes between choosing and deleting.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("run store: prune: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	plans := []string{rules.Plan}
	if rules.Plan == "" {
		if plans, err = distinctPlans(ctx, tx); err != nil {
			return res, fmt.Errorf("run store: prune: %w", err)
		}
	}
	var runs []PrunedRun
	for _, plan := range plans {
		gone, err := prunePlan(ctx, tx, plan, rules)
		if err != nil {
			return res, fmt.Errorf("run store: prune plan %s: %w", plan, err)
		}
		runs = append(runs, gone...)
	}
	if len(runs) == 0 {
		return res, nil
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM runs`).Scan(&res.Remain); err != nil {
		return res, fmt.Errorf("run store: prune: %w", err)
	}
	if rules.DryRun {
		res.Runs, res.Remain = runs, res.Remain-len(runs)
		return res, nil
	}
	if err := tx.Commit(); err != nil {
		return PruneResult{}, fmt.Errorf("run store: prune: %w", err)
	}
	// From here on the runs are gone: the result lists them even when the
	// clean-up below fails, so their log files still go.
	res.Runs = runs
	if len(res.Runs) >= vacuumAfter || len(res.Runs) > res.Remain {
		if err := s.vacuum(ctx); err != nil {
			return res, fmt.Errorf("run store: prune: vacuum: %w", err)
		}
		res.Vacuumed = true
	}
	// Refresh the planner's statistics for the smaller tables (cheap:
	// it only analyses what changed enough to matter).
	if _, err := s.db.ExecContext(ctx, `PRAGMA optimize`); err != nil {
		return res, fmt.Errorf("run store: prune: optimize: %w", err)
	}
	return res, nil
}

// querier is the database or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// distinctPlans lists the plans with runs, one index seek per plan (a
// skip scan) rather than a pass over every run.
func distinctPlans(ctx context.Context, q querier) ([]string, error) {
	rows, err := q.QueryContext(ctx, `WITH RECURSIVE p(plan) AS (
			SELECT min(plan) FROM runs
			UNION ALL
			SELECT (SELECT min(plan) FROM runs WHERE runs.plan > p.plan) FROM p WHERE p.plan IS NOT NULL)
		SELECT plan FROM p WHERE plan IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var plans []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		plans = append(plans, p)
	}
	return plans, rows.Err()
}

// prunePlan deletes one plan's runs that no rule keeps.
func prunePlan(ctx context.Context, tx *sql.Tx, plan string, rules PruneRules) ([]PrunedRun, error) {
	// Everything started before cutoff is a candidate: older than the age
	// rule's limit and than the count rule's N-th newest run.
	var cutoff sql.NullString
	if rules.KeepDays >= 0 {
		cutoff = fmtTime(rules.Now.Add(-time.Duration(rules.KeepDays) * 24 * time.Hour))
	}
	if rules.KeepRuns > 0 {
		var nth string
		err := tx.QueryRowContext(ctx, `SELECT started FROM runs WHERE plan = ?
			ORDER BY started DESC LIMIT 1 OFFSET ?`, plan, rules.KeepRuns-1).Scan(&nth)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil // fewer runs than the count rule keeps
		}
		if err != nil {
			return nil, err
		}
		// Runs started at the same instant as the N-th are kept with it.
		if !cutoff.Valid || nth < cutoff.String {
			cutoff = sql.NullString{String: nth, Valid: true}
		}
	}
	keep, err := protectedRuns(ctx, tx, plan)
	if err != nil {
		return nil, err
	}
	where := `plan = ? AND status <> ?`
	args := []any{plan, engine.StatusRunning}
	if cutoff.Valid {
		where += ` AND started < ?`
		args = append(args, cutoff.String)
	}
	if len(keep) > 0 {
		where += ` AND id NOT IN (?` + strings.Repeat(", ?", len(keep)-1) + `)`
		for _, id := range keep {
			args = append(args, id)
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, kind, started, log_file FROM runs WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	var out []PrunedRun
	for rows.Next() {
		r := PrunedRun{Plan: plan}
		var started sql.NullString
		if err := rows.Scan(&r.ID, &r.Kind, &started, &r.LogFile); err != nil {
			rows.Close()
			return nil, err
		}
		if r.Started, err = parseTime(started); err != nil {
			rows.Close()
			return nil, fmt.Errorf("run %s: %w", r.ID, err)
		}
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 || rules.DryRun {
		return out, nil
	}
	// Attempts go with their runs (ON DELETE CASCADE).
	if _, err := tx.ExecContext(ctx, `DELETE FROM runs WHERE `+where, args...); err != nil {
		return nil, err
	}
	return out, nil
}

// protectedRuns are the ids prune never deletes: for each kind, the
// plan's newest run and its newest success (the ones `status`, `metrics`
// and `restore --run latest`'s fallback read).
func protectedRuns(ctx context.Context, q querier, plan string) ([]string, error) {
	var ids []string
	for _, kind := range []string{engine.KindApply, engine.KindRestore, engine.KindDrill} {
		for _, sel := range []struct {
			query string
			args  []any
		}{
			{`SELECT id FROM runs WHERE plan = ? AND kind = ? ORDER BY started DESC LIMIT 1`, []any{plan, kind}},
			{lastSuccessQuery("id"), []any{plan, kind, engine.StatusSuccess}},
		} {
			var id string
			err := q.QueryRowContext(ctx, sel.query, sel.args...).Scan(&id)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// lastSuccessQuery selects cols of a plan's newest successful run of a
// kind: LastSuccessOf, prune's protection and the metrics agree on it.
func lastSuccessQuery(cols string) string {
	return `SELECT ` + cols + ` FROM runs
		WHERE plan = ? AND kind = ? AND status = ? ORDER BY finished DESC, started DESC LIMIT 1`
}

// vacuum rewrites the store to give deleted pages back to the file
// system, and truncates the write-ahead log the rewrite went through.
func (s *Store) vacuum(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `VACUUM`); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	return err
}
