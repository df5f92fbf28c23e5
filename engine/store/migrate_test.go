package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
)

func schemaText(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(s + "\n")
	}
	return b.String()
}

func TestMigrateTwiceIsNoop(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runs.db")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	finished(t, st, run("keep", "p", t0, engine.StatusSuccess), time.Second)
	before := schemaText(t, st.db)
	if err := migrate(ctx, st.db, migrations); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if after := schemaText(t, st.db); after != before {
		t.Errorf("schema changed by a second migrate:\n%s\nvs\n%s", before, after)
	}
	st.Close()

	st, err = Open(path) // reopening migrates again
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if v, err := st.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Errorf("version = %d, %v; want %d", v, err, len(migrations))
	}
	if after := schemaText(t, st.db); after != before {
		t.Errorf("schema changed by reopening")
	}
	if _, _, err := st.Run(ctx, "keep"); err != nil {
		t.Errorf("run lost after reopen: %v", err)
	}
}

func TestOlderDatabaseUpgrades(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runs.db")
	old, err := open(ctx, path, migrations[:1]) // a store written by an older planrun
	if err != nil {
		t.Fatal(err)
	}
	// Written as version 1 wrote it: without the columns later migrations add.
	if _, err := old.db.ExecContext(ctx, `INSERT INTO runs (id, plan, started, finished, status) VALUES (?, ?, ?, ?, ?)`,
		"from-v1", "p", fmtTime(t0), fmtTime(t0.Add(time.Second)), engine.StatusSuccess); err != nil {
		t.Fatal(err)
	}
	if v, _ := old.SchemaVersion(ctx); v != 1 {
		t.Fatalf("old store at version %d, want 1", v)
	}
	if strings.Contains(schemaText(t, old.db), "runs_plan_started") {
		t.Fatal("version 1 already has version 2's index; the test proves nothing")
	}
	old.Close()

	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if v, _ := st.SchemaVersion(ctx); v != len(migrations) {
		t.Errorf("upgraded to version %d, want %d", v, len(migrations))
	}
	if !strings.Contains(schemaText(t, st.db), "runs_plan_started") {
		t.Error("upgrade did not create the version 2 index")
	}
	if r, ok, err := st.LastSuccess(ctx, "p"); err != nil || !ok || r.ID != "from-v1" {
		t.Errorf("data written at version 1 not readable after upgrade: %+v %v %v", r, ok, err)
	}
}

func TestNewerDatabaseRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.db")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	st.Close()
	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}
