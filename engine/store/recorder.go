package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
)

var _ engine.Recorder = (*Store)(nil)

// txRecorder records into one transaction.
type txRecorder struct{ c conn }

func (t txRecorder) StartRun(ctx context.Context, r engine.RunRecord) error {
	return startRun(ctx, t.c, r)
}

func (t txRecorder) RecordAttempt(ctx context.Context, a engine.AttemptRecord) error {
	return recordAttempt(ctx, t.c, a)
}

func (t txRecorder) FinishRun(ctx context.Context, r engine.RunRecord) error {
	return finishRun(ctx, t.c, r)
}

// Batch calls fn with a Recorder whose writes all commit together when fn
// returns nil (and none when it fails): imports and benchmarks record
// thousands of runs at the cost of one commit.
func (s *Store) Batch(ctx context.Context, fn func(engine.Recorder) error) error {
	return s.inTx(ctx, func(c conn) error { return fn(txRecorder{c}) })
}

// inTx runs fn in a transaction that commits when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(conn) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("run store: %w", err)
	}
	if err := fn(conn{tx, s.d}); err != nil {
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
	return startRun(ctx, s.conn(), r)
}

// RecordAttempt appends one step attempt to its run.
func (s *Store) RecordAttempt(ctx context.Context, a engine.AttemptRecord) error {
	return recordAttempt(ctx, s.conn(), a)
}

// FinishRun records how a run ended: finished, status, exit code, error,
// report, and the run's lock waits when r has any (the plan's resource
// locks are taken after StartRun).
func (s *Store) FinishRun(ctx context.Context, r engine.RunRecord) error {
	return finishRun(ctx, s.conn(), r)
}

// ImportRun writes a run and its attempts as given, replacing whatever
// the store holds under the run's id, in one transaction: syncing a run
// recorded elsewhere (a host's local store) any number of times leaves
// the same state.
func (s *Store) ImportRun(ctx context.Context, r engine.RunRecord, attempts []engine.AttemptRecord) error {
	if r.ID == "" {
		return fmt.Errorf("run store: import run: empty run id")
	}
	for i := range attempts {
		if attempts[i].RunID != r.ID {
			return fmt.Errorf("run store: import run %s: attempt %d (step %s) belongs to run %q",
				r.ID, i+1, attempts[i].StepID, attempts[i].RunID)
		}
	}
	return s.inTx(ctx, func(c conn) error {
		if err := writeRun(ctx, c, r, `ON CONFLICT (id) DO UPDATE SET
			plan = excluded.plan, plan_file = excluded.plan_file, plan_sha256 = excluded.plan_sha256,
			host = excluded.host, trigger = excluded.trigger, pid = excluded.pid, started = excluded.started,
			finished = excluded.finished, status = excluded.status, exit_code = excluded.exit_code,
			error = excluded.error, log_file = excluded.log_file, kind = excluded.kind,
			source_run = excluded.source_run, report_json = excluded.report_json,
			lock_waits_json = excluded.lock_waits_json`); err != nil {
			return fmt.Errorf("run store: import run %s: %w", r.ID, err)
		}
		if _, err := c.exec(ctx, `DELETE FROM attempts WHERE run_id = ?`, r.ID); err != nil {
			return fmt.Errorf("run store: import run %s: %w", r.ID, err)
		}
		for _, a := range attempts {
			if err := recordAttempt(ctx, c, a); err != nil {
				return err
			}
		}
		return nil
	})
}

func startRun(ctx context.Context, c conn, r engine.RunRecord) error {
	if r.ID == "" {
		return fmt.Errorf("run store: start run: empty run id")
	}
	if err := writeRun(ctx, c, r, ""); err != nil {
		return fmt.Errorf("run store: start run %s: %w", r.ID, err)
	}
	return nil
}

// writeRun inserts every column of r; onConflict says what a second
// write of the id does ("": fail).
func writeRun(ctx context.Context, c conn, r engine.RunRecord, onConflict string) error {
	report, err := encodeReport(r.Report)
	if err != nil {
		return err
	}
	waits, err := encodeList(r.LockWaits)
	if err != nil {
		return fmt.Errorf("lock waits: %w", err)
	}
	_, err = c.exec(ctx, `INSERT INTO runs
		(id, plan, plan_file, plan_sha256, host, trigger, pid, started, finished, status, exit_code, error, log_file,
		 kind, source_run, report_json, lock_waits_json)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) `+onConflict,
		r.ID, r.Plan, r.PlanFile, r.PlanSHA256, r.Host, r.Trigger, r.PID,
		fmtTime(r.Started), fmtTime(r.Finished), r.Status, r.ExitCode, r.Error, r.LogFile,
		kindOf(r), r.SourceRun, report, waits)
	return err
}

func recordAttempt(ctx context.Context, c conn, a engine.AttemptRecord) error {
	outputs, err := json.Marshal(nonNilMap(a.Outputs))
	if err != nil {
		return fmt.Errorf("run store: run %s step %s: outputs: %w", a.RunID, a.StepID, err)
	}
	artifacts, err := json.Marshal(nonNilMap(a.Artifacts))
	if err != nil {
		return fmt.Errorf("run store: run %s step %s: artifacts: %w", a.RunID, a.StepID, err)
	}
	records, err := encodeList(a.Records)
	if err != nil {
		return fmt.Errorf("run store: run %s step %s: records: %w", a.RunID, a.StepID, err)
	}
	waits, err := encodeList(a.LockWaits)
	if err != nil {
		return fmt.Errorf("run store: run %s step %s: lock waits: %w", a.RunID, a.StepID, err)
	}
	_, err = c.exec(ctx, `INSERT INTO attempts
		(run_id, step_id, step_type, attempt, status, started, finished, duration_ns, error, reason,
		 outputs_json, bytes_in, bytes_out, artifacts_json, records_json, lock_waits_json)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.RunID, a.StepID, a.StepType, a.Attempt, a.Status, fmtTime(a.Started), fmtTime(a.Finished),
		int64(a.Duration), a.Error, a.Reason, string(outputs), a.BytesIn, a.BytesOut, string(artifacts), records, waits)
	if err != nil {
		return fmt.Errorf("run store: run %s step %s attempt %d: %w", a.RunID, a.StepID, a.Attempt, err)
	}
	return nil
}

func finishRun(ctx context.Context, c conn, r engine.RunRecord) error {
	report, err := encodeReport(r.Report)
	if err != nil {
		return fmt.Errorf("run store: finish run %s: %w", r.ID, err)
	}
	// NULL keeps the lock waits StartRun wrote.
	var waits *string
	if r.LockWaits != nil {
		w, err := encodeList(r.LockWaits)
		if err != nil {
			return fmt.Errorf("run store: finish run %s: lock waits: %w", r.ID, err)
		}
		waits = &w
	}
	res, err := c.exec(ctx, `UPDATE runs SET finished = ?, status = ?, exit_code = ?, error = ?, report_json = ?,
		lock_waits_json = coalesce(?, lock_waits_json)
		WHERE id = ?`, fmtTime(r.Finished), r.Status, r.ExitCode, r.Error, report, waits, r.ID)
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

// encodeList stores a list as a JSON array, [] when empty.
func encodeList[T any](l []T) (string, error) {
	if len(l) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// decodeList reads what encodeList wrote; [] gives a nil list.
func decodeList[T any](s string) ([]T, error) {
	if s == "" || s == "[]" {
		return nil, nil
	}
	var l []T
	err := json.Unmarshal([]byte(s), &l)
	return l, err
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

// AbandonRuns marks the plan's runs on host still recorded as running as
// interrupted. The runner calls it once it holds the plan's lock: no run
// of the plan can be alive on host then, so those are runs whose process
// died.
func (s *Store) AbandonRuns(ctx context.Context, host, plan, kind string, now time.Time) (int, error) {
	// apply runs hold the plan's lock, restores and drills the plan's
	// restore lock: each kind is only closed by a run of its own kind.
	kinds := []any{engine.KindApply}
	if kind == engine.KindRestore || kind == engine.KindDrill {
		kinds = []any{engine.KindRestore, engine.KindDrill}
	}
	args := append([]any{fmtTime(now), engine.StatusInterrupted, engine.ExitFailed, host, plan, engine.StatusRunning}, kinds...)
	res, err := s.conn().exec(ctx, `UPDATE runs SET finished = ?, status = ?, exit_code = ?,
		error = 'planrun process died before the run finished (found at the next run)'
		WHERE host = ? AND plan = ? AND status = ? AND kind IN (?`+strings.Repeat(", ?", len(kinds)-1)+`)`, args...)
	if err != nil {
		return 0, fmt.Errorf("run store: abandon runs of %s: %w", plan, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
