package engine

import (
	"fmt"
	"os/exec"
)

// CheckStrict checks what validate --strict adds: env files exist and are
// private, and every step's tools are on PATH.
func CheckStrict(p *Plan) error {
	var probs Problems
	for _, f := range p.EnvFiles {
		if _, _, err := LoadEnvFile(f, false); err != nil {
			probs = append(probs, Problem{File: p.File, Msg: "env_files: " + err.Error()})
		}
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
			if _, err := exec.LookPath(tool); err != nil {
				probs = append(probs, Problem{File: p.File, Line: s.Line, Col: s.Col,
					Msg: fmt.Sprintf("step %q (%s): %s not found on PATH", s.ID, s.TypeName, tool)})
			}
		}
	}
	if len(probs) > 0 {
		probs.sort()
		return probs
	}
	return nil
}
