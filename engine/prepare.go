package engine

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// Invocation is what the operator passes besides the plan.
type Invocation struct {
	// Environ is the process environment (os.Environ()).
	Environ []string
	// EnvFiles, when given (--env-file), replace the plan's env_files: the
	// plan names the production files, an operator or a test points
	// elsewhere.
	EnvFiles []string
	// AllowLoosePerms downgrades the env-file permission check to a warning.
	AllowLoosePerms bool
	// Vars are --var name=value overrides (literal strings).
	Vars map[string]string
	// Host names this machine in run records and locks (PLANRUN_HOST);
	// "" for os.Hostname().
	Host string
}

// Scope is the evaluated context of one run: environment, vars and the
// redactor that knows every secret found in them.
type Scope struct {
	RunID    string // the run's id (a UUID), known to vars as run.id
	Host     string
	Environ  []string          // for child processes
	Env      map[string]string // env.* in expressions
	Vars     map[string]any
	Secrets  *Redactor
	Warnings []string
	Started  time.Time
	// EnvFiles are the env files read (the plan's, or --env-file's).
	EnvFiles []string

	envAny map[string]any // env for expressions, built once
}

// Prepare loads env files, finds secrets and evaluates vars. It runs
// nothing and writes nothing.
func Prepare(p *Plan, inv Invocation) (*Scope, error) {
	return prepare(p, inv, false)
}

// prepareLenient is Prepare for a run that cannot start: env files and
// vars that fail are left out (the monitors may not need them), so the
// failure can still be signalled.
func prepareLenient(p *Plan, inv Invocation) *Scope {
	s, _ := prepare(p, inv, true)
	return s
}

func prepare(p *Plan, inv Invocation, lenient bool) (*Scope, error) {
	s := &Scope{RunID: NewRunID(), Secrets: NewRedactor(), Started: time.Now().UTC()}
	s.Host = inv.Host
	if s.Host == "" {
		s.Host, _ = os.Hostname()
	}
	if err := PlanFileSafe(p.File, os.Geteuid()); err != nil && !lenient {
		return nil, err
	}
	env, warns, errs := childEnv(p, inv)
	if len(errs) > 0 && !lenient {
		return nil, errs[0]
	}
	s.EnvFiles = p.EnvFiles
	if len(inv.EnvFiles) > 0 {
		s.EnvFiles = inv.EnvFiles
	}
	s.Env, s.Warnings = env, warns
	names := make([]string, 0, len(s.Env))
	for k := range s.Env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		s.Environ = append(s.Environ, k+"="+s.Env[k])
	}
	// env is map[string]any so that an unset name is nil: `?? "default"`
	// works, and interpolating it is an error rather than an empty string.
	s.envAny = make(map[string]any, len(s.Env))
	for k, v := range s.Env {
		s.envAny[k] = v
	}
	s.Secrets.AddEnv(s.Environ)
	for _, name := range p.Secrets {
		if v := s.Env[name]; v != "" {
			s.Secrets.Add(v)
		}
	}

	for name := range inv.Vars {
		if !hasVar(p, name) && !lenient {
			return nil, fmt.Errorf("--var %s: the plan has no var %q", name, name)
		}
	}
	s.Vars = map[string]any{}
	scope := s.exprScope(map[string]any{"id": s.RunID, "plan": p.Name, "host": s.Host, "started": s.Started}, nil)
	for _, v := range p.Vars {
		if val, ok := inv.Vars[v.Name]; ok {
			s.Vars[v.Name] = val
			continue
		}
		n, err := p.exprs.interpolate(v.Value, scope)
		if err != nil && lenient {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d:%d: vars.%s: %s", p.File, v.Line, v.Col, v.Name, s.Secrets.Redact(err.Error()))
		}
		var val any
		if err := n.Decode(&val); err != nil && !lenient {
			return nil, fmt.Errorf("%s:%d:%d: vars.%s: %v", p.File, v.Line, v.Col, v.Name, err)
		}
		s.Vars[v.Name] = val
	}
	return s, nil
}

// childEnv is the environment of the run's child processes: inv.Environ
// with the env files (inv.EnvFiles, else the plan's) over it, or under it
// with env_precedence: process. It reports every env file it cannot use.
func childEnv(p *Plan, inv Invocation) (env map[string]string, warnings []string, errs []error) {
	var fileVars []EnvVar
	envFiles := p.EnvFiles
	if len(inv.EnvFiles) > 0 {
		envFiles = inv.EnvFiles
	}
	for _, f := range envFiles {
		vars, warns, err := LoadEnvFile(f, inv.AllowLoosePerms)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		warnings = append(warnings, warns...)
		fileVars = append(fileVars, vars...)
	}
	env = map[string]string{}
	for _, kv := range inv.Environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for _, v := range fileVars {
		if _, inProcess := env[v.Key]; inProcess && p.EnvPrecedence == "process" {
			continue
		}
		env[v.Key] = v.Value
	}
	return env, warnings, errs
}

func hasVar(p *Plan, name string) bool {
	for _, v := range p.Vars {
		if v.Name == name {
			return true
		}
	}
	return false
}

// exprScope builds the expression environment. run and steps may be nil.
func (s *Scope) exprScope(run map[string]any, steps map[string]any) map[string]any {
	if run == nil {
		run = map[string]any{}
	}
	if steps == nil {
		steps = map[string]any{}
	}
	no := func() bool { return false }
	return map[string]any{
		"env": s.envAny, "vars": s.Vars, "run": run, "steps": steps,
		"success": no, "failure": no, "always": func() bool { return true }, "cancelled": no,
		"newest": newest, "files": files,
	}
}
