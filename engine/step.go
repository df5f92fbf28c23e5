package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"

	"gopkg.in/yaml.v3"
)

// Kind classifies a step type for the safety interlock: a destructive step
// does not run after a backup step of the same run has failed.
type Kind int

const (
	KindOther       Kind = iota
	KindBackup           // produces a backup artifact or snapshot
	KindDestructive      // deletes data: retention, prune, sync with deletes
)

func (k Kind) String() string {
	switch k {
	case KindBackup:
		return "backup"
	case KindDestructive:
		return "destructive"
	}
	return "other"
}

// Output documents one output a step type produces.
type Output struct {
	Name string
	Doc  string
}

// Outputs are the values a step hands to later steps as steps.<id>.outputs.<name>.
type Outputs map[string]any

// Stats are counters a step updates while it runs; the runner records them.
type Stats struct {
	BytesIn  atomic.Int64 // bytes read from the source (before compression/encryption)
	BytesOut atomic.Int64 // bytes written to artifacts or sent
}

// Env is what a running step sees besides its params.
type Env struct {
	RunID    string
	PlanName string
	StepID   string
	DryRun   bool
	// Environ is the environment for child processes: the process
	// environment merged with the plan's env files.
	Environ []string
	// Log is the step's logger; whatever it writes is redacted.
	Log *slog.Logger
	// Secrets redacts known secret values; steps add secrets they discover.
	Secrets *Redactor
	Stats   *Stats
	// Progress counts the bytes streamed (see Progress for who reports
	// them); nil counts nothing.
	Progress *Progress

	tempDir   string
	artifacts []*ArtifactRecord
	runInfo   func() Manifest
}

// TempDir returns a private (0700) directory for this attempt, created on
// first use and removed when the attempt ends: the place for password
// files and tool configs that must not reach argv.
func (e *Env) TempDir() (string, error) {
	if e.tempDir == "" {
		dir, err := os.MkdirTemp("", "planrun-"+strings.ReplaceAll(e.StepID, "/", "_")+"-")
		if err != nil {
			return "", fmt.Errorf("temp dir: %w", err)
		}
		e.tempDir = dir
	}
	return e.tempDir, nil
}

// Cleanup removes the attempt's temp dir, if one was made.
func (e *Env) Cleanup() {
	if e.tempDir != "" {
		os.RemoveAll(e.tempDir)
		e.tempDir = ""
	}
}

// Getenv looks a name up in Environ (last entry wins, like the process env).
func (e *Env) Getenv(name string) string {
	v, _ := LookupEnv(e.Environ, name)
	return v
}

// LookupEnv finds name in a KEY=VALUE list; the last entry wins.
func LookupEnv(environ []string, name string) (string, bool) {
	for i := len(environ) - 1; i >= 0; i-- {
		kv := environ[i]
		if len(kv) > len(name) && kv[len(name)] == '=' && kv[:len(name)] == name {
			return kv[len(name)+1:], true
		}
	}
	return "", false
}

// Def declares a step type once: its name, docs, params struct P (whose
// tags drive validation, docs, the JSON schema and redaction), outputs and
// behaviour. Type erases it for the Registry.
type Def[P any] struct {
	Name    string
	Summary string // one line, shown by `planrun steps`
	Doc     string // optional longer text
	Kind    Kind
	// KindOf, when set, gives the kind of one step from its params, for
	// types whose steps differ (http-get saving an artifact vs a health
	// check); Kind is then the type's most dangerous kind, shown in docs.
	KindOf  func(p *P) Kind
	Outputs []Output
	Example string // YAML of a `with:` block; must decode
	// Monitor lets the type serve as a plan's monitor: the engine runs it
	// at the start and the end of a run, setting its MonitorParams.
	Monitor bool
	// Preview describes, without any side effect, what Run would do: the
	// command lines it would run and the files it would write (dry-run).
	Preview func(env *Env, p *P) []string
	// Inverse, on a backup type, says how its artifacts are restored
	// (planrun restore and drill derive restore plans from it).
	Inverse *Inverse
	Run     func(ctx context.Context, env *Env, p *P) (Outputs, error)
}

// MonitorParams are the params the engine sets on a monitor step: what to
// signal (start, success, fail), the run's exit code and its log tail.
var MonitorParams = []string{"signal", "exit_code", "body"}

// Type is a step type with its params erased; built by Def.Type.
type Type struct {
	Name    string
	Summary string
	Doc     string
	Kind    Kind
	Outputs []Output
	Example string
	// Tools are the programs the step runs by default: the defaults of
	// the params tagged tool (validate --strict checks the values a plan
	// gives).
	Tools   []string
	Monitor bool
	Params  *Spec
	Inverse *Inverse

	newParams func() any
	kindOf    func(p any) Kind
	preview   func(env *Env, p any) []string
	run       func(ctx context.Context, env *Env, p any) (Outputs, error)
}

// Type builds the erased step type. It panics on a malformed params struct:
// that is a programming error caught by the registry tests.
func (d Def[P]) Type() *Type {
	var zero P
	spec, err := SpecOf(reflect.TypeOf(zero))
	if err != nil {
		panic(fmt.Sprintf("step type %s: %v", d.Name, err))
	}
	if d.Monitor {
		for _, name := range MonitorParams {
			if spec.Lookup(name) == nil {
				panic(fmt.Sprintf("step type %s: a monitor type needs a %q param", d.Name, name))
			}
		}
	}
	t := &Type{
		Name: d.Name, Summary: d.Summary, Doc: d.Doc, Kind: d.Kind, Monitor: d.Monitor,
		Outputs: d.Outputs, Example: d.Example, Tools: spec.ToolDefaults(), Params: spec, Inverse: d.Inverse,
		newParams: func() any { return new(P) },
		run: func(ctx context.Context, env *Env, p any) (Outputs, error) {
			return d.Run(ctx, env, p.(*P))
		},
	}
	if d.KindOf != nil {
		t.kindOf = func(p any) Kind { return d.KindOf(p.(*P)) }
	}
	if d.Preview != nil {
		t.preview = func(env *Env, p any) []string { return d.Preview(env, p.(*P)) }
	}
	return t
}

// HasOutput reports whether the type declares an output of that name.
func (t *Type) HasOutput(name string) bool {
	for _, o := range t.Outputs {
		if o.Name == name {
			return true
		}
	}
	return false
}

// KindFor is the kind of a step with params p (from t.Decode): what the
// safety interlock should use.
func (t *Type) KindFor(p any) Kind {
	if t.kindOf == nil || p == nil {
		return t.Kind
	}
	return t.kindOf(p)
}

// MayBackup reports whether a step of this type can be a backup step (for
// the interlock when its params cannot even be decoded).
func (t *Type) MayBackup() bool { return t.Kind == KindBackup || t.kindOf != nil }

// Run decodes nothing: p must come from t.Decode.
func (t *Type) Run(ctx context.Context, env *Env, p any) (Outputs, error) {
	return t.run(ctx, env, p)
}

// Preview returns the dry-run description of what Run would do.
func (t *Type) Preview(env *Env, p any) []string {
	if t.preview == nil {
		return nil
	}
	return t.preview(env, p)
}

// Registry is the set of step types a plan may use.
type Registry struct {
	types   map[string]*Type
	retired map[string]func(with *yaml.Node) string
}

// NewRegistry builds a registry; duplicate names are a programming error.
func NewRegistry(types ...*Type) *Registry {
	r := &Registry{types: map[string]*Type{}}
	for _, t := range types {
		if _, dup := r.types[t.Name]; dup {
			panic("duplicate step type " + t.Name)
		}
		r.types[t.Name] = t
	}
	return r
}

// Retire names a step type that no longer exists, so a plan still using it
// gets the replacement instead of "unknown step type". hint is given the
// step's `with:` (possibly nil) so it can name the exact new form.
func (r *Registry) Retire(name string, hint func(with *yaml.Node) string) {
	if r.retired == nil {
		r.retired = map[string]func(*yaml.Node) string{}
	}
	r.retired[name] = hint
}

// RetiredHint says what replaces a retired type ("" when name was never retired).
func (r *Registry) RetiredHint(name string, with *yaml.Node) string {
	if h := r.retired[name]; h != nil {
		return h(with)
	}
	return ""
}

// Lookup returns the named type or nil.
func (r *Registry) Lookup(name string) *Type { return r.types[name] }

// Names returns the type names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.types))
	for n := range r.types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validator is implemented by params structs with cross-field rules.
type Validator interface {
	Validate() error
}

// Decode builds a params value from a `with:` node (see Spec.Decode) and
// runs its Validate method when decoding found no problem.
func (t *Type) Decode(with *yaml.Node, deferExprs bool) (any, []Problem) {
	p := t.newParams()
	probs := t.Params.Decode(with, reflect.ValueOf(p), deferExprs)
	if len(probs) == 0 {
		if v, ok := p.(Validator); ok {
			if err := v.Validate(); err != nil {
				line, col := 0, 0
				if with != nil {
					line, col = with.Line, with.Column
				}
				probs = append(probs, Problem{Line: line, Col: col, Msg: err.Error()})
			}
		}
	}
	return p, probs
}

// ToolValues lists the programs a step with params p runs.
func (t *Type) ToolValues(p any) []string {
	return t.Params.ToolValues(reflect.ValueOf(p))
}

// SecretValues lists the values of the params tagged secret in p.
func (t *Type) SecretValues(p any) []string {
	return t.Params.SecretValues(reflect.ValueOf(p))
}
