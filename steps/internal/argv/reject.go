package argv

import (
	"fmt"
	"strings"
)

// Reject refuses extra arguments (the param named param) that would break
// the step's contract: output location, format, secrets on the command
// line. Abbreviations count too: getopt_long takes "--fil=x" for "--file=x".
func Reject(param string, args []string, bad ...string) error {
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		for _, b := range bad {
			long := strings.HasPrefix(b, "--")
			if a == b || strings.HasPrefix(a, b+"=") ||
				(long && len(name) > 2 && strings.HasPrefix(b, name)) ||
				(!long && strings.HasPrefix(a, b) && !strings.HasPrefix(a, "--")) {
				return fmt.Errorf("%s: %q is set by the step itself (or would expose a secret)", param, a)
			}
		}
	}
	return nil
}
