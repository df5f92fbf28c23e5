package tarball

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Matcher applies exclude globs with GNU tar's default semantics for
// --exclude: `*` and `?` also match "/", and a pattern matches if it
// matches the whole path or any trailing run of its components. So
// "*.sock" excludes sockets at any depth and "*/cache/*" everything under
// any directory named cache; an excluded directory is not descended into.
type Matcher struct {
	res []*regexp.Regexp
}

// NewMatcher compiles the globs (syntax of path.Match).
func NewMatcher(globs []string) (*Matcher, error) {
	m := &Matcher{}
	for _, g := range globs {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", g, err)
		}
		re, err := regexp.Compile("^" + globToRegexp(strings.TrimSuffix(g, "/")) + "$")
		if err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", g, err)
		}
		m.res = append(m.res, re)
	}
	return m, nil
}

// globToRegexp translates a validated glob; `*` and `?` cross "/".
func globToRegexp(g string) string {
	var b strings.Builder
	for i := 0; i < len(g); i++ {
		switch c := g[i]; c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '\\':
			if i+1 < len(g) {
				i++
				b.WriteString(regexp.QuoteMeta(string(g[i])))
			}
		case '[':
			j := strings.IndexByte(g[i+1:], ']')
			if j < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := g[i+1 : i+1+j]
			if strings.HasPrefix(class, "^") {
				class = "^" + strings.ReplaceAll(class[1:], `\`, `\\`)
			} else {
				class = strings.ReplaceAll(class, `\`, `\\`)
			}
			b.WriteString("[" + class + "]")
			i += j + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return b.String()
}

// Match reports whether a file (by filesystem path or member name) is excluded.
func (m *Matcher) Match(fsPath, name string) bool {
	if m == nil || len(m.res) == 0 {
		return false
	}
	for _, cand := range []string{fsPath, name} {
		for s := cand; ; {
			for _, re := range m.res {
				if re.MatchString(s) {
					return true
				}
			}
			i := strings.IndexByte(s, '/')
			if i < 0 {
				break
			}
			s = s[i+1:]
		}
	}
	return false
}
