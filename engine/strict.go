package engine

import (
	"fmt"
	"strings"
)

// HostToolser is implemented by params whose tools may run elsewhere than
// on the host, e.g. inside a container: when moved is true, the host needs
// the returned programs (the container engine) instead of the tool params.
type HostToolser interface {
	HostTools(environ []string) (tools []string, moved bool)
}

// CheckStrict checks what validate --strict adds: env files exist and are
// private, and every step's tools are found on the PATH its child process
// gets (the environment and env files of inv, merged as apply merges them).
func CheckStrict(p *Plan, inv Invocation) error {
	var probs Problems
	env, _, errs := childEnv(p, inv)
	for _, err := range errs {
		probs = append(probs, Problem{File: p.File, Msg: "env_files: " + err.Error()})
	}
	seen := map[string]bool{}
	for _, u := range planTools(p, env) {
		if seen[u.tool] {
			continue
		}
		seen[u.tool] = true
		if u.err != nil {
			probs = append(probs, Problem{File: p.File, Line: u.step.Line, Col: u.step.Col,
				Msg: fmt.Sprintf("step %q (%s): %v", u.step.ID, u.step.TypeName, u.err)})
		}
	}
	if len(probs) > 0 {
		probs.sort()
		return probs
	}
	return nil
}

// toolUse is one program a step runs, resolved as apply resolves it.
type toolUse struct {
	step *Step
	tool string // as the params name it
	path string // where it was found
	err  error  // not found
}

// planTools lists the programs every step and monitor runs, found on the
// PATH of env (the step's child environment, see LookPath): what validate
// --strict and preflight check.
func planTools(p *Plan, env map[string]string) []toolUse {
	var environ []string
	if path, ok := env["PATH"]; ok {
		environ = []string{"PATH=" + path}
	}
	var out []toolUse
	for _, s := range append(append([]*Step(nil), p.Steps...), p.Monitor...) {
		if s.Type == nil {
			continue
		}
		// The programs the step's params name (pg_dump: /usr/lib/postgresql/16/bin/pg_dump),
		// else the type's defaults; one decided by an expression is known only at run time.
		tools := s.Type.Tools
		if params, probs := s.Type.Decode(s.With, true); len(probs) == 0 {
			tools = s.Type.ToolValues(params)
			if r, ok := params.(HostToolser); ok {
				if host, moved := r.HostTools(environ); moved {
					tools = host
				}
			}
		}
		for _, tool := range tools {
			if strings.Contains(tool, "${{") {
				continue
			}
			path, err := LookPath(tool, environ)
			out = append(out, toolUse{step: s, tool: tool, path: path, err: err})
		}
	}
	return out
}
