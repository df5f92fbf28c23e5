package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

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

func (l *loader) load(data []byte) *Plan {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		l.probs = append(l.probs, syntaxProblem(data, err))
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
	var f planFile
	l.object(root, planSpec, where{}, reflect.ValueOf(&f).Elem())
	applyDefaults(planSpec, reflect.ValueOf(&f).Elem())
	return l.build(&f)
}

// build makes the runtime Plan from the decoded format and checks what
// the declaration cannot: step types and params, expressions, ids,
// references.
func (l *loader) build(f *planFile) *Plan {
	p := &Plan{
		exprs: l.exprs, Version: f.Version, Name: f.Name, Description: f.Description,
		EnvFiles: f.EnvFiles, EnvPrecedence: f.EnvPrecedence, Secrets: f.Secrets,
		Timeout: time.Duration(f.Timeout), OnLock: f.OnLock, LockWait: time.Duration(f.LockWait),
		Preflight: f.Preflight,
	}
	defaultsRetry := l.retry(f.Defaults.Retry, Retry{}, where{path: "defaults.retry"})
	p.Defaults = StepDefaults{Timeout: time.Duration(f.Defaults.Timeout), Retry: withRetryDefaults(defaultsRetry),
		Guard: l.guard(f.Defaults.Guard, nil, where{path: "defaults.guard"})}
	if f.Vars != nil {
		p.Vars = l.vars(f.Vars)
	}
	p.Defaults.OnLock, p.Defaults.LockWait = f.Defaults.OnLock, time.Duration(f.Defaults.LockWait)
	p.Locks = l.lockNames(f.vals["locks"], "locks", allVarNames(p))
	ids := map[string]*Step{}
	for i := range f.Steps {
		sf := &f.Steps[i]
		s := l.step(&sf.node, sf.Type, sf.With, sf.label(sf.n))
		s.ID, s.Name = sf.ID, sf.Name
		s.Timeout, s.Retry = p.Defaults.Timeout, withRetryDefaults(l.retry(sf.Retry, defaultsRetry, where{prefix: sf.label(sf.n), path: "retry"}))
		if sf.Timeout > 0 {
			s.Timeout = time.Duration(sf.Timeout)
		}
		s.ContinueOnError, s.AfterBackupFailure = sf.ContinueOnError, sf.AfterBackupFailure
		s.Locks = l.lockNames(sf.vals["locks"], sf.label(sf.n)+": locks", allVarNames(p))
		s.OnLock, s.LockWait = p.Defaults.OnLock, p.Defaults.LockWait
		if sf.OnLock != "" {
			s.OnLock = sf.OnLock
		}
		if sf.LockWait > 0 {
			s.LockWait = time.Duration(sf.LockWait)
		}
		if sf.Guard != nil {
			s.Guard, s.ownGuard = l.guard(sf.Guard, p.Defaults.Guard, where{prefix: sf.label(sf.n), path: "guard"}), true
		}
		if w := sf.vals["when"]; w != nil {
			s.When = unwrapExpr(string(sf.When))
			l.compileWhen(s, w, sf.label(sf.n))
		}
		s.whenDefault = s.When == ""
		if a := sf.vals["assert"]; a != nil {
			l.asserts(s, a, sf.label(sf.n))
		}
		if s.ID != "" {
			if prev, dup := ids[s.ID]; dup {
				l.errf(sf.n, "duplicate step id %q (first at line %d)", s.ID, prev.Line)
			} else {
				ids[s.ID] = s
			}
		}
		p.Steps = append(p.Steps, s)
	}
	for i := range f.Monitor {
		mf := &f.Monitor[i]
		s := l.step(&mf.node, mf.Type, mf.With, "monitor")
		s.ID = fmt.Sprintf("monitor-%d", i+1)
		// Monitors are quick notifications: a short timeout, no retry policy
		// of the plan (the type retries itself).
		s.Timeout = monitorTimeout
		s.Retry = Retry{Attempts: 1}
		s.whenDefault = true
		p.Monitor = append(p.Monitor, s)
	}
	if r := f.Restore; r != nil {
		p.Restore = &RestoreSpec{IdentityFile: r.IdentityFile, PassphraseFile: r.PassphraseFile,
			ScratchDir: r.ScratchDir, RTO: time.Duration(r.RTO), Steps: map[string]*yaml.Node{}}
		if n := f.vals["restore"]; n != nil {
			if steps := lookupKey(n, "steps"); steps != nil && steps.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(steps.Content); i += 2 {
					id, with := steps.Content[i], resolve(steps.Content[i+1])
					l.restoreOverride(p, id, with)
					p.Restore.Steps[id.Value] = with
				}
			}
		}
	}
	if sf := f.Schedule; sf != nil {
		p.Schedule = l.schedule(sf)
	}
	l.checkRefs(p)
	return p
}

// schedule checks the `schedule:` declared: one of on_calendar and cron,
// in a syntax systemd or cron accepts.
func (l *loader) schedule(sf *scheduleFile) *Schedule {
	s := &Schedule{OnCalendar: sf.OnCalendar, Cron: sf.Cron, RandomizedDelay: time.Duration(sf.RandomizedDelay),
		Persistent: sf.Persistent || sf.vals["persistent"] == nil, Line: sf.n.Line, Col: sf.n.Column}
	cal, cron := sf.vals["on_calendar"], sf.vals["cron"]
	var err error
	switch {
	case cal != nil && cron != nil:
		l.errf(cron, "schedule: give on_calendar or cron, not both")
	case cal != nil:
		if s.cal, err = parseOnCalendar(s.OnCalendar); err != nil {
			l.errf(cal, "schedule.on_calendar: %v", err)
		}
	case cron != nil:
		if s.cal, err = parseCron(s.Cron); err != nil {
			l.errf(cron, "schedule.cron: %v", err)
		}
	default:
		l.errf(sf.n, "schedule: give on_calendar (systemd calendar syntax, e.g. \"*-*-* 03:00:00\") or cron (e.g. \"0 3 * * *\")")
	}
	return s
}

// step builds a step (or monitor) of type name with params with, at the
// decoded object x: it looks the type up and decodes the params.
func (l *loader) step(x *node, name string, with *yaml.Node, label string) *Step {
	s := &Step{Line: x.n.Line, Col: x.n.Column, TypeName: name}
	typeNode := x.vals["type"]
	if typeNode == nil || typeNode.Kind != yaml.ScalarNode || typeNode.Tag == "!!null" {
		return s // missing or not a string: reported while decoding
	}
	s.Type = l.reg.Lookup(name)
	if s.Type == nil {
		msg := fmt.Sprintf("%s: unknown step type %q", label, name)
		if retired := l.reg.RetiredHint(name, with); retired != "" {
			msg = fmt.Sprintf("%s: step type %q was retired: %s", label, name, retired)
		} else if hint := Suggest(name, l.reg.Names()); hint != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", hint)
		} else {
			msg += " (see `planrun steps`)"
		}
		l.errf(typeNode, "%s", msg)
		return s
	}
	if x.vals["with"] != nil && with == nil {
		return s // `with:` is not a mapping: reported while decoding
	}
	s.With = with
	at := with
	if at == nil {
		at = &yaml.Node{Kind: yaml.MappingNode, Line: x.n.Line, Column: x.n.Column}
	}
	_, probs := s.Type.Decode(at, true)
	for _, pr := range probs {
		l.probs = append(l.probs, Problem{Line: pr.Line, Col: pr.Col, Msg: fmt.Sprintf("%s (%s): %s", label, name, pr.Msg)})
	}
	return s
}

// retry lays the keys given in r over base; a delay longer than max_delay
// is reported where one of them is written.
func (l *loader) retry(r *retryFile, base Retry, at where) Retry {
	if r == nil {
		return base
	}
	if r.Attempts != 0 {
		base.Attempts = r.Attempts
	}
	if r.Delay != 0 {
		base.Delay = time.Duration(r.Delay)
	}
	if r.MaxDelay != 0 {
		base.MaxDelay = time.Duration(r.MaxDelay)
	}
	if (r.Delay != 0 || r.MaxDelay != 0) && base.MaxDelay > 0 && base.Delay > base.MaxDelay {
		l.errf(r.n, "%s: delay %s is longer than max_delay %s", at, base.Delay, base.MaxDelay)
	}
	return base
}

// lockNames reads a locks: list (its type was checked while decoding):
// each name non-empty, one line, and its ${{ }} reading only vars and env
// (a lock is taken before the step it guards runs).
func (l *loader) lockNames(list *yaml.Node, what string, vars map[string]bool) []*LockName {
	if list == nil || list.Kind != yaml.SequenceNode {
		return nil
	}
	var out []*LockName
	for _, e := range list.Content {
		if e = resolve(e); e.Kind != yaml.ScalarNode {
			continue // reported while decoding
		}
		name := &LockName{Text: e.Value, Line: e.Line, Col: e.Column}
		if msg := badLockName(e.Value); msg != "" {
			l.errf(e, "%s: %s", what, msg)
			continue
		}
		if hasExpr(e.Value) {
			t, err := l.exprs.template(e.Value)
			if err != nil {
				l.errf(e, "%s: %v", what, err)
				continue
			}
			for _, code := range t.Codes() {
				refs, _, err := l.exprs.references(code)
				if err == nil && slices.ContainsFunc(refs, func(r ref) bool { return r[0] == "steps" }) {
					l.errf(e, "%s: cannot refer to steps (a lock is taken before the step runs: use vars or env)", what)
					continue
				}
				l.checkExpr(e, code, exprCtx{what: what, vars: vars, inMonitor: true})
			}
			name.tpl = t
		}
		out = append(out, name)
	}
	return out
}

// badLockName says what is wrong with a resource name (after evaluation),
// or "".
func badLockName(name string) string {
	switch {
	case strings.TrimSpace(name) == "":
		return "empty resource name"
	case strings.TrimSpace(name) != name:
		return fmt.Sprintf("resource name %q has leading or trailing spaces", name)
	case strings.ContainsFunc(name, unicode.IsControl):
		return fmt.Sprintf("resource name %q contains a control character", name)
	}
	return ""
}

// withRetryDefaults fills what no retry key gave from retryFile's declared
// defaults; the default delay never exceeds max_delay.
func withRetryDefaults(r Retry) Retry {
	var d retryFile
	applyDefaults(retrySpec, reflect.ValueOf(&d).Elem())
	if r.Attempts == 0 {
		r.Attempts = d.Attempts
	}
	if r.Delay == 0 {
		r.Delay = time.Duration(d.Delay)
		if r.MaxDelay > 0 {
			r.Delay = min(r.Delay, r.MaxDelay)
		}
	}
	return r
}

func (l *loader) vars(v *yaml.Node) []*Var {
	if v.Kind != yaml.MappingNode {
		return nil // null; anything else was reported while decoding
	}
	var out []*Var
	seen := map[string]bool{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], resolve(v.Content[i+1])
		if seen[k.Value] {
			l.errf(k, "vars: %q defined twice", k.Value)
			continue
		}
		seen[k.Value] = true
		out = append(out, &Var{Name: k.Value, Value: val, Line: k.Line, Col: k.Column})
	}
	return out
}

// asserts reads a step's `assert:` (a list, checked while decoding): boolean expressions checked after the step succeeds, over its
// own outputs and earlier steps'.
func (l *loader) asserts(s *Step, v *yaml.Node, label string) {
	for _, e := range v.Content {
		if e = resolve(e); e.Kind != yaml.ScalarNode {
			continue // reported while decoding
		}
		code := unwrapExpr(e.Value)
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

// unwrapExpr accepts when/assert written with or without ${{ }}.
func unwrapExpr(s string) string {
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "${{"), "}}"))
}

// where names a place in a plan for messages: prefix is the object a list
// element names itself as (`step "dump"`), path the keys below it
// (`retry.attempts`).
type where struct{ prefix, path string }

func (w where) key(k string) where {
	if w.path == "" {
		return where{w.prefix, k}
	}
	return where{w.prefix, w.path + "." + k}
}

func (w where) String() string {
	switch {
	case w.prefix == "":
		return w.path
	case w.path == "":
		return w.prefix
	}
	return w.prefix + ": " + w.path
}

// object decodes mapping n into dst, a declared format struct, by its spec
// s: every key must be declared, each value must fit its declaration, and
// required keys must be there. It records n and the value nodes in dst's
// embedded node.
func (l *loader) object(n *yaml.Node, s *Spec, at where, dst reflect.Value) {
	if n.Kind != yaml.MappingNode {
		l.errf(n, "%s: expected a mapping with keys %s", at, strings.Join(s.Names(), ", "))
		return
	}
	vals := map[string]*yaml.Node{}
	keys := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if prev, dup := keys[k.Value]; dup {
			l.errf(k, "%skey %q given twice (first at line %d)", prefixed(at), k.Value, prev.Line)
			continue
		}
		keys[k.Value] = k
		p := s.Lookup(k.Value)
		if p == nil {
			what := "unknown plan key"
			if at != (where{}) {
				what = at.String() + ": unknown key"
			}
			l.unknownKey(k, what, s.Names())
			continue
		}
		vals[p.Name] = v
		l.value(p, v, at.key(p.Name), fieldByIndex(dst, p.index))
	}
	for _, p := range s.Params {
		if p.Required && keys[p.Name] == nil {
			msg := fmt.Sprintf("%smissing required key %q", prefixed(at), p.Name)
			if len(p.Enum) == 1 {
				msg += fmt.Sprintf(" (use %s: %s)", p.Name, p.Enum[0])
			}
			l.errf(n, "%s", msg)
		}
	}
	if x, ok := dst.Addr().Interface().(interface {
		setNode(*yaml.Node, map[string]*yaml.Node)
	}); ok {
		x.setNode(n, vals)
	}
}

func prefixed(at where) string {
	if at == (where{}) {
		return ""
	}
	return at.String() + ": "
}

// value decodes one value into field by its declaration p; at names it.
func (l *loader) value(p *Param, v *yaml.Node, at where, field reflect.Value) {
	name := at.String()
	check := func(text string, val any) bool {
		if msg := p.check(text, val); msg != "" {
			l.errf(v, "%s: %s", name, msg)
			return false
		}
		return true
	}
	switch p.Kind {
	case KindString, KindExpr:
		if s, ok := l.str(v, name); ok && check(s, s) {
			field.SetString(s)
		}
	case KindInt:
		if n, ok := l.intVal(v, name); ok && check(v.Value, int64(n)) {
			field.SetInt(int64(n))
		}
	case KindFloat:
		if f, ok := l.floatVal(v, name); ok && check(v.Value, f) {
			field.SetFloat(f)
		}
	case KindBool:
		field.SetBool(l.boolVal(v, name))
	case KindDuration:
		if d, ok := l.duration(v, name); ok {
			field.SetInt(int64(d))
		}
	case KindStringList, KindExprList:
		elem := "a string"
		if p.Kind == KindExprList {
			elem = "an expression"
		}
		if v.Kind != yaml.SequenceNode {
			l.errf(v, "%s: expected a %s, got %s", name, p.Kind, describe(v))
			return
		}
		list := reflect.MakeSlice(field.Type(), 0, len(v.Content))
		for _, e := range v.Content {
			if e = resolve(e); e.Kind != yaml.ScalarNode {
				l.errf(e, "%s: expected %s, got %s", name, elem, describe(e))
				continue
			}
			list = reflect.Append(list, reflect.ValueOf(e.Value).Convert(field.Type().Elem()))
		}
		field.Set(list)
	case KindMapping, KindMappingMap:
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			return
		}
		if v.Kind != yaml.MappingNode {
			l.errf(v, "%s: expected a %s, got %s", name, p.Kind, describe(v))
			return
		}
		for i := 0; i+1 < len(v.Content); i += 2 {
			k := v.Content[i]
			if p.Pattern != nil && !p.Pattern.MatchString(k.Value) {
				l.errf(k, "%s: invalid key %q (must match %s)", name, k.Value, p.Pattern)
			}
			if e := resolve(v.Content[i+1]); p.Kind == KindMappingMap && e.Kind != yaml.MappingNode {
				l.errf(e, "%s.%s: expected a mapping, got %s", name, k.Value, describe(e))
			}
		}
		if p.Kind == KindMapping {
			field.Set(reflect.ValueOf(v))
		}
	case KindObject:
		if field.Kind() == reflect.Pointer {
			field.Set(reflect.New(field.Type().Elem()))
			field = field.Elem()
		}
		l.object(v, p.Fields, at, field)
	case KindObjectList:
		if v.Kind != yaml.SequenceNode {
			l.errf(v, "%s: expected a list, got %s", name, describe(v))
			return
		}
		if p.Min != nil && float64(len(v.Content)) < *p.Min {
			l.errf(v, "%s: needs at least %v %s, got %d", name, *p.Min, map[bool]string{true: "entry", false: "entries"}[*p.Min == 1], len(v.Content))
		}
		list := reflect.MakeSlice(field.Type(), 0, len(v.Content))
		for _, e := range v.Content {
			e = resolve(e)
			el := reflect.New(field.Type().Elem())
			label := name
			if lb, ok := el.Interface().(labeler); ok {
				label = lb.label(e)
			}
			if e.Kind != yaml.MappingNode {
				l.errf(e, "%s: expected a mapping with keys %s", label, strings.Join(p.Fields.Names(), ", "))
				continue
			}
			l.object(e, p.Fields, where{prefix: label}, el.Elem())
			list = reflect.Append(list, el.Elem())
		}
		field.Set(list)
	default:
		panic("plan format: no decoding for " + string(p.Kind))
	}
}

// applyDefaults sets the declared defaults of s on the zero fields of v,
// down into (non-pointer) nested objects.
func applyDefaults(s *Spec, v reflect.Value) {
	for _, p := range s.Params {
		f := fieldByIndex(v, p.index)
		switch {
		case p.Kind == KindObject && f.Kind() == reflect.Struct:
			applyDefaults(p.Fields, f)
		case p.Default != "" && f.IsZero():
			val, _ := parseScalar(p, p.Default)
			setValue(f, val)
		}
	}
}

// lookupKey returns the value of key in mapping n, or nil.
func lookupKey(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return resolve(n.Content[i+1])
		}
	}
	return nil
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

func (l *loader) floatVal(v *yaml.Node, field string) (float64, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" && v.Tag != "!!float" {
		l.errf(v, "%s: expected a number, got %s", field, describe(v))
		return 0, false
	}
	f, err := strconv.ParseFloat(v.Value, 64)
	if err != nil {
		l.errf(v, "%s: expected a number, got %q", field, v.Value)
		return 0, false
	}
	return f, true
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
		return // reported while decoding
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
