package pgsnap

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Key is the manifest's count key of a table: rows:<schema>.<table>, with
// the names as they are (not quoted, case kept).
func Key(schema, table string) string { return "rows:" + schema + "." + table }

// SplitName reads "schema.table" (literal names, split at the first dot: a
// dot is likelier in a table name than in a schema name) or "table" (in
// public); a leading "rows:" (a manifest key) is dropped.
func SplitName(name string) (schema, table string) {
	name = strings.TrimPrefix(name, "rows:")
	if s, t, ok := strings.Cut(name, "."); ok {
		return s, t
	}
	return "public", name
}

// Ident quotes one identifier.
func Ident(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// CountSQL counts the rows of one table.
func CountSQL(schema, table string) string {
	return "SELECT pg_catalog.count(*) FROM " + Ident(schema) + "." + Ident(table) + ";"
}

// ParseTables reads the JSON line Selection.Query prints.
func ParseTables(lines []string) ([][2]string, error) {
	if len(lines) != 1 {
		return nil, fmt.Errorf("table list: expected one line, got %d", len(lines))
	}
	var pairs [][2]string
	if err := json.Unmarshal([]byte(lines[0]), &pairs); err != nil {
		return nil, fmt.Errorf("table list: %w", err)
	}
	return pairs, nil
}

// ParseCounts pairs the lines printed by one CountSQL per table with the
// tables' keys.
func ParseCounts(tables [][2]string, lines []string) (map[string]int64, error) {
	if len(lines) != len(tables) {
		return nil, fmt.Errorf("expected %d counts, psql printed %d lines", len(tables), len(lines))
	}
	out := make(map[string]int64, len(tables))
	for i, t := range tables {
		n, err := strconv.ParseInt(strings.TrimSpace(lines[i]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %q is not a count", t[0], t[1], lines[i])
		}
		out[Key(t[0], t[1])] = n
	}
	return out, nil
}
