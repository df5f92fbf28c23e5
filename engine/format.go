package engine

import (
	"fmt"
	"reflect"
	"time"

	"gopkg.in/yaml.v3"
)

// The plan format (version 1), declared once like a step type's params:
// the loader's key checking, type checks and defaults, the JSON schema
// and the README's format table all derive from these structs and their
// tags. The loader then builds the runtime Plan, Step and RestoreSpec from
// what it decoded into them (load.go).

type planFile struct {
	Version       int           `yaml:"version" required:"true" enum:"1" doc:"plan format version: always 1"`
	Name          string        `yaml:"name" required:"true" pattern:"^[A-Za-z0-9][A-Za-z0-9_.-]*$" doc:"names the lock (one run of a plan at a time) and the run history"`
	Description   string        `yaml:"description" doc:"free text"`
	EnvFiles      []string      `yaml:"env_files" doc:"dotenv files read at apply time (comments, export, quotes, ${VAR}); a file readable by group or others is refused (--allow-loose-env-perms downgrades to a warning); --env-file F (repeatable) reads F instead"`
	EnvPrecedence string        `yaml:"env_precedence" enum:"file|process" default:"file" doc:"which wins when a name is both in the process environment and an env file"`
	Secrets       []string      `yaml:"secrets" doc:"extra env names whose values are masked as ***; names containing PASS, SECRET, TOKEN, KEY or CREDENTIAL (not *_FILE) and every password inside a URI are masked anyway"`
	Vars          *yaml.Node    `yaml:"vars" pattern:"^[A-Za-z_][A-Za-z0-9_]*$" doc:"values evaluated once per run, in order, read as vars.<name>; may use env and earlier vars; --var name=value overrides"`
	Defaults      defaultsFile  `yaml:"defaults" doc:"settings of every step that does not set its own"`
	Preflight     bool          `yaml:"preflight" doc:"before the first step, run the checks of planrun validate --online (tools and their versions, services and credentials, secret files, disk room predicted from earlier runs); a failed check fails the run before anything is written (only failure()/always() steps run)"`
	Timeout       Duration      `yaml:"timeout" doc:"bound on the whole run; when it expires the running step is cancelled and failure()/always() steps still run"`
	Monitor       []monitorFile `yaml:"monitor" doc:"steps the engine drives itself (healthcheck-ping, webhook): start when the run begins, success or fail (with the exit code and the log tail) when it ends; fail also when the run cannot start (invalid plan, unusable env file, run store unavailable), the plan times out, a signal stops it, or an earlier run's process died; log when on_lock: skip skips the run; each call has a 30s timeout and one attempt (the type retries itself)"`
	Locks         []string      `yaml:"locks" doc:"resource locks held for the whole run, e.g. [\"restic:${{ vars.restic_repo }}\", \"rclone:r2:bucket/path\", \"postgres:chitlaq\"]: runs of any plan that name the same resource run one at a time (after the plan's own lock; on this host with the file locker, fleet-wide with a PostgreSQL one); names may use ${{ }} over vars and env; defaults.on_lock and defaults.lock_wait say what a busy resource does; restores and drills of the plan take them too"`
	OnLock        string        `yaml:"on_lock" enum:"skip|fail|wait" default:"skip" doc:"the plan's OWN lock (one run of this plan at a time; not the resource locks of locks:, see defaults.on_lock): when another run of the plan holds it: skip (log, exit 3, a log signal to the monitors, never fail), fail (exit 3 and a fail signal) or wait for it (up to lock_wait); apply --wait means wait"`
	LockWait      Duration      `yaml:"lock_wait" doc:"the plan's OWN lock: with on_lock: wait (or --wait), how long to wait for it before failing with exit 3 and a fail signal (default: the plan's timeout, else until a signal)"`
	Steps         []stepFile    `yaml:"steps" required:"true" min:"1" doc:"the steps, run in order"`
	Restore       *restoreFile  `yaml:"restore" doc:"how planrun restore and planrun drill restore this plan's backups"`
	Schedule      *scheduleFile `yaml:"schedule" doc:"when planrun schedule install has systemd (a timer) or cron start the plan"`
	node          `yaml:"-"`
}

type defaultsFile struct {
	Timeout  Duration   `yaml:"timeout" default:"2h" doc:"per-attempt timeout of a step"`
	Retry    *retryFile `yaml:"retry" doc:"retry policy of a step"`
	Guard    *guardFile `yaml:"guard" doc:"guard of every backup step (kind backup) that does not set its own; a step's guard keys replace these, action: off turns it off"`
	OnLock   string     `yaml:"on_lock" enum:"wait|skip|fail" default:"wait" doc:"what a busy resource of locks: does (the plan's, and each step's without its own on_lock): wait for it (up to lock_wait), skip (a step is recorded skipped naming the holder; the plan's: the run is recorded skipped, exit 3, a log signal, not a failure) or fail (naming the holder, not retried; the plan's: exit 3)"`
	LockWait Duration   `yaml:"lock_wait" doc:"with on_lock: wait, how long to wait for a resource lock (default: the plan's timeout, else until a signal); then a step fails, and a run waiting for the plan's locks: fails with exit 3; it also ends waits between runs that take the same resources in different orders"`
}

// guardFile compares a step's outputs with the recorded history of the
// same step (guard.go): a backup that silently shrank fails or warns, and
// holds back the destructive steps after it.
type guardFile struct {
	Size     *limitFile `yaml:"size" doc:"total size of the artifacts the step recorded (bytes written when it records none)"`
	Counts   *limitFile `yaml:"counts" doc:"each count of the step's artifact records (rows:public.users, documents:kaleem.users, files, ...); a count the history has and this run lacks is 0"`
	Duration *limitFile `yaml:"duration" doc:"how long the successful attempt took"`
	Action   string     `yaml:"action" enum:"fail|warn|off" default:"fail" doc:"fail: the step fails; warn: a warning and the run goes on; either way the safety interlock holds back later destructive steps (after_backup_failure overrides); off: no guard"`
	node     `yaml:"-"`
}

// limitFile bounds one measurement by ratios to its median over the last
// window successful runs of the plan that ran the step successfully.
type limitFile struct {
	MinRatio   float64 `yaml:"min_ratio" min:"0" doc:"trips when this run's value is below min_ratio × the median"`
	MaxRatio   float64 `yaml:"max_ratio" min:"0" doc:"trips when this run's value is above max_ratio × the median"`
	Window     int     `yaml:"window" min:"1" max:"1000" default:"14" doc:"how many of the newest successful runs the median is taken over"`
	MinHistory int     `yaml:"min_history" min:"1" max:"1000" default:"3" doc:"with fewer recorded runs than this the check passes and says so (the first runs)"`
	node       `yaml:"-"`
}

// retryFile is a retry policy: exponential backoff with jitter.
type retryFile struct {
	Attempts int      `yaml:"attempts" min:"1" max:"100" default:"1" doc:"total attempts (1: no retry)"`
	Delay    Duration `yaml:"delay" default:"5s" doc:"wait before the second attempt (at most max_delay); doubles each time, with jitter"`
	MaxDelay Duration `yaml:"max_delay" doc:"cap on the wait between attempts"`
	node     `yaml:"-"`
}

type stepFile struct {
	ID                 string     `yaml:"id" required:"true" pattern:"^[A-Za-z][A-Za-z0-9_-]*$" doc:"unique step id (a letter, then letters, digits, _ and -); later steps read steps.<id>.outputs"`
	Type               string     `yaml:"type" required:"true" doc:"step type (see planrun steps)"`
	Name               string     `yaml:"name" doc:"human-readable name"`
	With               *yaml.Node `yaml:"with" doc:"the step type's params"`
	When               exprText   `yaml:"when" doc:"condition; success() is implied unless it calls success(), failure(), always() or cancelled()"`
	Assert             []exprText `yaml:"assert" doc:"checked after the step succeeds, over its own outputs and earlier steps'; a false one fails the step (not retried)"`
	Timeout            Duration   `yaml:"timeout" doc:"per-attempt timeout (default: defaults.timeout)"`
	Retry              *retryFile `yaml:"retry" doc:"retry policy; keys not given come from defaults.retry"`
	Guard              *guardFile `yaml:"guard" doc:"checks the step's size, counts and duration against the medians of its recorded successful runs; keys not given come from defaults.guard"`
	ContinueOnError    bool       `yaml:"continue_on_error" doc:"a failure of this step is recorded but does not fail the run"`
	AfterBackupFailure bool       `yaml:"after_backup_failure" doc:"let a destructive step run even after a backup step of the run failed (not after a lost resource lock)"`
	Locks              []string   `yaml:"locks" doc:"resource locks taken (in sorted order) before the first attempt and released after the last; one the plan's locks: hold is not taken again; names may use ${{ }} over vars and env, not step outputs; derived restore and drill steps inherit them; a lock lost during the run (a fleet lock's connection dropped) cancels the step, fails the run and keeps its destructive steps from starting, and it is never re-taken"`
	OnLock             string     `yaml:"on_lock" enum:"wait|skip|fail" doc:"when a resource of the step's locks: is held by another run: wait, skip or fail (default: defaults.on_lock)"`
	LockWait           Duration   `yaml:"lock_wait" doc:"with on_lock: wait, how long the step waits for its resource locks before it fails (default: defaults.lock_wait)"`
	node               `yaml:"-"`
}

type monitorFile struct {
	Type string     `yaml:"type" required:"true" doc:"a step type that can be a monitor (planrun steps marks them)"`
	With *yaml.Node `yaml:"with" doc:"the type's params, except those the engine sets"`
	node `yaml:"-"`
}

type restoreFile struct {
	IdentityFile   string                `yaml:"identity_file" doc:"age identity that decrypts the artifacts"`
	PassphraseFile string                `yaml:"passphrase_file" doc:"passphrase file of passphrase-encrypted artifacts"`
	ScratchDir     string                `yaml:"scratch_dir" doc:"where scratch file restores go (default: the system temp dir)"`
	RTO            Duration              `yaml:"rto" doc:"RTO budget: a drill whose measured RTO exceeds it fails"`
	Steps          map[string]*yaml.Node `yaml:"steps" doc:"per backup step id, params of its derived restore step that override the defaults, e.g. {db-full: {host: 10.0.0.5, jobs: 4}}; checked against the restore step type"`
}

// scheduleFile is a plan's `schedule:`. Being optional (a pointer), it
// gets no applied defaults: the loader reads persistent's absence itself.
type scheduleFile struct {
	OnCalendar      string   `yaml:"on_calendar" doc:"when, in systemd calendar syntax (systemd.time(7)), e.g. \"*-*-* 03:00:00\", \"*-*-01 03:20:00\", \"Mon..Fri 02:30\", \"*-*-* 00/6:00:00\"; no ~ or time zone (the host's local time); give this or cron"`
	Cron            string   `yaml:"cron" doc:"when, as a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\", or @daily etc.; give this or on_calendar"`
	RandomizedDelay Duration `yaml:"randomized_delay" doc:"start up to this much later, at random (systemd's RandomizedDelaySec=; with cron a sleep before the run)"`
	Persistent      bool     `yaml:"persistent" default:"true" doc:"catch up after downtime: a start missed while the machine was off happens at boot (systemd's Persistent=; cron cannot)"`
	node            `yaml:"-"`
}

// monitorTimeout bounds each call of a monitor (documented on planFile.Monitor).
const monitorTimeout = 30 * time.Second

// exprText is an expr-lang expression written without ${{ }} (when, assert).
type exprText string

// node is where a decoded format object sits in the file, and the value
// node of each key given; the loader fills it for later messages.
type node struct {
	n    *yaml.Node
	vals map[string]*yaml.Node
}

func (x *node) setNode(n *yaml.Node, vals map[string]*yaml.Node) { x.n, x.vals = n, vals }

// A list element names itself in messages (step "dump"), not by index.
type labeler interface{ label(n *yaml.Node) string }

func (*stepFile) label(n *yaml.Node) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "id" && n.Content[i+1].Kind == yaml.ScalarNode {
			return fmt.Sprintf("step %q", n.Content[i+1].Value)
		}
	}
	return "step"
}

func (*monitorFile) label(*yaml.Node) string { return "monitor" }

var (
	exprType = reflect.TypeOf(exprText(""))
	nodeType = reflect.TypeOf((*yaml.Node)(nil))

	formatSpecs = map[reflect.Type]*Spec{}
	planSpec    = mustFormatSpec(planFile{})
	retrySpec   = mustFormatSpec(retryFile{})
	limitSpec   = mustFormatSpec(limitFile{})
)

func mustFormatSpec(v any) *Spec {
	s, err := specOf(reflect.TypeOf(v), formatSpecs)
	if err != nil {
		panic("plan format: " + err.Error())
	}
	return s
}

// PlanFormat is the declaration of the plan format (version 1): its
// top-level keys, each with its doc, kind, default and bounds; object
// keys have their own Fields.
func PlanFormat() *Spec { return planSpec }

// formatDefName names the $defs entry of a format struct used in several
// places (or recursively), or "" to inline it.
func formatDefName(s *Spec) string {
	switch s.goType {
	case reflect.TypeOf(retryFile{}):
		return "retry"
	case reflect.TypeOf(stepFile{}):
		return "step"
	case reflect.TypeOf(monitorFile{}):
		return "monitor"
	case reflect.TypeOf(guardFile{}):
		return "guard"
	case reflect.TypeOf(limitFile{}):
		return "guard_limit"
	}
	return ""
}
