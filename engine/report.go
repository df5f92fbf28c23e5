package engine

import "time"

// RestoreReport is what a restore or drill run found: how long the
// restore took (RTO), how old the data it restored is (RPO), and, for a
// drill, what it compared with the backup's manifest.
type RestoreReport struct {
	SourceRun     string        `json:"source_run"`
	SourcePlan    string        `json:"source_plan"`
	BackupStarted time.Time     `json:"backup_started"`
	Scratch       bool          `json:"scratch"`
	RTO           time.Duration `json:"rto_ns"` // restore start → last restore step done
	RPO           time.Duration `json:"rpo_ns"` // restore start − backup start: the data's age
	RTOBudget     time.Duration `json:"rto_budget_ns,omitempty"`
	Checks        []Check       `json:"checks,omitempty"` // drill comparisons
	Passed        bool          `json:"passed"`
	Problems      []string      `json:"problems,omitempty"`
}

// Check is one comparison a drill made.
type Check struct {
	Step     string      `json:"step"`     // the restore step
	Artifact string      `json:"artifact"` // the artifact it restored
	What     string      `json:"what"`     // "sha256", "counts"
	Compared int         `json:"compared"` // how many values were compared
	Diffs    []CountDiff `json:"diffs,omitempty"`
	Error    string      `json:"error,omitempty"`
}
