package engine

import (
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"
)

// DryRun prints every step in order with its resolved params, its `when`
// decision and what it would run and write — secrets masked. It runs
// nothing, writes no artifact and records nothing. Outputs of earlier
// steps are shown as <steps.ID.outputs.NAME> placeholders.
func DryRun(w io.Writer, p *Plan, scope *Scope) error {
	rd := scope.Secrets
	out := func(format string, args ...any) { fmt.Fprint(w, rd.Redact(fmt.Sprintf(format, args...))) }

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
	steps := map[string]any{}
	run := map[string]any{"id": "<run id>", "plan": p.Name, "host": "<host>", "started": scope.Started,
		"log_tail": "<log tail>", "log_file": "<log file>", "dry_run": true, "status": StatusRunning}
	for i, s := range p.Steps {
		sc := scope.exprScope(run, steps)
		sc["success"] = func() bool { return true }
		// Files a restore fetches in an earlier step do not exist yet.
		sc["newest"] = func(pattern string) string {
			if p, err := newest(pattern); err == nil {
				return p
			}
			return "<newest " + pattern + ">"
		}
		out("\nstep %d/%d %s (%s)", i+1, len(p.Steps), s.ID, s.TypeName)
		placeholders := map[string]any{}
		for _, o := range s.Type.Outputs {
			placeholders[o.Name] = fmt.Sprintf("<steps.%s.outputs.%s>", s.ID, o.Name)
		}
		steps[s.ID] = map[string]any{"outputs": placeholders, "status": StatusSuccess, "outcome": StatusSuccess}

		switch {
		case s.whenDefault:
			out(": would run\n")
		default:
			ok, err := EvalBool(s.when, s.When, sc)
			switch {
			case err != nil:
				out(": when cannot be decided before the run (%v)\n", err)
				problems++
			case ok:
				out(": would run (when %s → true)\n", s.When)
			case s.whenStatus && whenAfterFailure(s, sc):
				out(": runs only if an earlier step fails (when %s)\n", s.When)
				continue
			default:
				out(": skipped (when %s → false)\n", s.When)
				continue
			}
		}
		with, err := p.exprs.interpolate(s.With, sc)
		if err != nil {
			out("  error: %v\n", err)
			problems++
			continue
		}
		at := with
		if at == nil {
			at = &yaml.Node{Kind: yaml.MappingNode}
		}
		params, probs := s.Type.Decode(at, false)
		rd.Add(s.Type.SecretValues(params)...)
		printParams(w, rd, s.Type.Params, with, "  ")
		if len(probs) > 0 {
			for _, pr := range probs {
				out("  error: %s\n", pr.Msg)
			}
			problems++
			continue
		}
		if s.Type.KindFor(params) == KindDestructive {
			out("  destructive: skipped if a backup step fails earlier in the run%s\n",
				map[bool]string{true: " — overridden by after_backup_failure", false: ""}[s.AfterBackupFailure])
		}
		out("  timeout %s, attempts %d\n", s.Timeout, s.Retry.Attempts)
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
