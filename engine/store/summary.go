package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/planrun/planrun/engine"
)

// Summary is the state of one plan's runs of one kind (apply, restore,
// drill) on one host: what `planrun status` and `metrics` show.
type Summary struct {
	Host    string
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

// SummaryFilter selects the summaries: "" is every host, every plan.
type SummaryFilter struct {
	Host string
	Plan string
	// NoAttempts leaves LastAttempts and LastSuccessAttempts empty: the
	// fleet view needs the runs only.
	NoAttempts bool
}

// Summaries returns a Summary for each (host, plan, kind) that has runs
// and matches f, by host, plan, then kind (apply, restore, drill). The
// groups are found by skipping through the (host, plan, kind, started)
// index, one seek per group, and each group's newest finished run and
// newest success by one more seek each, all in one query; their runs and
// attempts take one query each. The cost grows with the number of groups,
// not with the number of runs recorded.
func (s *Store) Summaries(ctx context.Context, f SummaryFilter) ([]Summary, error) {
	q, args := summariesQuery(f)
	rows, err := s.conn().query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("run store: summaries: %w", err)
	}
	var out []Summary
	var lastIDs, successIDs []string
	for rows.Next() {
		var sum Summary
		var last, success sql.NullString
		if err := rows.Scan(&sum.Host, &sum.Plan, &sum.Kind, &sum.Running, &last, &success); err != nil {
			rows.Close()
			return nil, fmt.Errorf("run store: summaries: %w", err)
		}
		out = append(out, sum)
		lastIDs, successIDs = append(lastIDs, last.String), append(successIDs, success.String)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("run store: summaries: %w", err)
	}
	ids := slices.Concat(lastIDs, successIDs)
	runs, err := s.runsByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	atts := map[string][]engine.AttemptRecord{}
	if !f.NoAttempts {
		if atts, err = s.attemptsOf(ctx, ids); err != nil {
			return nil, err
		}
	}
	for i := range out {
		if r, ok := runs[lastIDs[i]]; ok {
			out[i].Last, out[i].LastAttempts = r, atts[r.ID]
		}
		if r, ok := runs[successIDs[i]]; ok {
			out[i].LastSuccess, out[i].LastSuccessAttempts = r, atts[r.ID]
		}
	}
	slices.SortFunc(out, func(a, b Summary) int {
		if c := strings.Compare(a.Host, b.Host); c != 0 {
			return c
		}
		if c := strings.Compare(a.Plan, b.Plan); c != 0 {
			return c
		}
		if c := kindRank(a.Kind) - kindRank(b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Kind, b.Kind)
	})
	return out, nil
}

// summariesQuery lists the groups with their running count and the ids
// of their newest finished run and newest success.
func summariesQuery(f SummaryFilter) (string, []any) {
	cte, args := distinctGroups([]string{"host", "plan", "kind"}, f.Host, f.Plan)
	return cte + `
		SELECT g.host, g.plan, g.kind,
			(SELECT count(*) FROM runs r
				WHERE r.host = g.host AND r.plan = g.plan AND r.kind = g.kind AND r.status = ?),
			(SELECT r.id FROM runs r
				WHERE r.host = g.host AND r.plan = g.plan AND r.kind = g.kind AND r.status <> ?
				ORDER BY r.started DESC, r.id DESC LIMIT 1),
			(SELECT r.id FROM runs r
				WHERE r.host = g.host AND r.plan = g.plan AND r.kind = g.kind AND r.status = ?
				ORDER BY r.finished DESC, r.started DESC, r.id DESC LIMIT 1)
		FROM g`, append(args, engine.StatusRunning, engine.StatusRunning, engine.StatusSuccess)
}

func kindRank(kind string) int {
	switch kind {
	case engine.KindApply:
		return 0
	case engine.KindRestore:
		return 1
	case engine.KindDrill:
		return 2
	}
	return 3
}

// distinctGroups is a WITH clause naming g the distinct values of cols
// (host, plan[, kind]: a prefix of the runs_host_plan_kind_started index)
// among the runs of host and plan ("" for any). Each row is found by one
// index seek past the previous one (a skip scan), so a group's runs are
// never read one by one: the next kind of the same host and plan, else
// the next plan of the same host, else the next host. (A row comparison
// (host, plan, kind) > (…) would say it in one seek, but SQLite only
// seeks on its first column.) The args go first in the query's
// arguments.
func distinctGroups(cols []string, host, plan string) (string, []any) {
	var cond string
	var condArgs []any
	if host != "" {
		cond += ` AND m.host = ?`
		condArgs = append(condArgs, host)
	}
	if plan != "" {
		cond += ` AND m.plan = ?`
		condArgs = append(condArgs, plan)
	}
	list := func(prefix string) string {
		return prefix + strings.Join(cols, ", "+prefix)
	}
	order := ` ORDER BY ` + list("m.") + ` LIMIT 1`
	args := slices.Clone(condArgs)
	var next []string
	for i := len(cols) - 1; i >= 0; i-- {
		var same string
		for _, c := range cols[:i] {
			same += `m.` + c + ` = g.` + c + ` AND `
		}
		next = append(next, `(SELECT m.id FROM runs m WHERE `+same+`m.`+cols[i]+` > g.`+cols[i]+cond+order+`)`)
		args = append(args, condArgs...)
	}
	return `WITH RECURSIVE g(` + list("") + `) AS (
			SELECT ` + list("") + ` FROM (SELECT ` + list("m.") + ` FROM runs m WHERE 1 = 1` + cond + order + `) AS lowest
			UNION ALL
			SELECT ` + list("n.") + ` FROM g JOIN runs n ON n.id = coalesce(
				` + strings.Join(next, `,
				`) + `))`, args
}

// idChunk bounds the ids in one IN list (SQLite allows 32 766 bound
// values, PostgreSQL 65 535).
const idChunk = 500

// runsByID returns the runs with these ids ("" ids are skipped).
func (s *Store) runsByID(ctx context.Context, ids []string) (map[string]*engine.RunRecord, error) {
	out := map[string]*engine.RunRecord{}
	for chunk := range slices.Chunk(uniqueIDs(ids), idChunk) {
		runs, err := s.queryRuns(ctx, `SELECT `+runColumns+` FROM runs WHERE id IN (`+placeholders(len(chunk))+`)`, anys(chunk)...)
		if err != nil {
			return nil, err
		}
		for i := range runs {
			out[runs[i].ID] = &runs[i]
		}
	}
	return out, nil
}

// attemptsOf returns the attempts of these runs, each run's in the order
// recorded.
func (s *Store) attemptsOf(ctx context.Context, ids []string) (map[string][]engine.AttemptRecord, error) {
	out := map[string][]engine.AttemptRecord{}
	for chunk := range slices.Chunk(uniqueIDs(ids), idChunk) {
		atts, err := s.queryAttempts(ctx, `SELECT `+attemptColumns+` FROM attempts a
			WHERE a.run_id IN (`+placeholders(len(chunk))+`) ORDER BY a.run_id, a.seq`, anys(chunk)...)
		if err != nil {
			return nil, err
		}
		for _, a := range atts {
			out[a.RunID] = append(out[a.RunID], a)
		}
	}
	return out, nil
}

func uniqueIDs(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > 0 && out[0] == "" {
		out = out[1:]
	}
	return out
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func anys[T any](l []T) []any {
	out := make([]any, len(l))
	for i, v := range l {
		out[i] = v
	}
	return out
}
