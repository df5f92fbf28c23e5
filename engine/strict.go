package engine

import "fmt"

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
		for _, tool := range s.Type.Tools {
			if seen[tool] {
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
