// Package childenv edits KEY=VALUE environment lists for child processes.
package childenv

import "strings"

// Set returns a copy of environ with name set to value (any earlier
// entries of name removed, so no duplicate can shadow it).
func Set(environ []string, name, value string) []string {
	return append(Unset(environ, name), name+"="+value)
}

// Unset returns a copy of environ without any entry for the names.
func Unset(environ []string, names ...string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			if k == n {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}
