// Package testenv gives integration tests the real services started by
// scripts/testenv.sh (which exports their addresses as environment
// variables). Outside CI a missing service skips the test; with CI=true it
// fails it, so CI can never go green without the real servers.
package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return strings.EqualFold(os.Getenv("CI"), "true") }

// Require returns the values of the named environment variables, or stops
// the test: Skip locally, Fatal under CI. what names the service for the message.
func Require(t testing.TB, what string, names ...string) map[string]string {
	t.Helper()
	vals := map[string]string{}
	var missing []string
	for _, n := range names {
		v, ok := os.LookupEnv(n)
		if !ok || v == "" {
			missing = append(missing, n)
			continue
		}
		vals[n] = v
	}
	if len(missing) > 0 {
		msg := what + " not available: " + strings.Join(missing, ", ") +
			" unset (start it with: eval \"$(scripts/testenv.sh start)\")"
		if InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return vals
}

// RequireTool stops the test when a program is not on PATH (Skip locally,
// Fatal under CI) and returns its path.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if InCI() {
			t.Fatalf("%s not installed: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}
