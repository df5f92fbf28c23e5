package pgsnap

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/planrun/planrun/internal/testenv"
)

// The patterns translate exactly as psql's own translation (the same code
// pg_dump uses): psql -E prints the query \dt builds from a pattern.
func TestPatternMatchesPsql(t *testing.T) {
	testenv.Require(t, "PostgreSQL (scripts/testenv.sh)", "PGHOST", "PGPORT", "PGUSER")
	testenv.RequireTool(t, "psql")
	cond := regexp.MustCompile(`(?m)^\s*AND (c\.relname|n\.nspname) OPERATOR\(pg_catalog\.~\) (E?'.*') COLLATE pg_catalog\.default`)
	for _, pat := range []string{
		`items`, `Items`, `public.item*`, `"Mixed Case"`, `"My.Sch"."T$x"*`, `ab?c[]|x`, `s.t_(1|2)`,
		`"a""b".c`, `"x*y"`, `über.Ä*`, `*.*`, `postgres.sch.tab`,
	} {
		out, err := exec.Command("psql", "-X", "-E", "-d", "postgres", "-c", `\dt `+pat).CombinedOutput()
		if err != nil {
			t.Fatalf("psql \\dt %s: %v\n%s", pat, err, out)
		}
		psql := map[string]string{}
		for _, m := range cond.FindAllStringSubmatch(string(out), -1) {
			psql[m[1]] = m[2]
		}
		np := parsePattern(pat)
		mine := map[string]string{"c.relname": sqlString(np.parts[len(np.parts)-1])}
		if len(np.parts) > 1 {
			mine["n.nspname"] = sqlString(np.parts[len(np.parts)-2])
		}
		// psql leaves out a condition that matches everything.
		for k, v := range mine {
			if v == sqlString("^(.*)$") && psql[k] == "" {
				delete(mine, k)
			}
		}
		// psql writes E'' only when the literal has a backslash.
		for k, v := range psql {
			if !strings.HasPrefix(v, "E") {
				psql[k] = "E" + v
			}
		}
		if len(psql) != len(mine) || psql["c.relname"] != mine["c.relname"] || psql["n.nspname"] != mine["n.nspname"] {
			t.Errorf("pattern %s: psql %v, ours %v", pat, psql, mine)
		}
	}
}

func TestAddArgs(t *testing.T) {
	var s Selection
	err := s.AddArgs([]string{"--no-owner", "-n", "a", "-Nb", "--table=c", "--exclude-table", "d", "--exclude-table-data=e",
		"--lock-wait-timeout", "-t", "-vt", "f", "--no-unlogged", "--enable-row", "mydb", "--", "-t", "g"})
	if err != nil {
		t.Fatal(err)
	}
	want := Selection{Schemas: []string{"a"}, ExcludeSchemas: []string{"b"}, Tables: []string{"c", "f"},
		ExcludeTables: []string{"d"}, ExcludeData: []string{"e"}, NoUnlogged: true, RowSecurity: true}
	if strings.Join(s.Schemas, ",") != "a" || strings.Join(s.ExcludeSchemas, ",") != "b" || strings.Join(s.Tables, ",") != "c,f" ||
		strings.Join(s.ExcludeTables, ",") != "d" || strings.Join(s.ExcludeData, ",") != "e" || !s.NoUnlogged || !s.RowSecurity || s.NoData {
		t.Errorf("got %+v, want %+v", s, want)
	}
	for args, noData := range map[string]bool{"-s": true, "-vs": true, "--schema-only": true, "--section=pre-data --section=post-data": true,
		"--section data": false, "--data-only": false, "-a": false} {
		var s Selection
		if err := s.AddArgs(strings.Fields(args)); err != nil || s.NoData != noData {
			t.Errorf("%s: NoData %v (err %v), want %v", args, s.NoData, err, noData)
		}
	}
	for _, bad := range []string{"--filter=f.txt", "--tab=x", "--exclude-table-d=x"} {
		if err := (&Selection{}).AddArgs([]string{bad}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	var ab Selection
	if err := ab.AddArgs([]string{"--exclude-sch=x", "--no-unlogged"}); err != nil || len(ab.ExcludeSchemas) != 1 || !ab.NoUnlogged {
		t.Errorf("abbreviations: %+v, %v", ab, err)
	}
	if _, err := (&Selection{Tables: []string{"a.b.c.d"}}).Query(); err == nil {
		t.Error("too many dotted names accepted")
	}
}
