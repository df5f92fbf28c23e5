package engine

import (
	"time"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"
)

// Plan is a loaded, validated plan (format version 1).
type Plan struct {
	File        string
	SHA256      string
	Version     int
	Name        string
	Description string
	EnvFiles    []string
	// EnvPrecedence says which wins when a name is both in the process
	// environment and an env file: "file" (default) or "process".
	EnvPrecedence string
	// Secrets names env variables whose values are secret beyond the
	// built-in name patterns.
	Secrets  []string
	Vars     []*Var
	Defaults StepDefaults
	// Preflight runs the preflight checks before the first step.
	Preflight bool
	// Timeout bounds the whole run (0: none).
	Timeout time.Duration
	// OnLock says what a run does when the plan's lock is held: OnLockSkip
	// (default), OnLockFail or OnLockWait (up to LockWait; 0: Timeout).
	OnLock   string
	LockWait time.Duration
	// Locks are the resource locks held for the whole run (locks:), taken
	// after the plan's own lock under Defaults.OnLock and LockWait.
	Locks []*LockName
	// Monitor steps are driven by the engine: start at the beginning,
	// success or fail at the end, fail also when the run dies early.
	Monitor []*Step
	Steps   []*Step
	// Restore says how planrun restore and drill restore this plan's
	// backups (nil: the inverses' defaults).
	Restore *RestoreSpec
	// Schedule is when planrun schedule install has the plan started (nil:
	// none declared).
	Schedule *Schedule

	exprs *exprCache // compiled expressions, shared by load and run
}

// Var is one entry of `vars:`, evaluated once per run, in order.
type Var struct {
	Name  string
	Value *yaml.Node
	Line  int
	Col   int
}

// StepDefaults apply to every step that does not set its own.
type StepDefaults struct {
	Timeout time.Duration
	Retry   Retry
	// Guard applies to the backup steps without a guard of their own (nil: none).
	Guard *Guard
	// OnLock and LockWait are the resource lock policy (defaults.on_lock,
	// defaults.lock_wait) of the plan's locks: and of steps without their own.
	OnLock   string
	LockWait time.Duration // 0: the plan's timeout, else until a signal
}

// LockName is one entry of a locks: list, a template over vars and env
// evaluated when the run (or step) takes the lock.
type LockName struct {
	Text      string
	Line, Col int
	tpl       *Template // nil: a literal name
}

// Retry is the retry policy of a step: exponential backoff with jitter.
type Retry struct {
	Attempts int           // total attempts, ≥ 1
	Delay    time.Duration // before the second attempt
	MaxDelay time.Duration // cap on the backoff
}

// Step is one step of a plan.
type Step struct {
	ID              string
	Type            *Type
	TypeName        string
	Name            string
	With            *yaml.Node
	When            string
	Timeout         time.Duration
	Retry           Retry
	ContinueOnError bool
	// AfterBackupFailure lets a destructive step run even though a backup
	// step of the same run failed (the safety interlock's override).
	AfterBackupFailure bool
	// Asserts are checked after the step succeeds; a false one fails it.
	Asserts []*Assertion
	// Guard compares the step's outputs with its recorded history (nil:
	// none of its own; a backup step then takes Plan.Defaults.Guard).
	Guard *Guard
	// Locks are the step's resource locks, taken before its first attempt
	// under OnLock and LockWait (set from the plan's defaults when the step
	// gives none).
	Locks     []*LockName
	OnLock    string
	LockWait  time.Duration
	Line, Col int

	ownGuard bool // guard: given on the step (an action: off one included)

	when        *vm.Program
	whenStatus  bool // `when` calls a status function itself
	whenDefault bool // no `when`: success()
}

// Assertion is one entry of a step's `assert:`.
type Assertion struct {
	Code      string
	Line, Col int
	prog      *vm.Program
}

// RestoreSpec is a plan's `restore:` section.
type RestoreSpec struct {
	IdentityFile   string
	PassphraseFile string
	// ScratchDir holds scratch file restores (default: the system temp dir).
	ScratchDir string
	// RTO is the budget a drill's measured RTO must stay within (0: none).
	RTO time.Duration
	// Steps are param overrides of the derived restore steps, by backup
	// step id.
	Steps map[string]*yaml.Node
}
