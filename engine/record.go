package engine

import (
	"context"
	"time"
)

// Run statuses as recorded.
const (
	StatusRunning     = "running"
	StatusSuccess     = "success"
	StatusFailed      = "failed"
	StatusInterrupted = "interrupted"
	StatusSkipped     = "skipped"
)

// RunRecord is one apply of a plan. Nothing in it is secret: the runner
// redacts every string before it reaches a Recorder.
type RunRecord struct {
	ID         string    `json:"id"`
	Plan       string    `json:"plan"`
	PlanFile   string    `json:"plan_file"`
	PlanSHA256 string    `json:"plan_sha256"`
	Host       string    `json:"host"`
	Trigger    string    `json:"trigger"` // e.g. "cli", "cron" (from PLANRUN_TRIGGER)
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished,omitzero"`
	Status     string    `json:"status"`
	ExitCode   int       `json:"exit_code"`
	Error      string    `json:"error,omitempty"`
	LogFile    string    `json:"log_file,omitempty"`
	// Kind is apply (a plan run), restore or drill.
	Kind string `json:"kind"`
	// SourceRun is the backup run a restore or drill read.
	SourceRun string `json:"source_run,omitempty"`
	// Report is a restore's or drill's outcome (RTO, RPO, comparisons).
	Report *RestoreReport `json:"report,omitempty"`
	// LockWaits are the plan-level resource locks (locks:) the run asked
	// for, with how long it waited for each.
	LockWaits []LockWait `json:"lock_waits,omitempty"`
}

// Run kinds.
const (
	KindApply   = "apply"
	KindRestore = "restore"
	KindDrill   = "drill"
)

// AttemptRecord is one attempt of one step (a skipped step has one record
// with status skipped and attempt 0).
type AttemptRecord struct {
	RunID    string         `json:"run_id"`
	StepID   string         `json:"step_id"`
	StepType string         `json:"step_type"`
	Attempt  int            `json:"attempt"`
	Status   string         `json:"status"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Duration time.Duration  `json:"duration_ns"`
	Error    string         `json:"error,omitempty"`
	Reason   string         `json:"reason,omitempty"` // why skipped, etc.
	Outputs  map[string]any `json:"outputs,omitempty"`
	BytesIn  int64          `json:"bytes_in"`
	BytesOut int64          `json:"bytes_out"`
	// Artifacts lists files the step wrote (path → sha256).
	Artifacts map[string]string `json:"artifacts,omitempty"`
	// Records describe them fully (the run's manifest entries).
	Records []ArtifactRecord `json:"records,omitempty"`
	// LockWaits are the step's own resource locks (locks:), on the record
	// of the attempt that asked for them (the first, or the skip record).
	LockWaits []LockWait `json:"lock_waits,omitempty"`
}

// Recorder stores runs and attempts. The SQLite implementation lives in
// engine/store; the runner only sees this interface.
type Recorder interface {
	StartRun(ctx context.Context, r RunRecord) error
	RecordAttempt(ctx context.Context, a AttemptRecord) error
	FinishRun(ctx context.Context, r RunRecord) error
}

// Abandoner is implemented by recorders that can close runs whose process
// died (still recorded as running while the plan's lock is free). Only
// runs of host are closed: a shared store holds other hosts' live runs.
type Abandoner interface {
	AbandonRuns(ctx context.Context, host, plan, kind string, now time.Time) (int, error)
}

// Warner is implemented by recorders with trouble of their own to report
// (a central store that stopped answering): the run hands them its log,
// so the warning lands in the run's log file and tail, not only on
// stderr.
type Warner interface {
	WarnTo(warn func(msg string))
}
