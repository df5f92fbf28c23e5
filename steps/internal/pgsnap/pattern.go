// Package pgsnap holds what pg_dump's row counts need: a psql child that
// keeps one transaction open (Session), and the catalog query that lists the
// tables whose rows a pg_dump with given options contains (Selection).
package pgsnap

import (
	"fmt"
	"strings"
)

// namePattern is one pg_dump/psql name pattern split at its unquoted dots,
// each part turned into an anchored POSIX regex the way psql's
// patternToSQLRegex does it (fe_utils/string_utils.c): unquoted letters fold
// to lower case, * is .*, ? is ., "..." quotes literally, $ is literal, other
// regex characters pass through outside quotes.
type namePattern struct {
	parts []string // ^(...)$ regexes, outermost (database) first
}

func parsePattern(pattern string) namePattern {
	var parts []string
	var cur strings.Builder
	inquotes := false
	for i := 0; i < len(pattern); {
		ch := pattern[i]
		switch {
		case ch == '"':
			if inquotes && i+1 < len(pattern) && pattern[i+1] == '"' {
				cur.WriteByte('"')
				i += 2
				continue
			}
			inquotes = !inquotes
		case !inquotes && ch >= 'A' && ch <= 'Z':
			cur.WriteByte(ch + ('a' - 'A'))
		case !inquotes && ch == '*':
			cur.WriteString(".*")
		case !inquotes && ch == '?':
			cur.WriteByte('.')
		case !inquotes && ch == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		case ch == '$':
			cur.WriteString(`\$`)
		default:
			if inquotes && strings.IndexByte(`|*+?()[]{}.^$\`, ch) >= 0 {
				cur.WriteByte('\\')
			} else if ch == '[' && i+1 < len(pattern) && pattern[i+1] == ']' {
				cur.WriteByte('\\')
			}
			cur.WriteByte(ch)
		}
		i++
	}
	parts = append(parts, cur.String())
	for i, p := range parts {
		parts[i] = "^(" + p + ")$"
	}
	return namePattern{parts: parts}
}

// sqlString quotes s as an escape-string literal (E-prefixed), whatever
// standard_conforming_strings is.
func sqlString(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

func regexMatch(col, re string) string {
	return col + " OPERATOR(pg_catalog.~) " + sqlString(re) + " COLLATE pg_catalog.default"
}

// schemaCond is the SQL condition (over n.nspname) of a schema pattern.
func schemaCond(pattern string) (string, error) {
	np := parsePattern(pattern)
	if len(np.parts) > 2 { // database.schema at most
		return "", fmt.Errorf("schema pattern %q: improper qualified name (too many dotted names)", pattern)
	}
	return regexMatch("n.nspname", np.parts[len(np.parts)-1]), nil
}

// tableCond is the SQL condition (over c and n) of a table pattern; an
// unqualified one matches the tables visible in the search_path, as
// pg_dump's --table does.
func tableCond(pattern string) (string, error) {
	np := parsePattern(pattern)
	switch len(np.parts) {
	case 1:
		return "(" + regexMatch("c.relname", np.parts[0]) + " AND pg_catalog.pg_table_is_visible(c.oid))", nil
	case 2, 3:
		n := len(np.parts)
		return "(" + regexMatch("c.relname", np.parts[n-1]) + " AND " + regexMatch("n.nspname", np.parts[n-2]) + ")", nil
	}
	return "", fmt.Errorf("table pattern %q: improper qualified name (too many dotted names)", pattern)
}
