package testenv

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPGClusterArchives starts a private cluster whose archive_command
// copies segments into a directory and checks that a forced switch is
// archived, that Restart keeps the data and that Psql reports SQL errors.
func TestPGClusterArchives(t *testing.T) {
	c := NewPG(t, PGOptions{})
	arch := c.MkdirOwned(t, "arch")
	c.SetArchiveCommand(t, "test ! -f "+arch+"/%f && cp %p "+arch+"/%f")
	c.Start(t)
	c.Psql(t, "CREATE TABLE marker (v text); INSERT INTO marker VALUES ('one')")
	seg := c.WaitArchived(t, time.Minute)
	if _, err := os.Stat(filepath.Join(arch, seg)); err != nil {
		t.Fatalf("segment %s not in the archive: %v", seg, err)
	}
	if got := c.Psql(t, "SHOW wal_level"); got != "replica" {
		t.Fatalf("wal_level = %q", got)
	}
	c.Restart(t)
	if got := c.Psql(t, "SELECT v FROM marker"); got != "one" {
		t.Fatalf("after restart: %q", got)
	}
	if _, err := c.PsqlDB("postgres", "SELECT nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("PsqlDB error = %v", err)
	}
}

func TestPlanrunBin(t *testing.T) {
	RequireTool(t, "go")
	bin := PlanrunBin(t)
	fi, err := os.Stat(bin)
	if err != nil || fi.Mode().Perm()&0o005 != 0o005 {
		t.Fatalf("%s: %v %v: not executable by others", bin, fi, err)
	}
	if PlanrunBin(t) != bin {
		t.Fatal("built twice")
	}
}

func TestPGDatabase(t *testing.T) {
	u := PGDatabase(t)
	db, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("a new database has %d tables", n)
	}
}
