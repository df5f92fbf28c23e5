package engine

import (
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// LoadMonitors reads what is valid of a plan that does not load, so that
// apply can tell its monitors: the name, env files, secrets, vars and the
// monitors that have no problem of their own (none between their first
// and last line). It returns nil when the file cannot be parsed as YAML
// or no monitor survives.
func LoadMonitors(path string, reg *Registry) *Plan {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	l := &loader{file: path, reg: reg, exprs: newExprCache()}
	p := l.load(data)
	if p == nil {
		return nil
	}
	var keep []*Step
	for _, m := range p.Monitor {
		if m.Type == nil || !m.Type.Monitor {
			continue
		}
		first, last := m.Line, lastLine(m.With, m.Line)
		clean := true
		for _, pr := range l.probs {
			if pr.Line >= first && pr.Line <= last {
				clean = false
				break
			}
		}
		if clean {
			keep = append(keep, m)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	p.Monitor, p.Steps, p.File = keep, nil, path
	if p.Name == "" || strings.ContainsAny(p.Name, "/\x00") {
		p.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	return p
}

// lastLine is the last line of n's subtree (at least from).
func lastLine(n *yaml.Node, from int) int {
	if n == nil {
		return from
	}
	last := max(from, n.Line)
	for _, c := range n.Content {
		last = lastLine(c, last)
	}
	return last
}
