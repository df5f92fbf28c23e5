package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
)

var _ engine.Recorder = (*Store)(nil)

// execer is the database or a transaction: the recorder's writes run on
// either (Batch).
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// txRecorder records into one transaction.
type txRecorder struct{ ex execer }

func (t txRecorder) StartRun(ctx context.Context, r engine.RunRecord) error {
	return startRun(ctx, t.ex, r)
}

func (t txRecorder) RecordAttempt(ctx context.Context, a engine.AttemptRecord) error {
	return recordAttempt(ctx, t.ex, a)
}

func (t txRecorder) FinishRun(ctx context.Context, r engine.RunRecord) error {
	return finishRun(ctx, t.ex, r)
}

// Batch calls fn with a Recorder whose writes all commit together when fn
// returns nil (and none when it fails): imports and benchmarks record
// thousands of runs at the cost of one commit.
func (s *Store) Batch(ctx context.Context, fn func(engine.Recorder) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("run store: %w", err)
	}
	if err := fn(txRecorder{tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("run store: %w", err)
	}
	return nil
}

// StartRun inserts a new run (normally with status running).
func (s *Store) StartRun(ctx context.Context, r engine.RunRecord) error {
	return startRun(ctx, s.db, r)
}

// RecordAttempt appends one step attempt to its run.
func (s *Store) RecordAttempt(ctx context.Context, a engine.AttemptRecord) error {
	return recordAttempt(ctx, s.db, a)
}

// FinishRun records how a run ended: finished, status, exit code, error.
func (s *Store) FinishRun(ctx context.Context, r engine.RunRecord) error {
	return finishRun(ctx, s.db, r)
}

func startRun(ctx context.Context, db execer, r engine.RunRecord) error {
	if r.ID == "" {
		return fmt.Errorf("run store: start run: empty run id")
	}
	report, err := encodeReport(r.Report)
	if err != nil {
		return fmt.Errorf("run store: start run %s: %w", r.ID, err)
	}
	_, err = db.ExecContext(ctx, `INSERT INTO runs
		(id, plan, plan_file, plan_sha256, host, trigger, pid, started, finished, status, exit_code, error, log_file,
		 kind, source_run, report_json)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Plan, r.PlanFile, r.PlanSHA256, r.Host, r.Trigger, r.PID,
		fmtTime(r.Started), fmtTime(r.Finished), r.Status, r.ExitCode, r.Error, r.LogFile,
		kindOf(r), r.SourceRun, report)
	if err != nil {
		return fmt.Errorf("run store: start run %s: %w", r.ID, err)
	}
	return nil
}

func recordAttempt(ctx context.Context, db execer, a engine.AttemptRecord) error {
	outputs, err := json.Marshal(nonNilMap(a.Outputs))
	if err != nil {
		return fmt.Errorf("run store: run %s step %s: outputs: %w", a.RunID, a.StepID, err)
	}
	artifacts, err := json.Marshal(nonNilMap(a.Artifacts))
	if err != nil {
		return fmt.Errorf("run store: run %s step %s: artifacts: %w", a.RunID, a.StepID, err)
	}
	records := []byte("[]")
	if len(a.Records) > 0 {
		if records, err = json.Marshal(a.Records); err != nil {
			return fmt.Errorf("run store: run %s step %s: records: %w", a.RunID, a.StepID, err)
		}
	}
	_, err = db.ExecContext(ctx, `INSERT INTO attempts
		(run_id, step_id, step_type, attempt, status, started, finished, duration_ns, error, reason,
		 outputs_json, bytes_in, bytes_out, artifacts_json, records_json)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.RunID, a.StepID, a.StepType, a.Attempt, a.Status, fmtTime(a.Started), fmtTime(a.Finished),
		int64(a.Duration), a.Error, a.Reason, string(outputs), a.BytesIn, a.BytesOut, string(artifacts), string(records))
	if err != nil {
		return fmt.Errorf("run store: run %s step %s attempt %d: %w", a.RunID, a.StepID, a.Attempt, err)
	}
	return nil
}

func finishRun(ctx context.Context, db execer, r engine.RunRecord) error {
	report, err := encodeReport(r.Report)
	if err != nil {
		return fmt.Errorf("run store: finish run %s: %w", r.ID, err)
	}
	res, err := db.ExecContext(ctx, `UPDATE runs SET finished = ?, status = ?, exit_code = ?, error = ?, report_json = ?
		WHERE id = ?`, fmtTime(r.Finished), r.Status, r.ExitCode, r.Error, report, r.ID)
	if err != nil {
		return fmt.Errorf("run store: finish run %s: %w", r.ID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("run store: finish run %s: %w", r.ID, ErrNotFound)
	}
	return nil
}

func encodeReport(r *engine.RestoreReport) (string, error) {
	if r == nil {
		return "", nil
	}
	b, err := json.Marshal(r)
	return string(b), err
}

func kindOf(r engine.RunRecord) string {
	if r.Kind == "" {
		return engine.KindApply
	}
	return r.Kind
}

// nonNilMap makes a nil map encode as {} rather than null.
func nonNilMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

// AbandonRuns marks the plan's runs still recorded as running as
// interrupted. The runner calls it once it holds the plan's lock: no run
// of the plan can be alive then, so those are runs whose process died.
func (s *Store) AbandonRuns(ctx context.Context, host, plan, kind string, now time.Time) (int, error) {
	// apply runs hold the plan's lock, restores and drills the plan's
	// restore lock: each kind is only closed by a run of its own kind.
	kinds := []any{engine.KindApply}
	if kind == engine.KindRestore || kind == engine.KindDrill {
		kinds = []any{engine.KindRestore, engine.KindDrill}
	}
	args := append([]any{fmtTime(now), engine.StatusInterrupted, engine.ExitFailed, host, plan, engine.StatusRunning}, kinds...)
	res, err := s.db.ExecContext(ctx, `UPDATE runs SET finished = ?, status = ?, exit_code = ?,
		error = 'planrun process died before the run finished (found at the next run)'
		WHERE host = ? AND plan = ? AND status = ? AND kind IN (?`+strings.Repeat(", ?", len(kinds)-1)+`)`, args...)
	if err != nil {
		return 0, fmt.Errorf("run store: abandon runs of %s: %w", plan, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
