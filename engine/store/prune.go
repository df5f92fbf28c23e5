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
// each host's plan and kind (apply, restore, drill) and every running run
// are kept: `status`, `metrics` and restores read them.
type PruneRules struct {
	KeepDays int    // keep runs started less than this many days ago; < 0: off
	KeepRuns int    // keep each host's plan's newest N runs (all kinds); < 0: off
	Host     string // only runs recorded on this host; "" for all
	Plan     string // only runs of this plan; "" for all
	Now      time.Time
	DryRun   bool // report what would go, delete nothing
}

// PrunedRun is a run that prune deleted (or, in a dry run, would delete).
type PrunedRun struct {
	ID      string
	Host    string
	Plan    string
	Kind    string
	Started time.Time
	LogFile string
}

// PruneResult is what a prune did.
type PruneResult struct {
	Runs     []PrunedRun
	Remain   int  // runs left in the store (counted only when some go)
	Vacuumed bool // the store was rewritten to give the space back (SQLite)
}

// Prune deletes the runs (and their attempts) that the rules do not keep,
// in one transaction. It does not touch per-run log files: the caller
// removes PrunedRun.LogFile of the runs in the result, which lists the
// deleted runs also when it comes with an error (a failed VACUUM after
// the commit). PostgreSQL's autovacuum gives the space back by itself.
func (s *Store) Prune(ctx context.Context, rules PruneRules) (PruneResult, error) {
	var res PruneResult
	if rules.KeepDays < 0 && rules.KeepRuns < 0 {
		return res, errors.New("history prune: give --keep-days, --keep-runs or both (with neither, every run would go)")
	}
	if rules.Now.IsZero() {
		rules.Now = time.Now()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("run store: prune: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	// No run starts or finishes between choosing and deleting.
	if err := s.d.lockWrites(ctx, tx); err != nil {
		return res, fmt.Errorf("run store: prune: %w", err)
	}
	c := conn{tx, s.d}
	groups, err := hostPlans(ctx, c, rules.Host, rules.Plan)
	if err != nil {
		return res, fmt.Errorf("run store: prune: %w", err)
	}
	var runs []PrunedRun
	for _, g := range groups {
		gone, err := prunePlan(ctx, c, g.host, g.plan, rules)
		if err != nil {
			return res, fmt.Errorf("run store: prune plan %s on host %q: %w", g.plan, g.host, err)
		}
		runs = append(runs, gone...)
	}
	if len(runs) == 0 {
		return res, nil
	}
	if err := c.queryRow(ctx, `SELECT count(*) FROM runs`).Scan(&res.Remain); err != nil {
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
	if res.Vacuumed, err = s.d.compact(ctx, s.db, len(runs), res.Remain); err != nil {
		return res, fmt.Errorf("run store: prune: %w", err)
	}
	return res, nil
}

type hostPlan struct{ host, plan string }

// hostPlans lists the (host, plan) pairs with runs, host and plan ""
// for any.
func hostPlans(ctx context.Context, c conn, host, plan string) ([]hostPlan, error) {
	cte, args := distinctGroups([]string{"host", "plan"}, host, plan)
	rows, err := c.query(ctx, cte+` SELECT host, plan FROM g`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hostPlan
	for rows.Next() {
		var g hostPlan
		if err := rows.Scan(&g.host, &g.plan); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// prunePlan deletes the runs of one plan on one host that no rule keeps.
func prunePlan(ctx context.Context, c conn, host, plan string, rules PruneRules) ([]PrunedRun, error) {
	// Everything started before cutoff is a candidate: older than the age
	// rule's limit and than the count rule's N-th newest run.
	var cutoff sql.NullString
	if rules.KeepDays >= 0 {
		cutoff = fmtTime(rules.Now.Add(-time.Duration(rules.KeepDays) * 24 * time.Hour))
	}
	if rules.KeepRuns > 0 {
		var nth string
		err := c.queryRow(ctx, `SELECT started FROM runs WHERE host = ? AND plan = ?
			ORDER BY started DESC LIMIT 1 OFFSET ?`, host, plan, rules.KeepRuns-1).Scan(&nth)
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
	keep, err := protectedRuns(ctx, c, host, plan)
	if err != nil {
		return nil, err
	}
	// A run still waiting in the outbox (recorded here while the central
	// store was down) stays until it has been copied.
	where := `host = ? AND plan = ? AND status <> ? AND id NOT IN (SELECT run_id FROM sync_pending)`
	args := []any{host, plan, engine.StatusRunning}
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
	rows, err := c.query(ctx, `SELECT id, kind, started, log_file FROM runs WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	var out []PrunedRun
	for rows.Next() {
		r := PrunedRun{Host: host, Plan: plan}
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
	if _, err := c.exec(ctx, `DELETE FROM runs WHERE `+where, args...); err != nil {
		return nil, err
	}
	return out, nil
}

// protectedRuns are the ids prune never deletes: for each kind, the
// newest run of the plan on host and its newest success (the ones
// `status`, `metrics` and `restore --run latest`'s fallback read).
func protectedRuns(ctx context.Context, c conn, host, plan string) ([]string, error) {
	var ids []string
	for _, kind := range []string{engine.KindApply, engine.KindRestore, engine.KindDrill} {
		newest := `SELECT id FROM runs WHERE host = ? AND plan = ? AND kind = ? ORDER BY started DESC, id DESC LIMIT 1`
		success, successArgs := lastSuccessQuery("id", &host, plan, kind)
		for _, sel := range []struct {
			query string
			args  []any
		}{
			{newest, []any{host, plan, kind}},
			{success, successArgs},
		} {
			var id string
			err := c.queryRow(ctx, sel.query, sel.args...).Scan(&id)
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

// lastSuccessQuery selects cols of the newest successful run of a plan and
// kind on *host (any host when host is nil): LastSuccessOf, prune's
// protection and the metrics agree on it.
func lastSuccessQuery(cols string, host *string, plan, kind string) (string, []any) {
	q := `SELECT ` + cols + ` FROM runs WHERE plan = ? AND kind = ? AND status = ?`
	args := []any{plan, kind, engine.StatusSuccess}
	if host != nil {
		q += ` AND host = ?`
		args = append(args, *host)
	}
	return q + ` ORDER BY finished DESC, started DESC, id DESC LIMIT 1`, args
}
