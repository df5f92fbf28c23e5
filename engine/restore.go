package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// RestoreRequest says what to restore, from which backup, and where.
type RestoreRequest struct {
	// Plan is the backup plan (its env files, vars and restore section);
	// nil when restoring from a manifest alone on a fresh host.
	Plan     *Plan
	Manifest *Manifest
	// Only restricts the restore to these backup step ids.
	Only []string
	// Drill restores into scratch targets and compares with the manifest.
	Drill bool
	// Scratch restores into throwaway targets (implied by Drill).
	Scratch bool
	// Keep leaves scratch targets in place for inspection.
	Keep bool
	// IdentityFile and PassphraseFile decrypt (flags win over the plan's).
	IdentityFile   string
	PassphraseFile string
	// EnvFiles replace the plan's env files (--env-file).
	EnvFiles []string
}

// RestoreStep is one step of a derived restore plan.
type RestoreStep struct {
	ID       string         // the restore plan's step id
	Artifact ArtifactRecord // what it restores or checks
	Input    string         // where the artifact is read from
	Check    bool           // a drill's sha256 check of the artifact
}

// RestorePlan is a plan derived from a manifest, with what it restores.
type RestorePlan struct {
	Plan     *Plan
	Request  RestoreRequest
	Steps    []RestoreStep
	Skipped  []string // artifacts no restore is declared for, and why
	Scratch  string   // the scratch directory (file restores), if any
	Suffix   string   // appended to scratch database/collection names
	Kind     string   // restore or drill
	RTO      time.Duration
	Manifest *Manifest
}

// BuildRestore derives a restore plan from a manifest: for each artifact
// whose step type declares an inverse, a restore step of the inverse type
// with params from the inverse, overridden by the plan's restore.steps,
// each file artifact preceded by a sha256 check against the manifest.
// The plan goes through the same loader as any plan, so it is validated
// like one.
func BuildRestore(req RestoreRequest, reg *Registry) (*RestorePlan, error) {
	m := req.Manifest
	if m == nil {
		return nil, errors.New("restore: no manifest")
	}
	if req.Drill {
		req.Scratch = true
	}
	rp := &RestorePlan{Request: req, Kind: KindRestore, Manifest: m}
	if req.Drill {
		rp.Kind = KindDrill
	}
	var spec RestoreSpec
	if req.Plan != nil && req.Plan.Restore != nil {
		spec = *req.Plan.Restore
	}
	rp.RTO = spec.RTO
	identity, passphrase := spec.IdentityFile, spec.PassphraseFile
	if req.IdentityFile != "" || req.PassphraseFile != "" {
		identity, passphrase = req.IdentityFile, req.PassphraseFile
	}
	for _, id := range req.Only {
		if len(m.ForStep(id)) == 0 {
			return nil, fmt.Errorf("--only %s: the backup run %s has no artifact of step %q (steps with artifacts: %s)",
				id, shortID(m.RunID), id, strings.Join(m.StepIDs(), ", "))
		}
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	if req.Scratch {
		rp.Suffix = "_scratch_" + hex.EncodeToString(b[:])
	}

	doc := &yaml.Node{Kind: yaml.MappingNode}
	add := func(n *yaml.Node, k string, v any) {
		var vn yaml.Node
		if node, ok := v.(*yaml.Node); ok {
			vn = *node
		} else if err := vn.Encode(v); err != nil {
			panic(err) // values are built here: plain strings, lists, maps
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &vn)
	}
	name, envFiles := m.Plan, req.EnvFiles
	if req.Plan != nil {
		name = req.Plan.Name
		if len(envFiles) == 0 {
			envFiles = req.Plan.EnvFiles
		}
	}
	add(doc, "version", 1)
	add(doc, "name", name)
	add(doc, "description", fmt.Sprintf("%s of backup run %s (%s)", rp.Kind, m.RunID, m.Started.Format(time.RFC3339)))
	if len(envFiles) > 0 {
		add(doc, "env_files", envFiles)
	}
	if req.Plan != nil {
		if len(req.Plan.Secrets) > 0 {
			add(doc, "secrets", req.Plan.Secrets)
		}
		if len(req.Plan.Vars) > 0 {
			vars := &yaml.Node{Kind: yaml.MappingNode}
			for _, v := range req.Plan.Vars {
				add(vars, v.Name, v.Value)
			}
			add(doc, "vars", vars)
		}
		defaults := map[string]any{"timeout": req.Plan.Defaults.Timeout.String(), "on_lock": req.Plan.Defaults.OnLock}
		if req.Plan.Defaults.LockWait > 0 {
			defaults["lock_wait"] = req.Plan.Defaults.LockWait.String()
		}
		add(doc, "defaults", defaults)
		// The plan's resource locks guard its restores and drills too.
		if len(req.Plan.Locks) > 0 {
			add(doc, "locks", lockTexts(req.Plan.Locks))
		}
	}
	// A derived step reads what its backup step wrote: it takes the
	// backup step's resource locks, with its policy.
	inheritLocks := func(n *yaml.Node, stepID string) {
		if req.Plan == nil {
			return
		}
		for _, s := range req.Plan.Steps {
			if s.ID != stepID || len(s.Locks) == 0 {
				continue
			}
			add(n, "locks", lockTexts(s.Locks))
			add(n, "on_lock", s.OnLock)
			if s.LockWait > 0 {
				add(n, "lock_wait", s.LockWait.String())
			}
		}
	}
	stepsNode := &yaml.Node{Kind: yaml.SequenceNode}
	ids := map[string]int{}
	uniqueID := func(base string) string {
		ids[base]++
		if ids[base] == 1 {
			return base
		}
		return fmt.Sprintf("%s-%d", base, ids[base])
	}
	for _, a := range m.Artifacts {
		if len(req.Only) > 0 && !contains(req.Only, a.StepID) {
			continue
		}
		t := reg.Lookup(a.StepType)
		if t == nil || t.Inverse == nil {
			if a.StepType != "manifest" {
				rp.Skipped = append(rp.Skipped, fmt.Sprintf("%s (%s step %s): no restore is declared for %s", a.Path, a.StepType, a.StepID, a.StepType))
			}
			continue
		}
		input := m.Locate(a)
		id := uniqueID("restore-" + a.StepID)
		target := RestoreTarget{Input: input, Scratch: req.Scratch, ScratchSuffix: rp.Suffix, Keep: req.Keep,
			IdentityFile: identity, PassphraseFile: passphrase}
		if req.Scratch {
			if rp.Scratch == "" {
				// Named now, created by Restore: a dry run writes nothing.
				base := spec.ScratchDir
				if base == "" {
					base = os.TempDir()
				}
				rp.Scratch = filepath.Join(base, "planrun-"+rp.Kind+"-"+hex.EncodeToString(b[:]))
			}
			target.Dir = filepath.Join(rp.Scratch, id)
		}
		typ := t.Inverse.Type
		if req.Scratch && t.Inverse.ScratchType != "" {
			typ = t.Inverse.ScratchType
		}
		with, err := t.Inverse.With(a, target)
		if errors.Is(err, ErrNoRestore) {
			rp.Skipped = append(rp.Skipped, fmt.Sprintf("%s (%s step %s): %v", a.Path, a.StepType, a.StepID, err))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("restore of %s (step %s): %w", a.Path, a.StepID, err)
		}
		// Every artifact is checked against the manifest's digest before it
		// is restored (a sidecar may not have travelled: the manifest is the
		// reference). A drill checks and restores all of them, whatever
		// failed before; a restore stops at the first damaged artifact.
		if !t.Inverse.NotAFile {
			checkID := uniqueID("check-" + a.StepID)
			check := &yaml.Node{Kind: yaml.MappingNode}
			add(check, "id", checkID)
			add(check, "name", "sha256 of "+filepath.Base(a.Path)+" equals the manifest's")
			add(check, "type", "verify")
			add(check, "with", map[string]any{"path": input, "sha256": a.SHA256, "sidecar": "optional"})
			if req.Drill {
				add(check, "when", "always()")
			}
			inheritLocks(check, a.StepID)
			stepsNode.Content = append(stepsNode.Content, check)
			rp.Steps = append(rp.Steps, RestoreStep{ID: checkID, Artifact: a, Input: input, Check: true})
		}
		withNode := &yaml.Node{}
		if err := withNode.Encode(with); err != nil {
			return nil, err
		}
		if over := spec.Steps[a.StepID]; over != nil {
			if req.Scratch {
				over = withoutKeys(over, t.Inverse.Targets)
			}
			withNode = mergeMapping(withNode, over)
		}
		step := &yaml.Node{Kind: yaml.MappingNode}
		add(step, "id", id)
		add(step, "name", fmt.Sprintf("%s %s from step %s", typ, filepath.Base(a.Path), a.StepID))
		add(step, "type", typ)
		add(step, "with", withNode)
		if req.Drill {
			add(step, "when", "always()") // restore and compare every artifact
		}
		inheritLocks(step, a.StepID)
		stepsNode.Content = append(stepsNode.Content, step)
		rp.Steps = append(rp.Steps, RestoreStep{ID: id, Artifact: a, Input: input})
	}
	if len(stepsNode.Content) == 0 {
		rp.cleanup()
		return nil, fmt.Errorf("backup run %s has nothing planrun can restore%s", shortID(m.RunID), skippedNote(rp.Skipped))
	}
	add(doc, "steps", stepsNode)
	data, err := yaml.Marshal(doc)
	if err != nil {
		rp.cleanup()
		return nil, err
	}
	file := fmt.Sprintf("<%s of run %s>", rp.Kind, shortID(m.RunID))
	p, err := Load(file, data, reg)
	if err != nil {
		rp.cleanup()
		return nil, fmt.Errorf("%w\nthe derived plan:\n%s", err, data)
	}
	if req.Plan != nil {
		p.File, p.SHA256 = req.Plan.File, req.Plan.SHA256
	}
	rp.Plan = p
	return rp, nil
}

// lockTexts are the locks: entries as written (their ${{ }} evaluate in
// the derived plan, which has the same vars and env files).
func lockTexts(names []*LockName) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n.Text
	}
	return out
}

func skippedNote(skipped []string) string {
	if len(skipped) == 0 {
		return ""
	}
	return ":\n  " + strings.Join(skipped, "\n  ")
}

// mergeMapping returns base with over's keys replacing or adding to it.
func mergeMapping(base, over *yaml.Node) *yaml.Node {
	out := &yaml.Node{Kind: yaml.MappingNode}
	overKeys := map[string]bool{}
	for i := 0; i+1 < len(over.Content); i += 2 {
		overKeys[over.Content[i].Value] = true
	}
	for i := 0; i+1 < len(base.Content); i += 2 {
		if !overKeys[base.Content[i].Value] {
			out.Content = append(out.Content, base.Content[i], base.Content[i+1])
		}
	}
	out.Content = append(out.Content, over.Content...)
	return out
}

// withoutKeys returns a mapping without the given keys.
func withoutKeys(m *yaml.Node, drop []string) *yaml.Node {
	out := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if !contains(drop, m.Content[i].Value) {
			out.Content = append(out.Content, m.Content[i], m.Content[i+1])
		}
	}
	return out
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// cleanup removes the scratch directory unless asked to keep it.
func (rp *RestorePlan) cleanup() {
	if rp.Scratch != "" && !rp.Request.Keep {
		os.RemoveAll(rp.Scratch)
	}
}

// Restore runs a derived restore plan through the ordinary runner and
// records it as a run of kind restore or drill linked to the backup run,
// with its RTO (restore start → last restore step done), RPO (restore
// start − backup start) and, for a drill, every comparison with the
// manifest: the artifacts' sha256 and the counts each restore step
// measured. Any difference, or an RTO over the plan's budget, fails it.
func Restore(ctx context.Context, rp *RestorePlan, scope *Scope, o Options) Result {
	if rp.Scratch != "" {
		if err := os.Mkdir(rp.Scratch, 0o700); err != nil {
			return Result{Status: StatusFailed, ExitCode: ExitFailed, Err: fmt.Errorf("scratch dir: %w", err)}
		}
	}
	defer rp.cleanup()
	o.kind, o.sourceRun = rp.Kind, rp.Manifest.RunID
	o.report = func(r *run, res *Result) *RestoreReport {
		rep := rp.report(r)
		if res.Status == StatusSuccess && !rep.Passed {
			res.Status, res.ExitCode = StatusFailed, ExitFailed
			res.Err = fmt.Errorf("%s failed: %s", rp.Kind, strings.Join(rep.Problems, "; "))
		}
		rep.Passed = res.Status == StatusSuccess && len(rep.Problems) == 0
		r.log.Info(rp.Kind+" report", "rto", rep.RTO.Round(time.Millisecond), "rpo", rep.RPO.Round(time.Second),
			"checks", len(rep.Checks), "passed", rep.Passed)
		for _, p := range rep.Problems {
			r.log.Error(rp.Kind+" difference", "problem", p)
		}
		return rep
	}
	return Apply(ctx, rp.Plan, scope, o)
}

// report compares what the restore measured with the manifest.
func (rp *RestorePlan) report(r *run) *RestoreReport {
	m := rp.Manifest
	rep := &RestoreReport{SourceRun: m.RunID, SourcePlan: m.Plan, BackupStarted: m.Started,
		Scratch: rp.Request.Scratch, RTOBudget: rp.RTO, RPO: r.scope.Started.Sub(m.Started)}
	var last time.Time
	for _, s := range rp.Steps {
		st := r.steps[s.ID]
		if st == nil {
			rep.Problems = append(rep.Problems, s.ID+": did not run")
			continue
		}
		if st.finished.After(last) {
			last = st.finished
		}
		if st.status != StatusSuccess {
			why := st.err
			if why == "" {
				why = st.status
			}
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %s", s.ID, why))
		}
		if s.Check {
			c := Check{Step: s.ID, Artifact: s.Artifact.Path, What: "sha256", Compared: 1}
			if st.status != StatusSuccess {
				c.Error = st.err
			}
			rep.Checks = append(rep.Checks, c)
			continue
		}
		c := Check{Step: s.ID, Artifact: s.Artifact.Path, What: "counts", Compared: len(s.Artifact.Counts)}
		if len(s.Artifact.Counts) > 0 {
			got, ok := CountsOf(st.outputs["counts"])
			switch {
			case st.status != StatusSuccess:
				c.Error = "not compared: the restore failed"
			case !ok:
				c.Error = "the restore step measured no counts"
			default:
				c.Diffs = CompareCounts(s.Artifact.Counts, got)
			}
		}
		for _, d := range c.Diffs {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s (%s): %s", s.ID, filepath.Base(s.Artifact.Path), d))
		}
		if c.Error != "" && st.status == StatusSuccess {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %s", s.ID, c.Error))
		}
		rep.Checks = append(rep.Checks, c)
	}
	if !last.IsZero() {
		rep.RTO = last.Sub(r.scope.Started)
	}
	if rp.RTO > 0 && rep.RTO > rp.RTO {
		rep.Problems = append(rep.Problems, fmt.Sprintf("RTO %s exceeds the plan's budget %s", rep.RTO.Round(time.Millisecond), rp.RTO))
	}
	rep.Passed = len(rep.Problems) == 0
	return rep
}
