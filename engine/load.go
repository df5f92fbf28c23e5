package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Keys of the plan format, for unknown-key hints.
var (
	planKeys     = []string{"version", "name", "description", "env_files", "env_precedence", "secrets", "vars", "defaults", "timeout", "monitor", "steps", "restore"}
	restoreKeys  = []string{"identity_file", "passphrase_file", "scratch_dir", "rto", "steps"}
	defaultsKeys = []string{"timeout", "retry"}
	retryKeys    = []string{"attempts", "delay", "max_delay"}
	stepKeys     = []string{"id", "name", "type", "with", "when", "assert", "timeout", "retry", "continue_on_error", "after_backup_failure"}
	monitorKeys  = []string{"type", "with"}
)

var (
	idRe       = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)
	planNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	varNameRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// DefaultStepTimeout applies when neither the step nor the plan sets one.
const DefaultStepTimeout = 2 * time.Hour

// LoadFile reads and validates a plan. On problems it returns them all as
// a Problems error (sorted, each with file:line:col).
func LoadFile(path string, reg *Registry) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: fmt.Sprintf("cannot read plan: %v", errors.Unwrap(err))}}
	}
	return Load(path, data, reg)
}

// Load parses and validates plan text; file names it in problems.
func Load(file string, data []byte, reg *Registry) (*Plan, error) {
	l := &loader{file: file, reg: reg, exprs: newExprCache()}
	p := l.load(data)
	if len(l.probs) > 0 {
		for i := range l.probs {
			l.probs[i].File = file
		}
		l.probs.sort()
		return nil, l.probs
	}
	sum := sha256.Sum256(data)
	p.SHA256 = hex.EncodeToString(sum[:])
	p.File = file
	return p, nil
}

type loader struct {
	file  string
	reg   *Registry
	probs Problems
	exprs *exprCache
}

func (l *loader) errf(n *yaml.Node, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	l.probs = append(l.probs, Problem{Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (l *loader) load(data []byte) *Plan {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			l.probs = append(l.probs, Problem{Line: line, Col: 1, Msg: "invalid YAML: " + m[2]})
		} else {
			l.probs = append(l.probs, Problem{Line: 1, Col: 1, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")})
		}
		return nil
	}
	if len(doc.Content) == 0 {
		l.probs = append(l.probs, Problem{Line: 1, Col: 1, Msg: "empty plan"})
		return nil
	}
	root := doc.Content[0]
	if n, msg := checkAliases(root, map[*yaml.Node]bool{}, new(int)); msg != "" {
		l.errf(n, "%s", msg)
		return nil
	}
	expandMerges(root, 0)
	if root.Kind != yaml.MappingNode {
		l.errf(root, "a plan must be a mapping with keys version, name, steps, ...")
		return nil
	}
	p := &Plan{exprs: l.exprs, EnvPrecedence: "file", Defaults: StepDefaults{Timeout: DefaultStepTimeout, Retry: Retry{Attempts: 1}}}
	var stepsNode, monitorNode, varsNode, restoreNode *yaml.Node
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], resolve(root.Content[i+1])
		if prev, dup := seen[k.Value]; dup {
			l.errf(k, "key %q given twice (first at line %d)", k.Value, prev.Line)
			continue
		}
		seen[k.Value] = k
		switch k.Value {
		case "version":
			if n, ok := l.intVal(v, "version"); ok && n != 1 {
				l.errf(v, "unsupported plan version %d (this planrun reads version 1)", n)
			} else {
				p.Version = n
			}
		case "name":
			p.Name, _ = l.str(v, "name")
			if p.Name != "" && !planNameRe.MatchString(p.Name) {
				l.errf(v, "name %q: use letters, digits, '.', '_' and '-' (it names the lock and the run history)", p.Name)
			}
		case "description":
			p.Description, _ = l.str(v, "description")
		case "env_files":
			p.EnvFiles = l.strList(v, "env_files")
		case "env_precedence":
			if s, ok := l.str(v, "env_precedence"); ok {
				if s != "file" && s != "process" {
					l.errf(v, "env_precedence must be file or process, got %q", s)
				}
				p.EnvPrecedence = s
			}
		case "secrets":
			p.Secrets = l.strList(v, "secrets")
		case "vars":
			varsNode = v
		case "defaults":
			l.defaults(v, &p.Defaults)
		case "timeout":
			p.Timeout, _ = l.duration(v, "timeout")
		case "monitor":
			monitorNode = v
		case "steps":
			stepsNode = v
		case "restore":
			restoreNode = v
		default:
			l.unknownKey(k, "unknown plan key", planKeys)
		}
	}
	if _, ok := seen["version"]; !ok {
		l.errf(root, "missing required key \"version\" (use version: 1)")
	}
	if _, ok := seen["name"]; !ok {
		l.errf(root, "missing required key \"name\"")
	}
	if varsNode != nil {
		p.Vars = l.vars(varsNode)
	}
	if stepsNode == nil {
		l.errf(root, "missing required key \"steps\"")
	} else {
		p.Steps = l.steps(stepsNode, p)
	}
	if monitorNode != nil {
		p.Monitor = l.monitor(monitorNode, p)
	}
	if restoreNode != nil {
		p.Restore = l.restore(restoreNode, p)
	}
	l.checkRefs(p)
	return p
}

// restore reads the plan's `restore:` section: how planrun restore and
// planrun drill restore what this plan backs up.
func (l *loader) restore(v *yaml.Node, p *Plan) *RestoreSpec {
	rs := &RestoreSpec{Steps: map[string]*yaml.Node{}}
	l.mapping(v, "restore", restoreKeys, func(k, v *yaml.Node) {
		switch k.Value {
		case "identity_file":
			rs.IdentityFile, _ = l.str(v, "restore.identity_file")
		case "passphrase_file":
			rs.PassphraseFile, _ = l.str(v, "restore.passphrase_file")
		case "scratch_dir":
			rs.ScratchDir, _ = l.str(v, "restore.scratch_dir")
		case "rto":
			rs.RTO, _ = l.duration(v, "restore.rto")
		case "steps":
			if v.Kind != yaml.MappingNode {
				l.errf(v, "restore.steps: expected a mapping of backup step ids to param overrides")
				return
			}
			for i := 0; i+1 < len(v.Content); i += 2 {
				id, with := v.Content[i], resolve(v.Content[i+1])
				l.restoreOverride(p, id, with)
				rs.Steps[id.Value] = with
			}
		}
	})
	return rs
}

// restoreOverride checks one restore.steps entry: a backup step of the
// plan whose type has an inverse, and params that inverse type knows.
func (l *loader) restoreOverride(p *Plan, id, with *yaml.Node) {
	var step *Step
	ids := make([]string, 0, len(p.Steps))
	for _, s := range p.Steps {
		ids = append(ids, s.ID)
		if s.ID == id.Value {
			step = s
		}
	}
	if step == nil {
		l.errf(id, "restore.steps: unknown step %q%s", id.Value, hintFrom(id.Value, ids))
		return
	}
	if step.Type == nil {
		return
	}
	inv := step.Type.Inverse
	if inv == nil {
		l.errf(id, "restore.steps.%s: step type %s has no restore (planrun restore skips it)", id.Value, step.TypeName)
		return
	}
	if with.Kind != yaml.MappingNode {
		l.errf(with, "restore.steps.%s: expected a mapping of %s params", id.Value, inv.Type)
		return
	}
	// A key is valid if the restore type (or, for data restored differently
	// into scratch, the scratch type) takes it.
	var known []string
	for _, typ := range []string{inv.Type, inv.ScratchType} {
		if t := l.reg.Lookup(typ); t != nil {
			known = append(known, t.Params.Names()...)
		}
	}
	for i := 0; i+1 < len(with.Content); i += 2 {
		if k := with.Content[i]; !contains(known, k.Value) {
			l.errf(k, "restore.steps.%s: %s has no param %q%s", id.Value, inv.Type, k.Value, hintFrom(k.Value, known))
		}
	}
	l.walkTemplates(with, "restore.steps."+id.Value, func(n *yaml.Node, code string) {
		l.checkExpr(n, code, exprCtx{what: "restore.steps." + id.Value, vars: allVarNames(p), inMonitor: true})
	})
}

func allVarNames(p *Plan) map[string]bool {
	m := map[string]bool{}
	for _, v := range p.Vars {
		m[v.Name] = true
	}
	return m
}

// maxExpandedNodes bounds what aliases may expand to ("billion laughs").
const maxExpandedNodes = 100_000

// checkAliases rejects alias cycles (an anchor used inside itself) and
// alias chains that expand to more than maxExpandedNodes nodes: every
// later walk follows aliases and must terminate, small.
func checkAliases(n *yaml.Node, active map[*yaml.Node]bool, count *int) (*yaml.Node, string) {
	if n == nil {
		return nil, ""
	}
	*count++
	if *count > maxExpandedNodes {
		return n, fmt.Sprintf("aliases expand to more than %d nodes", maxExpandedNodes)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return n, fmt.Sprintf("alias *%s refers to nothing", n.Value)
		}
		if active[n.Alias] {
			return n, fmt.Sprintf("alias *%s refers to itself", n.Value)
		}
		active[n.Alias] = true
		defer delete(active, n.Alias)
		return checkAliases(n.Alias, active, count)
	}
	active[n] = true
	defer delete(active, n)
	for _, c := range n.Content {
		if bad, msg := checkAliases(c, active, count); msg != "" {
			return bad, msg
		}
	}
	return nil, ""
}

// expandMerges applies YAML merge keys (<<: *anchor) in place.
func expandMerges(n *yaml.Node, depth int) {
	if n == nil || depth > 100 {
		return
	}
	if n.Kind == yaml.MappingNode {
		var out []*yaml.Node
		var merged []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				src := resolve(v)
				var maps []*yaml.Node
				if src.Kind == yaml.SequenceNode {
					maps = src.Content
				} else {
					maps = []*yaml.Node{src}
				}
				for _, m := range maps {
					if m = resolve(m); m.Kind == yaml.MappingNode {
						merged = append(merged, m.Content...)
					}
				}
				continue
			}
			out = append(out, k, v)
		}
		for i := 0; i+1 < len(merged); i += 2 {
			if !hasKey(out, merged[i].Value) {
				out = append(out, merged[i], merged[i+1])
			}
		}
		n.Content = out
	}
	for _, c := range n.Content {
		expandMerges(c, depth+1)
	}
}

func hasKey(content []*yaml.Node, key string) bool {
	for i := 0; i < len(content); i += 2 {
		if content[i].Value == key {
			return true
		}
	}
	return false
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// unknownKey reports k as unknown: what is e.g. `unknown plan key`.
func (l *loader) unknownKey(k *yaml.Node, what string, known []string) {
	msg := fmt.Sprintf("%s %q", what, k.Value)
	if hint := Suggest(k.Value, known); hint != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", hint)
	} else {
		msg += " (known: " + strings.Join(known, ", ") + ")"
	}
	l.errf(k, "%s", msg)
}

func (l *loader) str(v *yaml.Node, field string) (string, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		l.errf(v, "%s: expected a string", field)
		return "", false
	}
	return v.Value, true
}

func (l *loader) intVal(v *yaml.Node, field string) (int, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
		l.errf(v, "%s: expected an integer, got %s", field, describe(v))
		return 0, false
	}
	n, err := strconv.Atoi(v.Value)
	if err != nil {
		l.errf(v, "%s: expected an integer, got %q", field, v.Value)
		return 0, false
	}
	return n, true
}

func (l *loader) boolVal(v *yaml.Node, field string) bool {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
		l.errf(v, "%s: expected true or false, got %s", field, describe(v))
		return false
	}
	return v.Value == "true" || v.Value == "True" || v.Value == "TRUE"
}

func (l *loader) duration(v *yaml.Node, field string) (time.Duration, bool) {
	if v.Kind != yaml.ScalarNode {
		l.errf(v, "%s: expected a duration like 30m, got %s", field, describe(v))
		return 0, false
	}
	d, err := ParseDuration(v.Value)
	if err != nil {
		l.errf(v, "%s: %v", field, err)
		return 0, false
	}
	if d <= 0 {
		l.errf(v, "%s: must be positive", field)
		return 0, false
	}
	return d, true
}

func (l *loader) strList(v *yaml.Node, field string) []string {
	if v.Kind != yaml.SequenceNode {
		l.errf(v, "%s: expected a list of strings, got %s", field, describe(v))
		return nil
	}
	var out []string
	for _, e := range v.Content {
		e = resolve(e)
		if e.Kind != yaml.ScalarNode {
			l.errf(e, "%s: expected a string, got %s", field, describe(e))
			continue
		}
		out = append(out, e.Value)
	}
	return out
}

func describe(v *yaml.Node) string {
	switch v.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", v.Value)
	}
	return "nothing"
}

func (l *loader) mapping(v *yaml.Node, field string, known []string, fn func(k, v *yaml.Node)) {
	if v.Kind != yaml.MappingNode {
		l.errf(v, "%s: expected a mapping with keys %s", field, strings.Join(known, ", "))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k := v.Content[i]
		if seen[k.Value] {
			l.errf(k, "%s: key %q given twice", field, k.Value)
			continue
		}
		seen[k.Value] = true
		if !contains(known, k.Value) {
			l.unknownKey(k, field+": unknown key", known)
			continue
		}
		fn(k, resolve(v.Content[i+1]))
	}
}

func (l *loader) defaults(v *yaml.Node, d *StepDefaults) {
	l.mapping(v, "defaults", defaultsKeys, func(k, v *yaml.Node) {
		switch k.Value {
		case "timeout":
			if t, ok := l.duration(v, "defaults.timeout"); ok {
				d.Timeout = t
			}
		case "retry":
			d.Retry = l.retry(v, "defaults.retry", d.Retry)
		}
	})
}

func (l *loader) retry(v *yaml.Node, field string, base Retry) Retry {
	r := base
	l.mapping(v, field, retryKeys, func(k, v *yaml.Node) {
		switch k.Value {
		case "attempts":
			if n, ok := l.intVal(v, field+".attempts"); ok {
				if n < 1 || n > 100 {
					l.errf(v, "%s.attempts: must be 1..100, got %d", field, n)
				}
				r.Attempts = n
			}
		case "delay":
			r.Delay, _ = l.duration(v, field+".delay")
		case "max_delay":
			r.MaxDelay, _ = l.duration(v, field+".max_delay")
		}
	})
	if r.MaxDelay > 0 && r.Delay > r.MaxDelay {
		l.errf(v, "%s: delay %s is longer than max_delay %s", field, r.Delay, r.MaxDelay)
	}
	return r
}

func (l *loader) vars(v *yaml.Node) []*Var {
	if v.Kind != yaml.MappingNode {
		l.errf(v, "vars: expected a mapping of names to values")
		return nil
	}
	var out []*Var
	seen := map[string]bool{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], resolve(v.Content[i+1])
		if !varNameRe.MatchString(k.Value) {
			l.errf(k, "vars: invalid name %q (letters, digits and _; it is used as vars.%s)", k.Value, k.Value)
			continue
		}
		if seen[k.Value] {
			l.errf(k, "vars: %q defined twice", k.Value)
			continue
		}
		seen[k.Value] = true
		out = append(out, &Var{Name: k.Value, Value: val, Line: k.Line, Col: k.Column})
	}
	return out
}

func (l *loader) steps(v *yaml.Node, p *Plan) []*Step {
	if v.Kind != yaml.SequenceNode {
		l.errf(v, "steps: expected a list of steps")
		return nil
	}
	if len(v.Content) == 0 {
		l.errf(v, "steps: a plan needs at least one step")
	}
	ids := map[string]*Step{}
	var out []*Step
	for _, n := range v.Content {
		n = resolve(n)
		s := l.step(n, p, "step")
		if s == nil {
			continue
		}
		if s.ID != "" {
			if prev, dup := ids[s.ID]; dup {
				l.errf(n, "duplicate step id %q (first at line %d)", s.ID, prev.Line)
			} else {
				ids[s.ID] = s
			}
		}
		out = append(out, s)
	}
	return out
}

func (l *loader) step(n *yaml.Node, p *Plan, what string) *Step {
	if n.Kind != yaml.MappingNode {
		l.errf(n, "%s: expected a mapping with id, type, with, ...", what)
		return nil
	}
	s := &Step{Line: n.Line, Col: n.Column, Timeout: p.Defaults.Timeout, Retry: p.Defaults.Retry}
	var withNode, typeNode *yaml.Node
	keys := stepKeys
	if what == "monitor" {
		keys = monitorKeys
	}
	// Name the step in every message, whatever the key order.
	label := what
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "id" && n.Content[i+1].Kind == yaml.ScalarNode {
			label = fmt.Sprintf("step %q", n.Content[i+1].Value)
		}
	}
	l.mapping(n, label, keys, func(k, v *yaml.Node) {
		switch k.Value {
		case "id":
			if id, ok := l.str(v, "id"); ok {
				if !idRe.MatchString(id) {
					l.errf(v, "step id %q: start with a letter; use letters, digits, '_' and '-'", id)
				}
				s.ID = id
			}
		case "name":
			s.Name, _ = l.str(v, "name")
		case "type":
			typeNode = v
			s.TypeName, _ = l.str(v, "type")
		case "with":
			withNode = v
		case "when":
			if w, ok := l.str(v, "when"); ok {
				s.When = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(w), "${{"), "}}"))
				l.compileWhen(s, v, label)
			}
		case "assert":
			l.asserts(s, v, label)
		case "timeout":
			if d, ok := l.duration(v, label+": timeout"); ok {
				s.Timeout = d
			}
		case "retry":
			s.Retry = l.retry(v, label+": retry", p.Defaults.Retry)
		case "continue_on_error":
			s.ContinueOnError = l.boolVal(v, label+": continue_on_error")
		case "after_backup_failure":
			s.AfterBackupFailure = l.boolVal(v, label+": after_backup_failure")
		}
	})
	if s.ID == "" && what == "step" {
		l.errf(n, "step: missing required key \"id\"")
	}
	if s.When == "" {
		s.whenDefault = true
	}
	if typeNode == nil {
		l.errf(n, "%s: missing required key \"type\"", label)
		return s
	}
	s.Type = l.reg.Lookup(s.TypeName)
	if s.Type == nil {
		msg := fmt.Sprintf("%s: unknown step type %q", label, s.TypeName)
		if hint := Suggest(s.TypeName, l.reg.Names()); hint != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", hint)
		} else {
			msg += " (see `planrun steps`)"
		}
		l.errf(typeNode, "%s", msg)
		return s
	}
	s.With = withNode
	label = fmt.Sprintf("%s (%s)", label, s.TypeName)
	at := withNode
	if at == nil {
		at = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	}
	_, probs := s.Type.Decode(at, true)
	for _, pr := range probs {
		l.probs = append(l.probs, Problem{Line: pr.Line, Col: pr.Col, Msg: label + ": " + pr.Msg})
	}
	return s
}

// asserts reads a step's `assert:`: boolean expressions checked after the
// step succeeds, over its own outputs and earlier steps'.
func (l *loader) asserts(s *Step, v *yaml.Node, label string) {
	if v.Kind != yaml.SequenceNode {
		l.errf(v, "%s: assert: expected a list of boolean expressions, got %s", label, describe(v))
		return
	}
	for _, e := range v.Content {
		e = resolve(e)
		if e.Kind != yaml.ScalarNode {
			l.errf(e, "%s: assert: expected an expression, got %s", label, describe(e))
			continue
		}
		code := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(e.Value), "${{"), "}}"))
		prog, err := l.exprs.compile(code)
		if err != nil {
			l.errf(e, "%s: assert: %v", label, err)
			continue
		}
		if _, calls, _ := l.exprs.references(code); usesStatusFunc(calls) {
			l.errf(e, "%s: assert: success()/failure()/always()/cancelled() belong in when", label)
			continue
		}
		s.Asserts = append(s.Asserts, &Assertion{Code: code, Line: e.Line, Col: e.Column, prog: prog})
	}
}

func (l *loader) compileWhen(s *Step, v *yaml.Node, label string) {
	prog, err := l.exprs.compile(s.When)
	if err != nil {
		l.errf(v, "%s: when: %v", label, err)
		return
	}
	s.when = prog
	_, calls, _ := l.exprs.references(s.When)
	s.whenStatus = usesStatusFunc(calls)
}

func (l *loader) monitor(v *yaml.Node, p *Plan) []*Step {
	if v.Kind != yaml.SequenceNode {
		l.errf(v, "monitor: expected a list of {type, with}")
		return nil
	}
	var out []*Step
	for i, n := range v.Content {
		n = resolve(n)
		s := l.step(n, p, "monitor")
		if s == nil {
			continue
		}
		s.ID = fmt.Sprintf("monitor-%d", i+1)
		// Monitors are quick notifications: a short timeout, no retry policy
		// of the plan (the type retries itself).
		s.Timeout = 30 * time.Second
		s.Retry = Retry{Attempts: 1}
		out = append(out, s)
	}
	return out
}
