package engine

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// checkRefs compiles every ${{ }} of the plan and checks what it refers
// to: vars defined before use, steps that exist and come earlier, outputs
// the step type declares, known run fields.
func (l *loader) checkRefs(p *Plan) {
	defined := map[string]bool{}
	for _, v := range p.Vars {
		l.walkTemplates(v.Value, "vars."+v.Name, func(n *yaml.Node, code string) {
			l.checkExpr(n, code, exprCtx{what: "vars." + v.Name, vars: defined, inVars: true})
		})
		defined[v.Name] = true
	}
	allVars := defined
	index := map[string]int{}
	for i, s := range p.Steps {
		if s.ID != "" {
			if _, ok := index[s.ID]; !ok {
				index[s.ID] = i
			}
		}
	}
	for i, s := range p.Steps {
		ctx := exprCtx{what: fmt.Sprintf("step %q", s.ID), vars: allVars, steps: p.Steps, index: index, pos: i,
			defaultGuard: p.Defaults.Guard != nil}
		if s.When != "" && s.when != nil {
			l.checkExpr(&yaml.Node{Line: s.Line, Column: s.Col}, s.When, ctx)
		}
		l.walkTemplates(s.With, ctx.what, func(n *yaml.Node, code string) { l.checkExpr(n, code, ctx) })
		actx := ctx
		actx.what, actx.self = ctx.what+": assert", true
		for _, a := range s.Asserts {
			l.checkExpr(&yaml.Node{Line: a.Line, Column: a.Col}, a.Code, actx)
		}
	}
	for _, m := range p.Monitor {
		if m.Type != nil && !m.Type.Monitor {
			l.errf(&yaml.Node{Line: m.Line, Column: m.Col}, "monitor: step type %q cannot be a monitor (`planrun steps` marks the types that can)", m.TypeName)
		}
		ctx := exprCtx{what: "monitor", vars: allVars, inMonitor: true}
		l.walkTemplates(m.With, "monitor", func(n *yaml.Node, code string) { l.checkExpr(n, code, ctx) })
		if m.With != nil {
			for i := 0; i+1 < len(m.With.Content); i += 2 {
				if k := m.With.Content[i]; k.Value == "signal" || k.Value == "exit_code" {
					l.errf(k, "monitor: %q is set by the engine (start, then success or fail)", k.Value)
				}
			}
		}
	}
}

type exprCtx struct {
	what      string
	vars      map[string]bool
	inVars    bool
	inMonitor bool
	steps     []*Step
	index     map[string]int
	pos       int
	self      bool // an assert may read the step's own outputs
	// defaultGuard: the plan has a defaults.guard (backup steps get it).
	defaultGuard bool
}

// walkTemplates calls fn for every expression inside scalars of n.
func (l *loader) walkTemplates(n *yaml.Node, what string, fn func(n *yaml.Node, code string)) {
	if n == nil {
		return
	}
	n = resolve(n)
	if n.Kind == yaml.ScalarNode {
		if !hasExpr(n.Value) {
			return
		}
		t, err := l.exprs.template(n.Value)
		if err != nil {
			l.errf(n, "%s: %v", what, err)
			return
		}
		for _, c := range t.Codes() {
			fn(n, c)
		}
		return
	}
	for _, c := range n.Content {
		l.walkTemplates(c, what, fn)
	}
}

func (l *loader) checkExpr(n *yaml.Node, code string, c exprCtx) {
	refs, calls, err := l.exprs.references(code)
	if err != nil {
		l.errf(n, "%s: %v", c.what, err)
		return
	}
	if c.inVars || c.inMonitor {
		for _, call := range calls {
			if call == "success" || call == "failure" || call == "always" || call == "cancelled" {
				l.errf(n, "%s: %s() only makes sense in a step's when", c.what, call)
			}
		}
	}
	for _, r := range refs {
		switch r[0] {
		case "vars":
			if len(r) < 2 {
				continue
			}
			if !c.vars[r[1]] {
				if c.inVars {
					l.errf(n, "%s: vars.%s is not defined before this var", c.what, r[1])
				} else {
					l.errf(n, "%s: unknown var %q%s", c.what, r[1], hintFrom(r[1], keys(c.vars)))
				}
			}
		case "run":
			if len(r) >= 2 && !contains(runFields, r[1]) {
				l.errf(n, "%s: unknown field run.%s (known: %s)", c.what, r[1], strings.Join(runFields, ", "))
			}
		case "steps":
			if len(r) < 2 {
				continue
			}
			if c.inVars || c.inMonitor {
				l.errf(n, "%s: cannot refer to steps (evaluated before any step runs)", c.what)
				continue
			}
			l.checkStepRef(n, r, c)
		}
	}
}

func (l *loader) checkStepRef(n *yaml.Node, r ref, c exprCtx) {
	id := r[1]
	i, ok := c.index[id]
	if !ok {
		ids := make([]string, 0, len(c.index))
		for k := range c.index {
			ids = append(ids, k)
		}
		l.errf(n, "%s: unknown step %q%s", c.what, id, hintFrom(id, ids))
		return
	}
	if i == c.pos && !c.self {
		l.errf(n, "%s: refers to its own outputs", c.what)
		return
	}
	if i > c.pos {
		l.errf(n, "%s: refers to step %q, which runs later", c.what, id)
		return
	}
	if len(r) < 3 {
		return
	}
	switch r[2] {
	case "outputs":
		t := c.steps[i].Type
		if len(r) >= 4 && r[3] == "guard" && c.steps[i].mayGuard(c.defaultGuard) {
			return // the guard's verdict (guard.go)
		}
		if len(r) >= 4 && t != nil && len(t.Outputs) > 0 && !t.HasOutput(r[3]) {
			names := make([]string, len(t.Outputs))
			for j, o := range t.Outputs {
				names[j] = o.Name
			}
			l.errf(n, "%s: step %q (%s) has no output %q (outputs: %s)", c.what, id, t.Name, r[3], strings.Join(names, ", "))
		}
	case "status", "outcome":
	default:
		l.errf(n, "%s: steps.%s.%s: use steps.%s.outputs.<name>, .status or .outcome", c.what, id, r[2], id)
	}
}

func hintFrom(s string, candidates []string) string {
	if h := Suggest(s, candidates); h != "" {
		return fmt.Sprintf(" (did you mean %q?)", h)
	}
	return ""
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
