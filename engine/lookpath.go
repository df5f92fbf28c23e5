package engine

import (
	"fmt"
	"os/exec"
	"strings"
)

// LookPath resolves a program a step runs the way its child process will
// find it: on the PATH of environ (the step's child environment, where env
// files may set PATH), then on planrun's own PATH. validate --strict and
// the steps' process runner both use it, so they cannot disagree.
func LookPath(name string, environ []string) (string, error) {
	if strings.Contains(name, "/") {
		if _, err := exec.LookPath(name); err != nil {
			return "", fmt.Errorf("%s: not an executable file", name)
		}
		return name, nil
	}
	if p, ok := LookupEnv(environ, "PATH"); ok {
		for _, dir := range strings.Split(p, ":") {
			if dir == "" {
				continue
			}
			if path, err := exec.LookPath(dir + "/" + name); err == nil {
				return path, nil
			}
		}
	}
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	return "", fmt.Errorf("%s: executable not found in PATH (is it installed?)", name)
}
