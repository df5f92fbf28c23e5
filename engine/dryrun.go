package engine

import (
	"fmt"
	"io"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DryRun prints every step in order with its resolved params, its `when`
// decision and what it would run and write — secrets masked. It prepares
// each step through the same path as apply (decide `when`, interpolate,
// decode, validate) and stops before execution: it runs nothing, writes no
// artifact and records nothing. What only the run can know (an earlier
// step's outputs, files an earlier step fetches) is shown as written.
func DryRun(w io.Writer, p *Plan, scope *Scope) error {
	rd := scope.Secrets
	out := func(format string, args ...any) { fmt.Fprint(w, rd.Redact(fmt.Sprintf(format, args...))) }
	r := &run{plan: p, scope: scope, id: scope.RunID, host: scope.Host, steps: map[string]*stepState{}, dry: true}

	out("plan %s (%s) — dry run: nothing is executed, written or recorded\n", p.Name, p.File)
	for _, warn := range scope.Warnings {
		out("warning: %s\n", warn)
	}
	if len(p.Vars) > 0 {
		out("vars:\n")
		for _, v := range p.Vars {
			out("  %s = %s\n", v.Name, FormatValue(scope.Vars[v.Name]))
		}
	}
	for _, m := range p.Monitor {
		out("monitor: %s (start at the beginning; success or fail at the end)\n", m.TypeName)
	}
	problems := 0
	if len(p.Locks) > 0 {
		names, err := r.resolveLocks(p.Locks, "locks")
		if err != nil {
			out("locks: error: %v\n", err)
			problems++
		} else {
			out("locks: %s, held for the whole run (%s)\n", strings.Join(names, ", "), lockPolicyText(p.Defaults.OnLock, p.Defaults.LockWait))
		}
	}
	for i, s := range p.Steps {
		sc := r.exprScope()
		// Every earlier step is taken to succeed; its outputs are unknown.
		r.steps[s.ID] = &stepState{status: StatusSuccess, outcome: StatusSuccess, outputs: Outputs{}}
		out("\nstep %d/%d %s (%s)", i+1, len(p.Steps), s.ID, s.TypeName)
		run, reason, err := r.decide(s, sc)
		switch {
		case err != nil:
			out(": when cannot be decided: %v\n", err)
			problems++
			continue
		case !run && s.whenStatus && whenAfterFailure(s, sc):
			out(": runs only if an earlier step fails (when %s)\n", s.When)
			continue
		case !run:
			out(": skipped (%s)\n", reason)
			continue
		case reason != "":
			out(": would run (%s)\n", reason)
		default:
			out(": would run\n")
		}
		params, with, err := r.params(s, sc)
		if with != nil {
			printParams(w, rd, s.Type.Params, with, "  ")
		}
		if err != nil {
			out("  error: %v\n", err)
			problems++
			continue
		}
		if s.Type.KindFor(params) == KindDestructive {
			out("  destructive: skipped if a backup step fails or a guard trips earlier in the run%s\n",
				map[bool]string{true: " — overridden by after_backup_failure", false: ""}[s.AfterBackupFailure])
		}
		out("  timeout %s, attempts %d\n", s.Timeout, s.Retry.Attempts)
		if len(s.Locks) > 0 {
			names, err := r.resolveLocks(s.Locks, fmt.Sprintf("step %q: locks", s.ID))
			if err != nil {
				out("  error: %v\n", err)
				problems++
				continue
			}
			out("  locks: %s (%s)\n", strings.Join(names, ", "), lockPolicyText(s.OnLock, s.LockWait))
		}
		if g := r.guardOf(s, s.Type.KindFor(params)); g != nil {
			out("  guard: %s\n", g)
		}
		for _, a := range s.Asserts {
			out("  assert: %s\n", a.Code)
		}
		env := &Env{PlanName: p.Name, StepID: s.ID, DryRun: true, Environ: scope.Environ, Secrets: rd}
		for _, line := range s.Type.Preview(env, params) {
			out("  %s\n", line)
		}
	}
	if problems > 0 {
		return fmt.Errorf("dry run: %d step(s) could not be resolved", problems)
	}
	return nil
}

// lockPolicyText says what a busy resource lock does.
func lockPolicyText(onLock string, wait time.Duration) string {
	switch {
	case onLock != OnLockWait:
		return "on_lock: " + onLock
	case wait > 0:
		return "on_lock: wait, up to " + wait.String()
	}
	return "on_lock: wait, up to the plan's timeout, else until a signal"
}

// printParams lists the resolved params, masking those tagged secret.
func printParams(w io.Writer, rd *Redactor, spec *Spec, with *yaml.Node, indent string) {
	if with == nil || with.Kind != yaml.MappingNode {
		return
	}
	type kv struct{ k, v string }
	var lines []kv
	for i := 0; i+1 < len(with.Content); i += 2 {
		k, v := with.Content[i].Value, with.Content[i+1]
		p := spec.Lookup(k)
		val := nodeText(v)
		if p != nil && p.Secret {
			val = Mask
		}
		lines = append(lines, kv{k, val})
	}
	for _, l := range lines {
		fmt.Fprint(w, rd.Redact(fmt.Sprintf("%s%s: %s\n", indent, l.k, l.v)))
	}
}

func nodeText(n *yaml.Node) string {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode {
		return n.Value
	}
	n2 := *n
	n2.Style = yaml.FlowStyle
	setFlow(&n2)
	b, err := yaml.Marshal(&n2)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func setFlow(n *yaml.Node) {
	n.Style |= yaml.FlowStyle
	n.Content = append([]*yaml.Node(nil), n.Content...) // copy: never touch the plan's nodes
	for i, c := range n.Content {
		cp := *c
		setFlow(&cp)
		n.Content[i] = &cp
	}
}

// whenAfterFailure evaluates a `when` as if an earlier step had failed.
func whenAfterFailure(s *Step, sc map[string]any) bool {
	failed := make(map[string]any, len(sc))
	for k, v := range sc {
		failed[k] = v
	}
	failed["success"] = func() bool { return false }
	failed["failure"] = func() bool { return true }
	ok, err := EvalBool(s.when, s.When, failed)
	return err == nil && ok
}
