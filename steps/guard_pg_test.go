package steps

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
)

// A real pg_dump guarded by its recorded history: normal day-to-day
// variation passes; a source that lost 80 % of its rows fails the count
// guard (or warns), and the local retention after it is held back.
func TestGuardPgDumpLostRowsHoldsBackRetention(t *testing.T) {
	pgEnv(t)
	db := pgScratchDB(t, 1000)
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(t.TempDir(), "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	plan := func(action string) string {
		return fmt.Sprintf(`version: 1
name: guarded-pg
vars:
  stamp: ${{ now().Format("20060102T150405.000000000Z") }}
steps:
  - id: db-full
    type: pg_dump
    guard:
      counts: {min_ratio: 0.8, max_ratio: 3}
      action: %s
    with:
      database: %s
      output: %s/db-${{ vars.stamp }}.dump.zst
  - id: retention
    type: prune
    when: always()
    with: {dir: %s, pattern: "db-*.dump.zst", keep_last: 2, time_from: mtime}
`, action, db, dir, dir)
	}
	apply := func(action string) (engine.Result, string, map[string]engine.AttemptRecord) {
		t.Helper()
		p, err := engine.Load("guarded.yaml", []byte(plan(action)), All())
		if err != nil {
			t.Fatal(err)
		}
		scope, err := engine.Prepare(p, engine.Invocation{Environ: os.Environ()})
		if err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		res := engine.Apply(context.Background(), p, scope, engine.Options{Recorder: st, StateDir: t.TempDir(), Stderr: &log})
		_, atts, err := st.Run(context.Background(), res.RunID)
		if err != nil {
			t.Fatal(err)
		}
		by := map[string]engine.AttemptRecord{}
		for _, a := range atts {
			by[a.StepID] = a
		}
		return res, log.String(), by
	}
	dumps := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "db-*.dump.zst"))
		return len(m)
	}

	// Three runs build the history (no verdict yet), then +5 % rows passes.
	for i := range 4 {
		if i == 3 {
			psqlT(t, db, "INSERT INTO items SELECT g, 'new', 1, '{}', now() FROM generate_series(1001, 1050) g")
		}
		res, log, atts := apply("fail")
		if res.ExitCode != 0 {
			t.Fatalf("run %d: exit %d\n%s", i+1, res.ExitCode, log)
		}
		want := engine.VerdictNoHistory
		if i == 3 {
			want = engine.VerdictPass
		}
		if g := atts["db-full"].Outputs["guard"]; g != want {
			t.Fatalf("run %d: guard %v, want %s (%s)", i+1, g, want, atts["db-full"].Reason)
		}
		if atts["retention"].Status != engine.StatusSuccess {
			t.Fatalf("run %d: retention %s: %s", i+1, atts["retention"].Status, atts["retention"].Reason)
		}
	}
	if !strings.Contains(mustAttempt(t, st, "db-full").Reason, "rows:public.items 1050 is 1.05× the median 1000 of the last 3 runs") {
		t.Errorf("reason: %s", mustAttempt(t, st, "db-full").Reason)
	}
	if n := dumps(); n != 2 {
		t.Fatalf("%d dumps kept, want 2 (keep_last)", n)
	}

	// The source lost 80 % of its rows.
	psqlT(t, db, "DELETE FROM items WHERE id % 5 <> 0")
	res, log, atts := apply("fail")
	if res.ExitCode != engine.ExitFailed {
		t.Fatalf("exit %d, want 1\n%s", res.ExitCode, log)
	}
	d := atts["db-full"]
	if d.Status != engine.StatusFailed || !strings.Contains(d.Error, "guard tripped: rows:public.items 210 is 0.21× the median 1000 of the last 4 runs (min_ratio 0.8)") {
		t.Fatalf("db-full: %s: %s", d.Status, d.Error)
	}
	r := atts["retention"]
	if r.Status != engine.StatusSkipped || !strings.Contains(r.Reason, `safety interlock: backup step "db-full" failed`) {
		t.Fatalf("retention: %s: %s", r.Status, r.Reason)
	}
	if n := dumps(); n != 3 {
		t.Fatalf("%d dumps on disk, want the 2 kept and the suspicious one", n)
	}

	// action: warn: the run succeeds, retention is held back all the same.
	res, log, atts = apply("warn")
	if res.ExitCode != 0 || atts["db-full"].Outputs["guard"] != engine.VerdictWarn {
		t.Fatalf("exit %d, guard %v\n%s", res.ExitCode, atts["db-full"].Outputs["guard"], log)
	}
	if r := atts["retention"]; r.Status != engine.StatusSkipped || !strings.Contains(r.Reason, `the guard of step "db-full" tripped`) {
		t.Fatalf("retention: %s: %s", r.Status, r.Reason)
	}
	if n := dumps(); n != 4 {
		t.Fatalf("%d dumps on disk, want 4: nothing pruned", n)
	}
}

// mustAttempt is the step's attempt in the newest run of the store.
func mustAttempt(t *testing.T, st *store.Store, step string) engine.AttemptRecord {
	t.Helper()
	runs, err := st.Runs(context.Background(), store.RunFilter{Limit: 1})
	if err != nil || len(runs) == 0 {
		t.Fatalf("runs: %v", err)
	}
	_, atts, err := st.Run(context.Background(), runs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range atts {
		if a.StepID == step {
			return a
		}
	}
	t.Fatalf("no attempt of %s", step)
	return engine.AttemptRecord{}
}
