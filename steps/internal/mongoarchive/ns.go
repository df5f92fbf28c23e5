package mongoarchive

// Namespace patterns as mongorestore's --nsInclude/--nsFrom/--nsTo read
// them: '*' matches anything, $name$ names a variable (from/to pairs), '\'
// escapes. Ported from mongo-tools' mongorestore/ns (Apache-2.0) so a
// restore can map the namespaces it restored back to the names the backup
// gave them, exactly as mongorestore mapped them forward.

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

var (
	unescapeReplacer = strings.NewReplacer(`\\`, `\`, `\*`, "*", `\`, "")
	wildCardRE       = regexp.MustCompile(`(?s)^(|.*[^\\])\*(.*)$`)
	variableRE       = regexp.MustCompile(`(?s)^\$([^\$]*)\$(.*)$`)
)

const escapedChars = `*[](){}\?$^+!.|`

// Escape makes s match itself literally in a pattern.
func Escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "*", `\*`)
}

// Literal reports whether pattern matches exactly one name (no wildcard,
// variable or escape), and returns that name.
func Literal(pattern string) (string, bool) {
	if strings.ContainsAny(pattern, `*$\`) {
		return "", false
	}
	return pattern, true
}

func replaceWildCards(in string) string {
	count := 1
	for m := wildCardRE.FindStringSubmatch(in); len(m) > 2; m = wildCardRE.FindStringSubmatch(in) {
		in = fmt.Sprintf("%s$%d$%s", m[1], count, m[2])
		count++
	}
	return unescapeReplacer.Replace(in)
}

func countAsterisks(in string) int { return strings.Count(in, "*") - strings.Count(in, `\*`) }

func compile(from, to string) (*regexp.Regexp, string, error) {
	if strings.Contains(from, "$") {
		if strings.Count(from, "$")%2 != 0 || strings.Count(to, "$")%2 != 0 {
			return nil, "", fmt.Errorf("odd number of dollar signs in %q or %q", from, to)
		}
	} else {
		if countAsterisks(from) != countAsterisks(to) {
			return nil, "", fmt.Errorf("different number of asterisks in %q and %q", from, to)
		}
		from, to = replaceWildCards(from), replaceWildCards(to)
	}
	vars := map[string]int{}
	var matcher strings.Builder
	for len(from) > 0 {
		if m := variableRE.FindStringSubmatch(from); len(m) == 3 {
			if _, dup := vars[m[1]]; dup {
				return nil, "", fmt.Errorf("variable %q used more than once", m[1])
			}
			vars[m[1]] = len(vars) + 1
			matcher.WriteString("(.*?)")
			from = m[2]
			continue
		}
		c, w := utf8.DecodeRuneInString(from)
		if c == '$' {
			return nil, "", fmt.Errorf("extraneous '$'")
		}
		if strings.ContainsRune(escapedChars, c) {
			matcher.WriteByte('\\')
		}
		matcher.WriteRune(c)
		from = from[w:]
	}
	re, err := regexp.Compile("(?s)^" + matcher.String() + "$")
	if err != nil {
		return nil, "", err
	}
	var repl strings.Builder
	for len(to) > 0 {
		if m := variableRE.FindStringSubmatch(to); len(m) == 3 {
			n, ok := vars[m[1]]
			if !ok {
				return nil, "", fmt.Errorf("unknown variable %q", m[1])
			}
			fmt.Fprintf(&repl, "${%d}", n)
			to = m[2]
			continue
		}
		c, w := utf8.DecodeRuneInString(to)
		if c == '$' {
			return nil, "", fmt.Errorf("extraneous '$'")
		}
		repl.WriteRune(c)
		to = to[w:]
	}
	return re, repl.String(), nil
}

// Renamer maps namespaces as mongorestore does with --nsFrom/--nsTo: the
// last matching pair wins; a namespace no pair matches keeps its name.
type Renamer struct {
	res   []*regexp.Regexp
	repls []string
}

// NewRenamer compiles from/to pairs.
func NewRenamer(from, to []string) (*Renamer, error) {
	if len(from) != len(to) {
		return nil, fmt.Errorf("%d from patterns, %d to patterns", len(from), len(to))
	}
	r := &Renamer{}
	for i := len(from) - 1; i >= 0; i-- {
		re, repl, err := compile(from[i], to[i])
		if err != nil {
			return nil, fmt.Errorf("rename %q to %q: %w", from[i], to[i], err)
		}
		r.res = append(r.res, re)
		r.repls = append(r.repls, repl)
	}
	return r, nil
}

// Get returns the renamed namespace.
func (r *Renamer) Get(name string) string {
	for i, re := range r.res {
		if re.MatchString(name) {
			return re.ReplaceAllString(name, r.repls[i])
		}
	}
	return name
}
