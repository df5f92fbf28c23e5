package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"
)

// Template is a string with ${{ expr }} interpolations, compiled once.
type Template struct {
	Raw   string
	parts []tplPart
}

type tplPart struct {
	lit  string
	code string
	prog *vm.Program
}

// Single reports whether the template is exactly one expression, so its
// value keeps its type (a list stays a list).
func (t *Template) Single() bool { return len(t.parts) == 1 && t.parts[0].prog != nil }

// statusFuncs are the functions that make a `when` run after a failure.
var statusFuncs = []string{"success", "failure", "always", "cancelled"}

// runFields are the names under `run.`.
var runFields = []string{"id", "plan", "host", "started", "log_tail", "log_file", "dry_run", "status",
	"signal", "exit_code", "duration", "error"}

// exprOptions are the compile options shared by every expression. The env
// value is a prototype with the right shapes; values come at run time.
func exprOptions() []expr.Option {
	proto := map[string]any{
		"env":   map[string]any{},
		"vars":  map[string]any{},
		"run":   map[string]any{},
		"steps": map[string]any{},
	}
	for _, f := range statusFuncs {
		proto[f] = func() bool { return false }
	}
	proto["newest"] = newest
	proto["history"] = historyProto
	proto["files"] = files
	return []expr.Option{
		expr.Env(proto),
		expr.Timezone("UTC"),
		expr.Function("hostname", func(...any) (any, error) { return os.Hostname() }, new(func() string)),
	}
}

// stepRefRe rewrites steps.some-id into steps["some-id"]: step ids may
// contain hyphens, which member syntax would read as a minus.
var stepRefRe = regexp.MustCompile(`\bsteps\.([A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)+)`)

func normalizeExpr(code string) string {
	return stepRefRe.ReplaceAllString(code, `steps["$1"]`)
}

// exprCache compiles each distinct expression and template of a plan
// once, at load; the runner reuses them for every step and run.
type exprCache struct {
	mu    sync.Mutex
	opts  []expr.Option
	progs map[string]*vm.Program
	tpls  map[string]*Template
}

func newExprCache() *exprCache {
	return &exprCache{opts: exprOptions(), progs: map[string]*vm.Program{}, tpls: map[string]*Template{}}
}

func (c *exprCache) compile(code string) (*vm.Program, error) {
	c.mu.Lock()
	prog, ok := c.progs[code]
	c.mu.Unlock()
	if ok {
		return prog, nil
	}
	prog, err := expr.Compile(normalizeExpr(code), c.opts...)
	if err != nil {
		return nil, fmt.Errorf("expression %q: %s", code, firstLine(err.Error()))
	}
	c.mu.Lock()
	c.progs[code] = prog
	c.mu.Unlock()
	return prog, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// ParseTemplate splits s into literal text and ${{ }} expressions and
// compiles each expression.
func ParseTemplate(s string) (*Template, error) { return newExprCache().template(s) }

func (c *exprCache) template(s string) (*Template, error) {
	c.mu.Lock()
	t, ok := c.tpls[s]
	c.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := c.parseTemplate(s)
	if err == nil {
		c.mu.Lock()
		c.tpls[s] = t
		c.mu.Unlock()
	}
	return t, err
}

func (c *exprCache) parseTemplate(s string) (*Template, error) {
	t := &Template{Raw: s}
	rest := s
	for {
		i := strings.Index(rest, "${{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, tplPart{lit: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, tplPart{lit: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("unterminated ${{ in %q", s)
		}
		code := strings.TrimSpace(rest[i+3 : i+j])
		if code == "" {
			return nil, fmt.Errorf("empty ${{ }} in %q", s)
		}
		prog, err := c.compile(code)
		if err != nil {
			return nil, err
		}
		t.parts = append(t.parts, tplPart{code: code, prog: prog})
		rest = rest[i+j+2:]
	}
}

// Codes returns the expression texts of the template.
func (t *Template) Codes() []string {
	var out []string
	for _, p := range t.parts {
		if p.prog != nil {
			out = append(out, p.code)
		}
	}
	return out
}

// Eval renders the template. A single expression returns its value as is;
// otherwise the parts are concatenated as text.
func (t *Template) Eval(scope map[string]any) (any, error) {
	if t.Single() {
		v, err := expr.Run(t.parts[0].prog, scope)
		if err != nil {
			return nil, fmt.Errorf("${{ %s }}: %s", t.parts[0].code, firstLine(err.Error()))
		}
		if v == nil {
			return nil, fmt.Errorf("${{ %s }} is undefined (use `?? \"default\"` for optional values)", t.parts[0].code)
		}
		return v, nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := expr.Run(p.prog, scope)
		if err != nil {
			return nil, fmt.Errorf("${{ %s }}: %s", p.code, firstLine(err.Error()))
		}
		if v == nil {
			return nil, fmt.Errorf("${{ %s }} is undefined (use `?? \"default\"` for optional values)", p.code)
		}
		b.WriteString(FormatValue(v))
	}
	return b.String(), nil
}

// FormatValue renders an expression value as text.
func FormatValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case time.Duration:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []any, []string, map[string]any:
		b, _ := yaml.Marshal(x)
		return strings.TrimSpace(string(b))
	}
	return fmt.Sprint(v)
}

// EvalBool runs a compiled `when` expression.
func EvalBool(prog *vm.Program, code string, scope map[string]any) (bool, error) {
	v, err := expr.Run(prog, scope)
	if err != nil {
		return false, fmt.Errorf("when %q: %s", code, firstLine(err.Error()))
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("when %q: expected true or false, got %T", code, v)
	}
	return b, nil
}

// ref is one reference found in an expression: a member chain such as
// steps.dump.outputs.path, as names.
type ref []string

// references lists the member chains rooted at env, vars, run and steps,
// and the functions called.
func references(code string) (refs []ref, calls []string, err error) {
	return newExprCache().references(code)
}

func (c *exprCache) references(code string) (refs []ref, calls []string, err error) {
	prog, err := c.compile(code)
	if err != nil {
		return nil, nil, err
	}
	node := prog.Node()
	v := &refVisitor{}
	ast.Walk(&node, v)
	return v.refs, v.calls, nil
}

// refVisitor collects references; ast.Walk visits children before their
// parent, so a longer chain replaces the prefix recorded just before it.
type refVisitor struct {
	refs  []ref
	calls []string
}

func (v *refVisitor) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.CallNode:
		if id, ok := x.Callee.(*ast.IdentifierNode); ok {
			v.calls = append(v.calls, id.Value)
		}
	case *ast.MemberNode:
		if chain, ok := memberChain(x); ok {
			if len(v.refs) > 0 && len(v.refs[len(v.refs)-1]) == len(chain)-1 && prefixOf(v.refs[len(v.refs)-1], chain) {
				v.refs = v.refs[:len(v.refs)-1]
			}
			v.refs = append(v.refs, chain)
		}
	case *ast.IdentifierNode:
		switch x.Value {
		case "env", "vars", "run", "steps":
			v.refs = append(v.refs, ref{x.Value})
		}
	}
}

func prefixOf(a, b ref) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func memberChain(n ast.Node) (ref, bool) {
	switch x := n.(type) {
	case *ast.IdentifierNode:
		return ref{x.Value}, true
	case *ast.MemberNode:
		head, ok := memberChain(x.Node)
		if !ok {
			return nil, false
		}
		s, ok := x.Property.(*ast.StringNode)
		if !ok {
			return head, true
		}
		return append(head, s.Value), true
	}
	return nil, false
}

// usesStatusFunc reports whether a `when` calls success/failure/always/cancelled.
func usesStatusFunc(calls []string) bool {
	for _, c := range calls {
		for _, f := range statusFuncs {
			if c == f {
				return true
			}
		}
	}
	return false
}

// files lists the paths matching a glob, sorted by name.
func files(pattern string) ([]string, error) {
	m, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("files(%q): %v", pattern, err)
	}
	sort.Strings(m)
	return m, nil
}

// newest returns the most recently modified regular file matching a glob
// (ties: the greatest name) — "the latest backup" in restore plans. It is
// evaluated when its step runs, so it sees what earlier steps fetched.
func newest(pattern string) (string, error) {
	m, err := filepath.Glob(pattern)
	if err != nil {
		return "", fmt.Errorf("newest(%q): %v", pattern, err)
	}
	best, bestTime := "", time.Time{}
	for _, p := range m {
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || strings.HasSuffix(p, ".sha256") {
			continue
		}
		if best == "" || fi.ModTime().After(bestTime) || fi.ModTime().Equal(bestTime) && p > best {
			best, bestTime = p, fi.ModTime()
		}
	}
	if best == "" {
		return "", fmt.Errorf("newest(%q): no file matches", pattern)
	}
	return best, nil
}

// toNode converts an expression value into a YAML node for param decoding.
func toNode(v any, at *yaml.Node) (*yaml.Node, error) {
	switch x := v.(type) {
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: x, Line: at.Line, Column: at.Column}, nil
	case bool, int, int64, int32, float64, float32, uint, uint64:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: FormatValue(x), Line: at.Line, Column: at.Column}, nil
	case time.Time, time.Duration:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: FormatValue(x), Line: at.Line, Column: at.Column}, nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		n := &yaml.Node{Kind: yaml.SequenceNode, Line: at.Line, Column: at.Column}
		for i := 0; i < rv.Len(); i++ {
			c, err := toNode(rv.Index(i).Interface(), at)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		return n, nil
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode, Line: at.Line, Column: at.Column}
		keys := rv.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			c, err := toNode(rv.MapIndex(k).Interface(), at)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(k.Interface())}, c)
		}
		return n, nil
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(v), Line: at.Line, Column: at.Column}, nil
}

// Interpolate returns a copy of node with every ${{ }} scalar evaluated.
func Interpolate(node *yaml.Node, scope map[string]any) (*yaml.Node, error) {
	return newExprCache().interpolate(node, scope)
}

func (c *exprCache) interpolate(node *yaml.Node, scope map[string]any) (*yaml.Node, error) {
	return c.interpolateKnown(node, scope, nil)
}

// interpolateKnown is interpolate for a dry run: a scalar whose template
// unknown reports (it reads what only the run will produce) is left as
// written, so decoding treats it like validation does. unknown is asked
// before evaluation (evalErr nil) and again if evaluation fails.
func (c *exprCache) interpolateKnown(node *yaml.Node, scope map[string]any, unknown func(t *Template, evalErr error) bool) (*yaml.Node, error) {
	if node == nil {
		return nil, nil
	}
	if node.Kind == yaml.AliasNode {
		return c.interpolateKnown(node.Alias, scope, unknown)
	}
	if node.Kind == yaml.ScalarNode {
		if !hasExpr(node.Value) {
			return node, nil
		}
		t, err := c.template(node.Value)
		if err != nil {
			return nil, err
		}
		if unknown != nil && unknown(t, nil) {
			return node, nil
		}
		v, err := t.Eval(scope)
		if err != nil {
			if unknown != nil && unknown(t, err) {
				return node, nil
			}
			return nil, err
		}
		return toNode(v, node)
	}
	cp := *node
	cp.Content = make([]*yaml.Node, len(node.Content))
	for i, child := range node.Content {
		ic, err := c.interpolateKnown(child, scope, unknown)
		if err != nil {
			return nil, err
		}
		cp.Content[i] = ic
	}
	return &cp, nil
}
