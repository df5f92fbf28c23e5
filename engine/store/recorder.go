package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/planrun/planrun/engine"
)

var _ engine.Recorder = (*Store)(nil)

// StartRun inserts a new run (normally with status running).
func (s *Store) StartRun(ctx context.Context, r engine.RunRecord) error {
	if r.ID == "" {
		return fmt.Errorf("run store: start run: empty run id")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO runs
		(id, plan, plan_file, plan_sha256, host, trigger, pid, started, finished, status, exit_code, error, log_file)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Plan, r.PlanFile, r.PlanSHA256, r.Host, r.Trigger, r.PID,
		fmtTime(r.Started), fmtTime(r.Finished), r.Status, r.ExitCode, r.Error, r.LogFile)
	if err != nil {
		return fmt.Errorf("run store: start run %s: %w", r.ID, err)
	}
	return nil
}

// RecordAttempt appends one step attempt to its run.
func (s *Store) RecordAttempt(ctx context.Context, a engine.AttemptRecord) error {
	outputs, err := json.Marshal(nonNilMap(a.Outputs))
	if err != nil {
		return fmt.Errorf("run store: run %s step %s: outputs: %w", a.RunID, a.StepID, err)
	}
	artifacts, err := json.Marshal(nonNilMap(a.Artifacts))
	if err != nil {
		return fmt.Errorf("run store: run %s step %s: artifacts: %w", a.RunID, a.StepID, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO attempts
		(run_id, step_id, step_type, attempt, status, started, finished, duration_ns, error, reason,
		 outputs_json, bytes_in, bytes_out, artifacts_json)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.RunID, a.StepID, a.StepType, a.Attempt, a.Status, fmtTime(a.Started), fmtTime(a.Finished),
		int64(a.Duration), a.Error, a.Reason, string(outputs), a.BytesIn, a.BytesOut, string(artifacts))
	if err != nil {
		return fmt.Errorf("run store: run %s step %s attempt %d: %w", a.RunID, a.StepID, a.Attempt, err)
	}
	return nil
}

// FinishRun records how a run ended: finished, status, exit code, error.
func (s *Store) FinishRun(ctx context.Context, r engine.RunRecord) error {
	res, err := s.db.ExecContext(ctx, `UPDATE runs SET finished = ?, status = ?, exit_code = ?, error = ?
		WHERE id = ?`, fmtTime(r.Finished), r.Status, r.ExitCode, r.Error, r.ID)
	if err != nil {
		return fmt.Errorf("run store: finish run %s: %w", r.ID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("run store: finish run %s: %w", r.ID, ErrNotFound)
	}
	return nil
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
func (s *Store) AbandonRuns(ctx context.Context, plan string, now time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE runs SET finished = ?, status = ?, exit_code = ?,
		error = 'planrun process died before the run finished (found at the next run)'
		WHERE plan = ? AND status = ?`, fmtTime(now), engine.StatusInterrupted, engine.ExitFailed, plan, engine.StatusRunning)
	if err != nil {
		return 0, fmt.Errorf("run store: abandon runs of %s: %w", plan, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
