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
	var environ []string
	if path, ok := env["PATH"]; ok {
		environ = []string{"PATH=" + path}
	}
	seen := map[string]bool{}
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
			if seen[tool] || strings.Contains(tool, "${{") {
				continue
			}
			seen[tool] = true
			if _, err := LookPath(tool, environ); err != nil {
				probs = append(probs, Problem{File: p.File, Line: s.Line, Col: s.Col,
					Msg: fmt.Sprintf("step %q (%s): %v", s.ID, s.TypeName, err)})
			}
		}
	}
	if len(probs) > 0 {
		probs.sort()
		return probs
	}
	return nil
}
