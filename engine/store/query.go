package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/planrun/planrun/engine"
)

var (
	// ErrNotFound: no run has that id (or id prefix).
	ErrNotFound = errors.New("no such run")
	// ErrAmbiguous: an id prefix matches more than one run.
	ErrAmbiguous = errors.New("ambiguous run id prefix")
)

// RunFilter selects runs for Runs.
type RunFilter struct {
	Host  string // only runs recorded on this host; "" for all
	Plan  string // only runs of this plan; "" for all
	Kind  string // only runs of this kind (apply, restore, drill); "" for all
	Limit int    // at most this many; 0 for no limit
}

const runColumns = `id, plan, plan_file, plan_sha256, host, trigger, pid, started, finished, status, exit_code, error, log_file,
	kind, source_run, report_json, lock_waits_json`

// Runs lists runs, newest first (runs started at the same instant by id,
// highest first).
func (s *Store) Runs(ctx context.Context, f RunFilter) ([]engine.RunRecord, error) {
	q := `SELECT ` + runColumns + ` FROM runs WHERE 1 = 1`
	var args []any
	if f.Host != "" {
		q += ` AND host = ?`
		args = append(args, f.Host)
	}
	if f.Plan != "" {
		q += ` AND plan = ?`
		args = append(args, f.Plan)
	}
	if f.Kind != "" {
		q += ` AND kind = ?`
		args = append(args, f.Kind)
	}
	q += ` ORDER BY started DESC, id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return s.queryRuns(ctx, q, args...)
}

// Run returns the run whose id is id or, failing that, the only run whose
// id starts with id (like git), with its attempts in the order recorded.
func (s *Store) Run(ctx context.Context, id string) (engine.RunRecord, []engine.AttemptRecord, error) {
	if id == "" {
		return engine.RunRecord{}, nil, fmt.Errorf("empty run id")
	}
	runs, err := s.queryRuns(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ?`, id)
	if err == nil && len(runs) == 0 {
		// substr, not LIKE: LIKE ignores ASCII case and treats _ and % specially.
		// The range lets the primary key find the candidates (no scan of
		// every run): ids compare bytewise in both databases (PostgreSQL's
		// id column is COLLATE "C"), and no character sorts after U+10FFFF.
		runs, err = s.queryRuns(ctx, `SELECT `+runColumns+` FROM runs
			WHERE id >= ? AND id < ? AND substr(id, 1, ?) = ? ORDER BY started DESC, id DESC LIMIT 6`,
			id, id+"\U0010FFFF", utf8.RuneCountInString(id), id)
	}
	if err != nil {
		return engine.RunRecord{}, nil, err
	}
	switch len(runs) {
	case 0:
		return engine.RunRecord{}, nil, fmt.Errorf("run %q: %w", id, ErrNotFound)
	case 1:
	default:
		ids := make([]string, 0, len(runs))
		for i, r := range runs {
			if i == 5 {
				ids = append(ids, "...")
				break
			}
			ids = append(ids, r.ID)
		}
		return engine.RunRecord{}, nil, fmt.Errorf("run %q: %w: matches %s", id, ErrAmbiguous, strings.Join(ids, ", "))
	}
	atts, err := s.attempts(ctx, runs[0].ID)
	if err != nil {
		return engine.RunRecord{}, nil, err
	}
	return runs[0], atts, nil
}

// LastSuccess returns the plan's most recently finished successful run
// on any host (of its backup runs: restores and drills are not backups).
func (s *Store) LastSuccess(ctx context.Context, plan string) (engine.RunRecord, bool, error) {
	return s.LastSuccessOf(ctx, "", plan, engine.KindApply)
}

// LastSuccessOf returns the plan's most recently finished successful run
// of a kind (apply, restore, drill) on host, or on any host when host is
// "" (a restore on a new machine reads the newest backup of whichever
// host made it).
func (s *Store) LastSuccessOf(ctx context.Context, host, plan, kind string) (engine.RunRecord, bool, error) {
	var on *string
	if host != "" {
		on = &host
	}
	q, args := lastSuccessQuery(runColumns, on, plan, kind)
	runs, err := s.queryRuns(ctx, q, args...)
	if err != nil || len(runs) == 0 {
		return engine.RunRecord{}, false, err
	}
	return runs[0], true, nil
}

func (s *Store) queryRuns(ctx context.Context, q string, args ...any) ([]engine.RunRecord, error) {
	rows, err := s.conn().query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("run store: %w", err)
	}
	defer rows.Close()
	var out []engine.RunRecord
	for rows.Next() {
		var r engine.RunRecord
		var started, finished sql.NullString
		var report, waits string
		if err := rows.Scan(&r.ID, &r.Plan, &r.PlanFile, &r.PlanSHA256, &r.Host, &r.Trigger, &r.PID,
			&started, &finished, &r.Status, &r.ExitCode, &r.Error, &r.LogFile,
			&r.Kind, &r.SourceRun, &report, &waits); err != nil {
			return nil, fmt.Errorf("run store: %w", err)
		}
		if r.LockWaits, err = decodeList[engine.LockWait](waits); err != nil {
			return nil, fmt.Errorf("run store: run %s: lock waits: %w", r.ID, err)
		}
		if report != "" {
			r.Report = &engine.RestoreReport{}
			if err := json.Unmarshal([]byte(report), r.Report); err != nil {
				return nil, fmt.Errorf("run store: run %s: report: %w", r.ID, err)
			}
		}
		if r.Started, err = parseTime(started); err != nil {
			return nil, fmt.Errorf("run store: run %s: %w", r.ID, err)
		}
		if r.Finished, err = parseTime(finished); err != nil {
			return nil, fmt.Errorf("run store: run %s: %w", r.ID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("run store: %w", err)
	}
	return out, nil
}

const attemptColumns = `a.run_id, a.step_id, a.step_type, a.attempt, a.status, a.started, a.finished,
	a.duration_ns, a.error, a.reason, a.outputs_json, a.bytes_in, a.bytes_out, a.artifacts_json, a.records_json,
	a.lock_waits_json`

func (s *Store) attempts(ctx context.Context, runID string) ([]engine.AttemptRecord, error) {
	return s.queryAttempts(ctx, `SELECT `+attemptColumns+` FROM attempts a WHERE a.run_id = ? ORDER BY a.seq`, runID)
}

var _ engine.HistoryReader = (*Store)(nil)

// StepHistory returns the successful attempts of a step in the plan's
// newest n successful backup runs that ran it successfully, newest first:
// what guards and history.* compare a run with. The runs index
// (plan, kind, started) walks the plan's runs newest first; each run's
// attempts are found by the attempts index.
func (s *Store) StepHistory(ctx context.Context, host, plan, step string, n int) ([]engine.AttemptRecord, error) {
	return s.queryAttempts(ctx, `SELECT `+attemptColumns+` FROM runs r JOIN attempts a ON a.run_id = r.id
		WHERE r.plan = ? AND r.kind = ? AND r.status = ? AND r.host = ? AND a.step_id = ? AND a.status = ?
		ORDER BY r.started DESC, a.seq DESC LIMIT ?`,
		plan, engine.KindApply, engine.StatusSuccess, host, step, engine.StatusSuccess, n)
}

func (s *Store) queryAttempts(ctx context.Context, q string, args ...any) ([]engine.AttemptRecord, error) {
	rows, err := s.conn().query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("run store: %w", err)
	}
	defer rows.Close()
	var out []engine.AttemptRecord
	for rows.Next() {
		var a engine.AttemptRecord
		var started, finished sql.NullString
		var dur int64
		var outputs, artifacts, records, waits string
		if err := rows.Scan(&a.RunID, &a.StepID, &a.StepType, &a.Attempt, &a.Status, &started, &finished,
			&dur, &a.Error, &a.Reason, &outputs, &a.BytesIn, &a.BytesOut, &artifacts, &records, &waits); err != nil {
			return nil, fmt.Errorf("run store: %w", err)
		}
		a.Duration = time.Duration(dur)
		where := fmt.Sprintf("run %s step %s attempt %d", a.RunID, a.StepID, a.Attempt)
		if a.Started, err = parseTime(started); err != nil {
			return nil, fmt.Errorf("run store: %s: %w", where, err)
		}
		if a.Finished, err = parseTime(finished); err != nil {
			return nil, fmt.Errorf("run store: %s: %w", where, err)
		}
		if a.Outputs, err = decodeMap[any](outputs); err != nil {
			return nil, fmt.Errorf("run store: %s: outputs: %w", where, err)
		}
		if a.Artifacts, err = decodeMap[string](artifacts); err != nil {
			return nil, fmt.Errorf("run store: %s: artifacts: %w", where, err)
		}
		if a.Records, err = decodeList[engine.ArtifactRecord](records); err != nil {
			return nil, fmt.Errorf("run store: %s: records: %w", where, err)
		}
		if a.LockWaits, err = decodeList[engine.LockWait](waits); err != nil {
			return nil, fmt.Errorf("run store: %s: lock waits: %w", where, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("run store: %w", err)
	}
	return out, nil
}

// decodeMap reads a stored JSON object; numbers stay json.Number so sizes
// above 2^53 keep every digit. An empty object gives a nil map.
func decodeMap[V any](s string) (map[string]V, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]V
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// Manifest returns the manifest of a run: the artifact records of its
// successful attempts, in the order written.
func (s *Store) Manifest(ctx context.Context, id string) (*engine.Manifest, error) {
	run, atts, err := s.Run(ctx, id)
	if err != nil {
		return nil, err
	}
	m := &engine.Manifest{Format: engine.ManifestFormat, RunID: run.ID, Plan: run.Plan, PlanFile: run.PlanFile,
		PlanSHA256: run.PlanSHA256, Host: run.Host, Started: run.Started, Artifacts: []engine.ArtifactRecord{}}
	for _, a := range atts {
		if a.Status == engine.StatusSuccess {
			m.Artifacts = append(m.Artifacts, a.Records...)
		}
	}
	return m, nil
}

// LatestManifest returns the manifest of the plan's newest successful
// backup run on host (any host when host is "") that wrote artifacts.
func (s *Store) LatestManifest(ctx context.Context, host, plan string) (*engine.Manifest, error) {
	q := `SELECT ` + runColumns + ` FROM runs
		WHERE plan = ? AND kind = ? AND status = ? AND EXISTS (SELECT 1 FROM attempts a
			WHERE a.run_id = runs.id AND a.status = ? AND a.records_json <> '[]')`
	args := []any{plan, engine.KindApply, engine.StatusSuccess, engine.StatusSuccess}
	if host != "" {
		q += ` AND host = ?`
		args = append(args, host)
	}
	runs, err := s.queryRuns(ctx, q+` ORDER BY started DESC, id DESC LIMIT 1`, args...)
	if err != nil {
		return nil, err
	}
	if len(runs) == 0 {
		if host != "" {
			return nil, fmt.Errorf("plan %q on host %q: %w: no successful backup run with artifacts", plan, host, ErrNotFound)
		}
		return nil, fmt.Errorf("plan %q: %w: no successful backup run with artifacts", plan, ErrNotFound)
	}
	return s.Manifest(ctx, runs[0].ID)
}
