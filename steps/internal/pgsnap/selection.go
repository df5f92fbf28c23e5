package pgsnap

import (
	"fmt"
	"sort"
	"strings"
)

// Selection is the part of pg_dump's options that decides which tables'
// rows a dump holds.
type Selection struct {
	Schemas, ExcludeSchemas             []string
	Tables, TablesAndChildren           []string
	ExcludeTables, ExcludeTablesAndKids []string
	ExcludeData, ExcludeDataAndKids     []string
	// NoData: the dump holds no table data (--schema-only, --no-data,
	// --statistics-only, --section without data).
	NoData bool
	// NoUnlogged: --no-unlogged-table-data.
	NoUnlogged bool
	// RowSecurity: --enable-row-security (pg_dump dumps only the rows the
	// role sees; the counts must then see the same).
	RowSecurity bool
}

// pg_dump's short options ("x:" takes a value), PostgreSQL 12 to 18.
const shortOpts = "abBcCd:e:E:f:F:h:j:n:N:Op:RsS:t:T:U:vwWxZ:"

// pg_dump's long options and whether they take a value, PostgreSQL 12 to
// 18: enough to resolve getopt_long abbreviations and skip values.
var longOpts = map[string]bool{
	"compress": true, "dbname": true, "encoding": true, "exclude-extension": true,
	"exclude-schema": true, "exclude-table": true, "exclude-table-and-children": true,
	"exclude-table-data": true, "exclude-table-data-and-children": true, "extension": true,
	"extra-float-digits": true, "file": true, "filter": true, "format": true, "host": true,
	"include-foreign-data": true, "jobs": true, "lock-wait-timeout": true, "port": true,
	"role": true, "rows-per-insert": true, "schema": true, "section": true, "snapshot": true,
	"superuser": true, "sync-method": true, "table": true, "table-and-children": true, "username": true,

	"attribute-inserts": false, "binary-upgrade": false, "blobs": false, "clean": false,
	"column-inserts": false, "create": false, "data-only": false, "disable-dollar-quoting": false,
	"disable-triggers": false, "enable-row-security": false, "help": false, "if-exists": false,
	"inserts": false, "large-objects": false, "load-via-partition-root": false, "no-acl": false,
	"no-blobs": false, "no-comments": false, "no-data": false, "no-large-objects": false,
	"no-owner": false, "no-password": false, "no-policies": false, "no-privileges": false,
	"no-publications": false, "no-reconnect": false, "no-schema": false, "no-security-labels": false,
	"no-statistics": false, "no-subscriptions": false, "no-sync": false,
	"no-synchronized-snapshots": false, "no-table-access-method": false, "no-tablespaces": false,
	"no-toast-compression": false, "no-unlogged-table-data": false, "on-conflict-do-nothing": false,
	"password": false, "quote-all-identifiers": false, "schema-only": false, "sequence-data": false,
	"serializable-deferrable": false, "statistics": false, "statistics-only": false,
	"strict-names": false, "use-set-session-authorization": false, "verbose": false,
	"version": false, "with-data": false, "with-schema": false, "with-statistics": false,
}

var shortToLong = map[byte]string{
	'n': "schema", 'N': "exclude-schema", 't': "table", 'T': "exclude-table", 's': "schema-only",
}

// selecting are the options that change which rows a dump holds.
var selecting = map[string]bool{
	"schema": true, "exclude-schema": true, "table": true, "table-and-children": true,
	"exclude-table": true, "exclude-table-and-children": true, "exclude-table-data": true,
	"exclude-table-data-and-children": true, "schema-only": true, "no-data": true,
	"statistics-only": true, "section": true, "no-unlogged-table-data": true,
	"enable-row-security": true, "filter": true,
}

// resolveLong finds the option getopt_long takes for name: exact, or the
// only option it abbreviates ("" when unknown). An abbreviation of several
// options is an error when one of them selects rows: which one pg_dump
// takes depends on its version (--tab is --table up to 15, ambiguous since
// --table-and-children came in 16).
func resolveLong(name string) (string, error) {
	if _, ok := longOpts[name]; ok {
		return name, nil
	}
	var found []string
	sel := false
	for o := range longOpts {
		if strings.HasPrefix(o, name) {
			found = append(found, o)
			sel = sel || selecting[o]
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1 && sel:
		sort.Strings(found)
		return "", fmt.Errorf("--%s abbreviates several pg_dump options (%s): spell it out", name, strings.Join(found, ", "))
	}
	return "", nil
}

// AddArgs takes the selection options out of pg_dump extra arguments, as
// getopt_long reads them (abbreviations, bundled short options, values in
// the same or the next argument). Options it cannot follow are refused.
func (s *Selection) AddArgs(args []string) error {
	var sections []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		var opt, val string
		switch {
		case strings.HasPrefix(a, "--"):
			name, v, eq := strings.Cut(a[2:], "=")
			var err error
			if opt, err = resolveLong(name); err != nil {
				return err
			}
			if opt == "" {
				continue // pg_dump itself rejects it
			}
			if longOpts[opt] {
				if eq {
					val = v
				} else if i+1 < len(args) {
					i++
					val = args[i]
				}
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			// Bundled short options: flags until one that takes a value.
			for j := 1; j < len(a); j++ {
				k := strings.IndexByte(shortOpts, a[j])
				if k < 0 {
					break
				}
				if k+1 < len(shortOpts) && shortOpts[k+1] == ':' {
					opt = shortToLong[a[j]]
					if j+1 < len(a) {
						val = a[j+1:]
					} else if i+1 < len(args) {
						i++
						val = args[i]
					}
					break
				}
				if a[j] == 's' {
					s.NoData = true
				}
			}
		default:
			continue // positional (a database name): pg_dump's business
		}
		switch opt {
		case "schema":
			s.Schemas = append(s.Schemas, val)
		case "exclude-schema":
			s.ExcludeSchemas = append(s.ExcludeSchemas, val)
		case "table":
			s.Tables = append(s.Tables, val)
		case "table-and-children":
			s.TablesAndChildren = append(s.TablesAndChildren, val)
		case "exclude-table":
			s.ExcludeTables = append(s.ExcludeTables, val)
		case "exclude-table-and-children":
			s.ExcludeTablesAndKids = append(s.ExcludeTablesAndKids, val)
		case "exclude-table-data":
			s.ExcludeData = append(s.ExcludeData, val)
		case "exclude-table-data-and-children":
			s.ExcludeDataAndKids = append(s.ExcludeDataAndKids, val)
		case "schema-only", "no-data", "statistics-only":
			s.NoData = true
		case "section":
			sections = append(sections, val)
		case "no-unlogged-table-data":
			s.NoUnlogged = true
		case "enable-row-security":
			s.RowSecurity = true
		case "filter":
			return fmt.Errorf("%s: row counts cannot follow a --filter file; use schemas/tables/exclude_* (or their options) instead", a)
		}
	}
	if len(sections) > 0 {
		data := false
		for _, v := range sections {
			data = data || v == "data"
		}
		s.NoData = s.NoData || !data
	}
	return nil
}

// relOIDs is a query for the oids of the relations (of the kinds pg_dump's
// --table looks at) matching any of the patterns, with their inheritance
// and partition descendants when kids is set.
func relOIDs(patterns []string, kids bool) (string, error) {
	if len(patterns) == 0 {
		return "SELECT NULL::pg_catalog.oid WHERE false", nil
	}
	conds := make([]string, len(patterns))
	for i, p := range patterns {
		c, err := tableCond(p)
		if err != nil {
			return "", err
		}
		conds[i] = c
	}
	q := "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace" +
		" WHERE c.relkind OPERATOR(pg_catalog.=) ANY (array['r','S','v','m','f','p']) AND (" + strings.Join(conds, " OR ") + ")"
	if !kids {
		return q, nil
	}
	return "WITH RECURSIVE k(oid) AS (" + q + " UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN k ON i.inhparent OPERATOR(pg_catalog.=) k.oid) SELECT oid FROM k", nil
}

func schemaOIDs(patterns []string) (string, error) {
	conds := make([]string, len(patterns))
	for i, p := range patterns {
		c, err := schemaCond(p)
		if err != nil {
			return "", err
		}
		conds[i] = c
	}
	return "SELECT n.oid FROM pg_catalog.pg_namespace n WHERE " + strings.Join(conds, " OR "), nil
}

// Query returns one SQL statement whose single row is a JSON array of
// [schema, table] pairs: the ordinary and partitioned tables whose rows the
// dump holds, following pg_dump's rules (with tables given, schemas and
// exclude_schemas do not apply; system schemas only when named). Left out:
// tables of extensions (pg_dump dumps at most a filtered part of their data),
// excluded data, unlogged tables with --no-unlogged-table-data, and any table
// with an inheritance child or partition that is not dumped or is foreign
// (count(*) on it would include rows the dump does not hold).
func (s *Selection) Query() (string, error) {
	if s.NoData {
		return "SELECT '[]';", nil
	}
	var where []string
	where = append(where, "c.relkind OPERATOR(pg_catalog.=) ANY (array['r','p'])", "c.relpersistence OPERATOR(pg_catalog.<>) 't'")
	if len(s.Tables)+len(s.TablesAndChildren) > 0 {
		a, err := relOIDs(s.Tables, false)
		if err != nil {
			return "", err
		}
		b, err := relOIDs(s.TablesAndChildren, true)
		if err != nil {
			return "", err
		}
		where = append(where, "(c.oid IN ("+a+") OR c.oid IN ("+b+"))")
	} else {
		if len(s.Schemas) > 0 {
			q, err := schemaOIDs(s.Schemas)
			if err != nil {
				return "", err
			}
			where = append(where, "n.oid IN ("+q+")")
		} else {
			where = append(where, "n.nspname OPERATOR(pg_catalog.!~) '^pg_'", "n.nspname OPERATOR(pg_catalog.<>) 'information_schema'")
		}
		if len(s.ExcludeSchemas) > 0 {
			q, err := schemaOIDs(s.ExcludeSchemas)
			if err != nil {
				return "", err
			}
			where = append(where, "n.oid NOT IN ("+q+")")
		}
	}
	for _, ex := range []struct {
		pats []string
		kids bool
	}{{s.ExcludeTables, false}, {s.ExcludeTablesAndKids, true}, {s.ExcludeData, false}, {s.ExcludeDataAndKids, true}} {
		if len(ex.pats) == 0 {
			continue
		}
		q, err := relOIDs(ex.pats, ex.kids)
		if err != nil {
			return "", err
		}
		where = append(where, "c.oid NOT IN ("+q+")")
	}
	if s.NoUnlogged {
		where = append(where, "c.relpersistence OPERATOR(pg_catalog.<>) 'u'")
	}
	where = append(where, "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass"+
		" AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.deptype OPERATOR(pg_catalog.=) 'e')")
	return "WITH RECURSIVE sel AS (SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c" +
		" JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace WHERE " + strings.Join(where, " AND ") + ")," +
		" tree(top, rel) AS (SELECT oid, oid FROM sel UNION ALL SELECT t.top, i.inhrelid FROM tree t JOIN pg_catalog.pg_inherits i ON i.inhparent OPERATOR(pg_catalog.=) t.rel)" +
		" SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(s.nspname, s.relname) ORDER BY s.nspname, s.relname), '[]')" +
		" FROM sel s WHERE NOT EXISTS (SELECT 1 FROM tree t JOIN pg_catalog.pg_class k ON k.oid OPERATOR(pg_catalog.=) t.rel" +
		" WHERE t.top OPERATOR(pg_catalog.=) s.oid AND k.relkind OPERATOR(pg_catalog.<>) 'p' AND t.rel NOT IN (SELECT oid FROM sel));", nil
}
