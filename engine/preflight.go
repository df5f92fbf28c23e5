package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// Preflight check statuses.
const (
	CheckOK   = "ok"
	CheckWarn = "warn"
	CheckFail = "fail"
)

// PreflightCheck is one preflight check: what was checked and what was found.
type PreflightCheck struct {
	Status string `json:"status"`         // ok, warn or fail
	Check  string `json:"check"`          // what kind: tool, postgres, restic, secret-file, disk, plan-file, ...
	Step   string `json:"step,omitempty"` // the step it is about ("" for the plan)
	Target string `json:"target,omitempty"`
	Reason string `json:"reason"`
}

func (c PreflightCheck) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-4s  %s", c.Status, c.Check)
	if c.Step != "" {
		fmt.Fprintf(&b, " (step %s)", c.Step)
	}
	if c.Target != "" {
		b.WriteString(" " + c.Target)
	}
	b.WriteString(": " + c.Reason)
	return b.String()
}

// PreflightFailed reports whether any check failed.
func PreflightFailed(checks []PreflightCheck) bool {
	for _, c := range checks {
		if c.Status == CheckFail {
			return true
		}
	}
	return false
}

// PreflightEnv is what a Preflighter sees: the step's Env (its child
// environment, the redactor, a private temp dir removed after the check)
// and what the step will run.
type PreflightEnv struct {
	*Env
	// Tools maps the programs the step runs, as its params name them, to
	// where apply will find them ("" when not found: reported already).
	Tools map[string]string
	// Params are the step's string params by key, interpolated (a value
	// only the run can know is left as written, with its ${{ }}).
	Params map[string]string
}

// Tool returns the resolved path of the step's program whose base name is
// name ("" when the step runs none).
func (e *PreflightEnv) Tool(name string) string {
	for t, path := range e.Tools {
		if filepath.Base(t) == name && path != "" {
			return path
		}
	}
	return ""
}

// Preflighter is implemented by params, or the connection structs they
// embed (inline), that can check without writing anything that what they
// reach is there and the credentials work. Preflight finds every one in a
// step's params, so each step type embedding such a struct gets it.
type Preflighter interface {
	Preflight(ctx context.Context, env *PreflightEnv) []PreflightCheck
}

// PreflightOptions configure Preflight.
type PreflightOptions struct {
	// History, when set, predicts the space the plan's artifacts need
	// from the sizes recorded in earlier runs.
	History HistoryReader
	// Euid is the user apply runs as (os.Geteuid()).
	Euid int
	// CheckTimeout bounds each step's service checks (default 30s).
	CheckTimeout time.Duration
	// Log receives what the checks log (nil: discarded).
	Log *slog.Logger
}

// predictWindow is how many recorded runs the disk prediction looks at:
// the largest of them is the prediction.
const predictWindow = 14

// Preflight checks, without writing anything, what a run of p needs: the
// plan file is safe to run as root, every tool is on the PATH and the
// services the steps reach answer with working credentials (each
// Preflighter in the steps' params), secret files are private, and the
// filesystems the artifacts go to have room for them as earlier runs
// measured them. One Check per thing checked, in plan order.
func Preflight(ctx context.Context, p *Plan, scope *Scope, o PreflightOptions) []PreflightCheck {
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var checks []PreflightCheck
	checks = append(checks, planFileCheck(p.File, o.Euid))

	secretFiles := map[string]bool{}
	secretFile := func(step, path string) {
		if path == "" || strings.Contains(path, "${{") || secretFiles[path] {
			return
		}
		secretFiles[path] = true
		c := SecretFileCheck(path, o.Euid)
		c.Step = step
		checks = append(checks, c)
	}
	for _, f := range scope.EnvFiles {
		secretFile("", f)
	}
	if rs := p.Restore; rs != nil {
		secretFile("", rs.IdentityFile)
		secretFile("", rs.PassphraseFile)
	}

	tools := map[*Step]map[string]string{}
	for _, u := range planTools(p, scope.Env) {
		if tools[u.step] == nil {
			tools[u.step] = map[string]string{}
		}
		tools[u.step][u.tool] = u.path
		c := PreflightCheck{Check: "tool", Step: u.step.ID, Target: u.tool, Status: CheckOK, Reason: u.path}
		if u.err != nil {
			c.Status, c.Reason = CheckFail, u.err.Error()
		}
		checks = append(checks, c)
	}

	r := &run{plan: p, scope: scope, id: scope.RunID, host: scope.Host, steps: map[string]*stepState{}, dry: true}
	for _, s := range append(append([]*Step(nil), p.Steps...), p.Monitor...) {
		if s.Type == nil {
			continue
		}
		sc := r.exprScope()
		// As in a dry run, every earlier step is taken to succeed.
		r.steps[s.ID] = &stepState{status: StatusSuccess, outcome: StatusSuccess, outputs: Outputs{}}
		if run, reason, err := r.decide(s, sc); err == nil && !run && !s.whenStatus {
			checks = append(checks, PreflightCheck{Check: "step", Step: s.ID, Status: CheckOK, Reason: "not checked: it would be skipped (" + reason + ")"})
			continue
		}
		params, with, err := r.params(s, sc)
		if err != nil {
			checks = append(checks, PreflightCheck{Check: "params", Step: s.ID, Status: CheckFail, Reason: scope.Secrets.Redact(err.Error())})
			continue
		}
		for _, f := range s.Type.Params.SecretFileValues(reflect.ValueOf(params)) {
			secretFile(s.ID, f)
		}
		env := &Env{RunID: scope.RunID, PlanName: p.Name, StepID: s.ID, Environ: scope.Environ,
			Log: o.Log.With("step", s.ID), Secrets: scope.Secrets, Stats: &Stats{}}
		pe := &PreflightEnv{Env: env, Tools: tools[s], Params: stringParams(with)}
		for _, pf := range preflighters(reflect.ValueOf(params)) {
			cctx, cancel := context.WithTimeout(ctx, o.CheckTimeout)
			for _, c := range pf.Preflight(cctx, pe) {
				c.Step = s.ID
				c.Reason = oneLine(scope.Secrets.Redact(c.Reason))
				c.Target = scope.Secrets.Redact(c.Target)
				checks = append(checks, c)
			}
			cancel()
		}
		env.Cleanup()
	}
	checks = append(checks, diskChecks(p, scope.Host, o.History)...)
	return checks
}

// oneLine joins a multi-line reason (a tool's stderr tail): one line per check.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " | ")
}

// preflighters finds the Preflighters in a params value: the value
// itself, else its inline (embedded) structs, so that two embedded
// connection structs both count (Go would promote neither method).
func preflighters(v reflect.Value) []Preflighter {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		if pf, ok := v.Interface().(Preflighter); ok {
			return []Preflighter{pf}
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	if v.CanAddr() {
		if pf, ok := v.Addr().Interface().(Preflighter); ok {
			return []Preflighter{pf}
		}
	}
	var out []Preflighter
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		_, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || !(f.Anonymous || opts == "inline") {
			continue
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			out = append(out, preflighters(fv)...)
		}
	}
	return out
}

// stringParams are the scalar values of an interpolated `with:` by key.
func stringParams(with *yaml.Node) map[string]string {
	out := map[string]string{}
	if with == nil || with.Kind != yaml.MappingNode {
		return out
	}
	for i := 0; i+1 < len(with.Content); i += 2 {
		if v := resolve(with.Content[i+1]); v.Kind == yaml.ScalarNode {
			out[with.Content[i].Value] = v.Value
		}
	}
	return out
}

// planFileCheck: a plan run as root must be writable by root only — a
// plan is commands, so whoever can change it runs them as root. Apply
// refuses such a plan (PlanFileSafe); preflight says so too.
func planFileCheck(path string, euid int) PreflightCheck {
	c := PreflightCheck{Check: "plan-file", Target: path, Status: CheckOK}
	if err := PlanFileSafe(path, euid); err != nil {
		c.Status, c.Reason = CheckFail, err.Error()
		return c
	}
	c.Reason = "not writable by others"
	if euid != 0 {
		c.Reason = "runs as uid " + fmt.Sprint(euid) + ", not root"
	}
	return c
}

// PlanFileSafe refuses a plan file that root would run although someone
// else can change it: writable by group or others, owned by another user,
// or in a directory others can write (they could replace it). Not as
// root, or for a plan that is no file (tests), there is nothing to refuse.
func PlanFileSafe(path string, euid int) error {
	if euid != 0 || path == "" {
		return nil
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("plan file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("plan file %s has mode %04o and planrun runs as root: group or others can write it, and a plan is commands root would run; run: chmod go-w %s", path, perm, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		return fmt.Errorf("plan file %s is owned by uid %d and planrun runs as root: that user can make root run anything; run: chown root %s", path, st.Uid, path)
	}
	dir := filepath.Dir(path)
	if di, err := os.Stat(dir); err == nil && di.Mode().Perm()&0o022 != 0 && di.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("plan file %s is in %s (mode %04o), which group or others can write: they can replace the plan root runs", path, dir, di.Mode().Perm())
	}
	return nil
}

// SecretFileCheck checks that a file holding a secret is private: no
// access for group or others, owned by the running user or root.
func SecretFileCheck(path string, euid int) PreflightCheck {
	c := PreflightCheck{Check: "secret-file", Target: path, Status: CheckOK}
	fi, err := os.Stat(path)
	if err != nil {
		c.Status, c.Reason = CheckFail, strings.TrimPrefix(err.Error(), "stat "+path+": ")
		return c
	}
	perm := fi.Mode().Perm()
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		c.Status, c.Reason = CheckFail, "not a regular file"
	case perm&0o077 != 0:
		c.Status, c.Reason = CheckFail, fmt.Sprintf("mode %04o: group or others can access it, and it holds a secret; run: chmod 600 %s", perm, path)
	case st != nil && int(st.Uid) != euid && st.Uid != 0:
		c.Status, c.Reason = CheckFail, fmt.Sprintf("owned by uid %d, neither the user planrun runs as (uid %d) nor root: that user can read or replace it", st.Uid, euid)
	default:
		c.Reason = fmt.Sprintf("mode %04o", perm)
	}
	return c
}

// diskChecks predicts the space the plan's artifacts need on each
// filesystem from the largest of the recent recorded runs of each step
// (an artifact is written beside its final name, then renamed: it needs
// its full size free), and compares it with the space available there.
func diskChecks(p *Plan, host string, h HistoryReader) []PreflightCheck {
	if h == nil {
		return []PreflightCheck{{Check: "disk", Status: CheckOK, Reason: "not predicted: no run store"}}
	}
	type fsNeed struct {
		dir   string // where it was measured
		need  int64
		avail int64
		steps []string
	}
	byDev := map[uint64]*fsNeed{}
	var devs []uint64
	var checks []PreflightCheck
	for _, s := range p.Steps {
		hist, err := storeWrite(func(c context.Context) ([]AttemptRecord, error) {
			return h.StepHistory(c, host, p.Name, s.ID, predictWindow)
		})
		if err != nil {
			checks = append(checks, PreflightCheck{Check: "disk", Step: s.ID, Status: CheckWarn, Reason: "run history: " + err.Error()})
			continue
		}
		// The largest recent size per directory (a step may write to two).
		largest := map[string]int64{}
		for _, a := range hist {
			per := map[string]int64{}
			for _, rec := range a.Records {
				// A relative path was written relative to the working
				// directory, as the coming run's will be.
				if path, err := filepath.Abs(rec.Path); err == nil {
					per[filepath.Dir(path)] += rec.Size
				}
			}
			for d, n := range per {
				largest[d] = max(largest[d], n)
			}
		}
		for dir, n := range largest {
			at := existingAncestor(dir)
			var st syscall.Statfs_t
			var fi syscall.Stat_t
			if err := syscall.Statfs(at, &st); err != nil || syscall.Stat(at, &fi) != nil {
				checks = append(checks, PreflightCheck{Check: "disk", Step: s.ID, Target: dir, Status: CheckWarn, Reason: fmt.Sprintf("cannot measure %s", at)})
				continue
			}
			dev := uint64(fi.Dev)
			f := byDev[dev]
			if f == nil {
				f = &fsNeed{dir: at, avail: int64(st.Bavail) * int64(st.Bsize)}
				byDev[dev] = f
				devs = append(devs, dev)
			}
			f.need += n
			f.steps = append(f.steps, s.ID)
		}
	}
	sort.Slice(devs, func(i, j int) bool { return byDev[devs[i]].dir < byDev[devs[j]].dir })
	for _, d := range devs {
		f := byDev[d]
		c := PreflightCheck{Check: "disk", Target: f.dir, Status: CheckOK}
		what := fmt.Sprintf("the artifacts of %s need about %s (the largest of their last %d runs), %s available",
			strings.Join(f.steps, ", "), humanBytes(float64(f.need)), predictWindow, humanBytes(float64(f.avail)))
		switch {
		case f.need > f.avail:
			c.Status, c.Reason = CheckFail, "too little room: "+what
		case float64(f.need) > 0.9*float64(f.avail):
			c.Status, c.Reason = CheckWarn, "less than 10% to spare: "+what
		default:
			c.Reason = what
		}
		checks = append(checks, c)
	}
	if len(devs) == 0 && len(checks) == 0 {
		checks = append(checks, PreflightCheck{Check: "disk", Status: CheckOK, Reason: "not predicted: no artifact sizes recorded yet"})
	}
	return checks
}

// existingAncestor is dir or its nearest existing ancestor: a backup root
// that a first run will create is on its ancestor's filesystem.
func existingAncestor(dir string) string {
	at := filepath.Clean(dir)
	for {
		if _, err := os.Stat(at); err == nil || filepath.Dir(at) == at {
			return at
		}
		at = filepath.Dir(at)
	}
}

// PreflightStepID names the preflight's record among a run's steps (no
// step id can contain parentheses).
const PreflightStepID = "(preflight)"

// preflight runs the plan's preflight checks at the start of a run (plan
// key preflight: true): each is logged; a failed one fails the run before
// any step, so only failure()/always() steps run.
func (r *run) preflight(ctx context.Context) {
	started := time.Now().UTC()
	h, _ := r.opts.Recorder.(HistoryReader)
	checks := Preflight(ctx, r.plan, r.scope, PreflightOptions{History: h, Euid: os.Geteuid(), Log: r.log})
	var fails []string
	for _, c := range checks {
		line := c.String()
		switch c.Status {
		case CheckFail:
			r.log.Error("preflight: " + line)
			fails = append(fails, line)
		case CheckWarn:
			r.log.Warn("preflight: " + line)
		default:
			r.log.Info("preflight: " + line)
		}
	}
	finished := time.Now().UTC()
	rec := AttemptRecord{RunID: r.id, StepID: PreflightStepID, StepType: "preflight", Attempt: 1, Status: StatusSuccess,
		Started: started, Finished: finished, Duration: finished.Sub(started),
		Outputs: map[string]any{"checks": len(checks), "failed": len(fails)}}
	if len(fails) > 0 {
		rec.Status = StatusFailed
		rec.Error = r.scope.Secrets.Redact(strings.Join(fails, "\n"))
		r.failed, r.preflightFail = true, true
		if r.firstErr == nil {
			r.firstErr = fmt.Errorf("preflight: %s", r.scope.Secrets.Redact(fails[0]))
		}
	}
	r.record(rec)
}
