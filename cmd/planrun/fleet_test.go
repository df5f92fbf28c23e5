package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

// A fleet in one test: "hosts" are the built binary run with their own
// state dir and PLANRUN_HOST, all recording into one central PostgreSQL
// store, as separate processes (as cron starts them).
type fleetHost struct {
	t    *testing.T
	name string
	dir  string // holds its state dir and its plans
	env  []string
}

func newFleetHost(t *testing.T, db, name string, extraEnv ...string) *fleetHost {
	dir := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	env := append(os.Environ(), "PLANRUN_DB="+db, "PLANRUN_STATE_DIR="+filepath.Join(dir, "state"),
		"PLANRUN_HOST="+name, "PLANRUN_TEXTFILE_DIR=", "PLANRUN_PUSHGATEWAY_URL=")
	return &fleetHost{t: t, name: name, dir: dir, env: append(env, extraEnv...)}
}

// plan writes a plan file on the host and returns its path.
func (h *fleetHost) plan(name, body string) string {
	p := filepath.Join(h.dir, name+".yaml")
	require.NoError(h.t, os.WriteFile(p, []byte("version: 1\nname: "+name+"\n"+body), 0o600))
	return p
}

func (h *fleetHost) cmd(args ...string) (*exec.Cmd, *testenv.SyncBuffer, *testenv.SyncBuffer) {
	c := exec.Command(testenv.PlanrunBin(h.t), args...)
	c.Env = h.env
	var out, errb testenv.SyncBuffer
	c.Stdout, c.Stderr = &out, &errb
	return c, &out, &errb
}

// run runs planrun on the host to its end.
func (h *fleetHost) run(args ...string) result {
	h.t.Helper()
	c, out, errb := h.cmd(args...)
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("planrun %q on %s: %v", args, h.name, err)
	}
	return result{code, out.String(), errb.String()}
}

// showJSON is `planrun show RUN --json` on the host.
func (h *fleetHost) showJSON(args ...string) (engine.RunRecord, []engine.AttemptRecord) {
	h.t.Helper()
	r := h.run(append([]string{"show", "--json"}, args...)...)
	require.Equal(h.t, 0, r.code, r.stderr)
	var v struct {
		Run      engine.RunRecord       `json:"run"`
		Attempts []engine.AttemptRecord `json:"attempts"`
	}
	require.NoError(h.t, json.Unmarshal([]byte(r.stdout), &v), r.stdout)
	return v.Run, v.Attempts
}

// gatePlan's first step creates started and waits for gate: the test acts
// while the run holds its locks.
func gateStep(dir string) (started, gate, step string) {
	started, gate = filepath.Join(dir, "started"), filepath.Join(dir, "gate")
	step = fmt.Sprintf(`  - id: gate
    type: exec
    with:
      env: {GATE: %q, STARTED: %q}
      shell: 'touch "$STARTED"; while [ ! -e "$GATE" ]; do sleep 0.05; done'
`, gate, started)
	return started, gate, step
}

// applyHeld starts `planrun apply plan` on the host and returns once its
// gate step has created started: the run then holds its locks until the
// test creates gate (at the latest when the test ends).
func (h *fleetHost) applyHeld(plan, started, gate string) (*exec.Cmd, *testenv.SyncBuffer, *testenv.SyncBuffer) {
	h.t.Helper()
	c, out, errb := h.cmd("apply", plan)
	require.NoError(h.t, c.Start())
	h.t.Cleanup(func() { touch(h.t, gate); _ = c.Wait() })
	waitFile(h.t, started, errb)
	return c, out, errb
}

// waitFile polls for a file the run creates (no sleeps as synchronisation).
func waitFile(t *testing.T, path string, errb *testenv.SyncBuffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared; stderr:\n%s", path, errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func touch(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, nil, 0o600))
}

// Two hosts record into one store: status --all shows both, each host's
// own view shows itself, and each host keeps its own local record.
func TestFleetTwoHostsShareOneStore(t *testing.T) {
	db := testenv.PGDatabase(t)
	h1, h2 := newFleetHost(t, db, "db-1"), newFleetHost(t, db, "db-2")
	tiny := "steps:\n  - id: work\n    type: exec\n    with: {command: [\"true\"]}\n"
	for _, h := range []*fleetHost{h1, h2} {
		r := h.run("apply", h.plan("nightly", tiny))
		require.Equal(t, 0, r.code, r.stderr)
		assert.NotContains(t, r.stderr, "warning", "the central store answered")
	}
	r := h2.run("apply", h2.plan("uploads", tiny))
	require.Equal(t, 0, r.code, r.stderr)

	r = h1.run("status", "--all", "--max-age", "1h", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var rows []fleetRow
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rows))
	got := map[string]string{}
	for _, row := range rows {
		require.NotNil(t, row.LastSuccess, "%+v", row)
		got[row.Host+"/"+row.Plan] = row.Verdict
	}
	assert.Equal(t, map[string]string{"db-1/nightly": "OK", "db-2/nightly": "OK", "db-2/uploads": "OK"}, got)

	r = h1.run("status", "--all")
	require.Equal(t, 0, r.code, r.stderr)
	for _, want := range []string{"db-1", "db-2", "nightly", "uploads"} {
		assert.Contains(t, r.stdout, want)
	}
	// A host's own view: itself only (status, runs); --host another.
	r = h1.run("status", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	rows = nil
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rows))
	require.Len(t, rows, 1)
	assert.Equal(t, "db-1", rows[0].Host)
	r = h1.run("status", "uploads", "--max-age", "1h")
	assert.Equal(t, 1, r.code, "db-1 never ran uploads: %s", r.stdout)
	r = h1.run("status", "uploads", "--max-age", "1h", "--host", "db-2")
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	r = h1.run("runs", "--all")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "HOST")
	assert.Equal(t, 4, strings.Count(r.stdout, "\n"), r.stdout) // header + 3 runs
	r = h1.run("runs")
	assert.Equal(t, 2, strings.Count(r.stdout, "\n"), r.stdout)

	// The fleet's metrics carry a host label; a host's own do not need it.
	r = h1.run("metrics", "--all")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `planrun_last_run_success{host="db-2",kind="apply",plan="uploads"} 1`)
	r = h1.run("metrics")
	assert.Contains(t, r.stdout, `planrun_last_run_success{kind="apply",plan="nightly"} 1`)
	assert.NotContains(t, r.stdout, "uploads")

	// Each host's local record holds its own runs, nothing waits to be copied.
	r = h2.run("runs", "--db", filepath.Join(h2.dir, "state", "runs.db"))
	assert.Equal(t, 3, strings.Count(r.stdout, "\n"), r.stdout)
	r = h2.run("history", "sync")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "copied 0 run(s)")
}

// A fleet-wide lock taken on one host blocks the other: on_lock: fail
// names the holder; on_lock: wait waits for it and records the wait.
func TestFleetLockBlocksAcrossHosts(t *testing.T) {
	db := testenv.PGDatabase(t)
	h1, h2 := newFleetHost(t, db, "db-1"), newFleetHost(t, db, "db-2")
	started, gate, step := gateStep(h1.dir)
	holder := h1.plan("holder", "locks: [\"restic:/srv/shared-repo\"]\nsteps:\n"+step)
	c, _, _ := h1.applyHeld(holder, started, gate)

	// The holder row names the host.
	conn, err := sql.Open("pgx", db)
	require.NoError(t, err)
	defer conn.Close()
	var host string
	require.NoError(t, conn.QueryRow(`SELECT host FROM resource_locks WHERE resource = $1`, "restic:/srv/shared-repo").Scan(&host))
	assert.Equal(t, "db-1", host)

	work := "steps:\n  - id: work\n    type: exec\n    locks: [\"restic:/srv/shared-repo\"]\n    with: {command: [\"true\"]}\n"
	r := h2.run("apply", h2.plan("busy", "defaults: {on_lock: fail}\n"+work))
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "db-1", "the failure names the holding host")
	_, atts := h2.showJSON("latest", "--plan", "busy")
	require.Len(t, atts, 1)
	assert.Equal(t, engine.StatusFailed, atts[0].Status)
	require.Len(t, atts[0].LockWaits, 1)
	assert.Equal(t, engine.LockBusy, atts[0].LockWaits[0].Outcome)
	assert.Equal(t, "fleet", atts[0].LockWaits[0].Scope)

	waiter, wout, werr := h2.cmd("apply", h2.plan("patient", work))
	require.NoError(t, waiter.Start())
	// The waiter is waiting (it said so) before the holder lets go.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(werr.String(), "waiting") {
		require.True(t, time.Now().Before(deadline), "the second host never waited: %s", werr.String())
		time.Sleep(20 * time.Millisecond)
	}
	touch(t, gate)
	require.NoError(t, c.Wait())
	require.NoError(t, waiter.Wait(), wout.String()+werr.String())
	_, atts = h2.showJSON("latest", "--plan", "patient")
	require.Len(t, atts, 1)
	require.Len(t, atts[0].LockWaits, 1)
	w := atts[0].LockWaits[0]
	assert.Equal(t, engine.LockAcquired, w.Outcome)
	assert.Positive(t, w.Waited)
	assert.Contains(t, w.Holder, "db-1")
	var left int
	require.NoError(t, conn.QueryRow(`SELECT count(*) FROM resource_locks`).Scan(&left))
	assert.Zero(t, left, "released locks leave no holder row")
}

// Killing the lock's backend mid-run: the run does not start its
// destructive step (the old artifacts survive) and fails, naming the lost
// lock; it does not take the lock again.
func TestFleetLockLostStopsDestructiveSteps(t *testing.T) {
	db := testenv.PGDatabase(t)
	h1 := newFleetHost(t, db, "db-1")
	started, gate, step := gateStep(h1.dir)
	arts := filepath.Join(h1.dir, "artifacts")
	require.NoError(t, os.MkdirAll(arts, 0o700))
	old := filepath.Join(arts, "dump-20200101T000000Z.sql")
	require.NoError(t, os.WriteFile(old, []byte("old"), 0o600))
	plan := h1.plan("pruner", fmt.Sprintf(`locks: ["restic:/srv/shared-repo"]
steps:
%s  - id: retention
    type: prune
    with: {dir: %q, pattern: "dump-*.sql", max_age: 1d}
`, step, arts))
	c, out, errb := h1.applyHeld(plan, started, gate)

	conn, err := sql.Open("pgx", db)
	require.NoError(t, err)
	defer conn.Close()
	var killed int
	require.NoError(t, conn.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name LIKE 'planrun lock %'`).Scan(&killed))
	require.Equal(t, 1, killed, "the run's lock connection")
	touch(t, gate)
	err = c.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, out.String()+errb.String())
	assert.Equal(t, 1, ee.ExitCode())
	assert.Contains(t, errb.String(), "lost")
	assert.FileExists(t, old, "the destructive step did not run")
	run, atts := h1.showJSON("latest", "--plan", "pruner")
	assert.Equal(t, engine.StatusFailed, run.Status)
	assert.Contains(t, run.Error, "restic:/srv/shared-repo")
	for _, a := range atts {
		if a.StepID == "retention" {
			assert.NotEqual(t, engine.StatusSuccess, a.Status)
		}
	}
	// Not taken again: no session holds an advisory lock (the holder row
	// of the killed session stays, stale, until the next holder takes it).
	var held int
	require.NoError(t, conn.QueryRow(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database =
		(SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&held))
	assert.Zero(t, held, "the lock was not taken again")
}

// The central store stops mid-run: the run goes on and succeeds, recorded
// locally; after the restart, history sync copies the whole run.
func TestFleetCentralStoreDownMidRun(t *testing.T) {
	pg := testenv.StartPG(t, testenv.PGOptions{})
	db := pg.URL("postgres")
	h1 := newFleetHost(t, db, "db-1")
	started, gate, step := gateStep(h1.dir)
	plan := h1.plan("nightly", "steps:\n"+step+"  - id: after\n    type: exec\n    with: {command: [\"true\"]}\n")
	c, out, errb := h1.applyHeld(plan, started, gate)
	pg.Stop(t)
	touch(t, gate)
	require.NoError(t, c.Wait(), out.String()+errb.String())
	assert.Contains(t, errb.String(), "recorded locally")

	local := filepath.Join(h1.dir, "state", "runs.db")
	run, atts := h1.showJSON("latest", "--db", local)
	assert.Equal(t, engine.StatusSuccess, run.Status)
	require.Len(t, atts, 2)
	logText, err := os.ReadFile(run.LogFile)
	require.NoError(t, err)
	assert.Contains(t, string(logText), "recorded locally", "the warning is in the run's own log")

	pg.Start(t)
	r := h1.run("history", "sync")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "copied 1 run(s)")
	crun, catts := h1.showJSON(run.ID)
	assert.Equal(t, engine.StatusSuccess, crun.Status)
	assert.Len(t, catts, 2, "every attempt reached the central store")
	r = h1.run("history", "sync")
	assert.Contains(t, r.stdout, "copied 0 run(s)", "a second sync has nothing left")
}

// The central store is down when the run starts: a plan without locks
// runs and is recorded locally; a step that needs a fleet lock fails
// (PLANRUN_LOCK_FALLBACK=fail, the default) or takes a host lock (local).
func TestFleetCentralStoreDownAtStart(t *testing.T) {
	db := "postgres://planrun@127.0.0.1:1/fleet?sslmode=disable&connect_timeout=2"
	h1 := newFleetHost(t, db, "db-1")
	r := h1.run("apply", h1.plan("plain", "steps:\n  - id: work\n    type: exec\n    with: {command: [\"true\"]}\n"))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "copied over when the central store answers")

	locked := h1.plan("locked", "steps:\n  - id: work\n    type: exec\n    locks: [\"restic:/srv/repo\"]\n    with: {command: [\"true\"]}\n")
	r = h1.run("apply", locked)
	assert.Equal(t, 1, r.code, r.stderr)
	_, atts := h1.showJSON("latest", "--plan", "locked", "--db", filepath.Join(h1.dir, "state", "runs.db"))
	require.Len(t, atts, 1)
	require.Len(t, atts[0].LockWaits, 1)
	assert.Equal(t, engine.LockError, atts[0].LockWaits[0].Outcome)

	h1.env = append(h1.env, "PLANRUN_LOCK_FALLBACK=local")
	r = h1.run("apply", locked)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "on this host only")
	_, atts = h1.showJSON("latest", "--plan", "locked", "--db", filepath.Join(h1.dir, "state", "runs.db"))
	require.Len(t, atts, 1)
	require.Len(t, atts[0].LockWaits, 1)
	assert.Equal(t, engine.LockAcquired, atts[0].LockWaits[0].Outcome)
	assert.Equal(t, "host", atts[0].LockWaits[0].Scope, "recorded where it was really taken")

	r = h1.run("history", "sync")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "3 run(s) wait in")

	// The read verbs fall back to this host's own record, and say so.
	r = h1.run("runs")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "reading this host's own record")
	assert.Equal(t, 4, strings.Count(r.stdout, "\n"), r.stdout) // header + 3 runs
	r = h1.run("runs", "--host", "db-2")
	assert.Equal(t, 1, r.code, "another host's runs are not in this host's record: %s", r.stderr)
}

// validate --online reports the central store: a warning when it does
// not answer, a failure for a plan whose locks then cannot be taken.
func TestFleetPreflightReportsCentralStore(t *testing.T) {
	down := newFleetHost(t, "postgres://planrun@127.0.0.1:1/fleet?sslmode=disable&connect_timeout=2", "db-1")
	plain := down.plan("plain", "steps:\n  - id: work\n    type: exec\n    with: {command: [\"true\"]}\n")
	locked := down.plan("locked", "steps:\n  - id: work\n    type: exec\n    locks: [\"restic:/srv/repo\"]\n    with: {command: [\"true\"]}\n")
	r := down.run("validate", "--online", plain)
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `warn +run-store`, r.stdout)
	r = down.run("validate", "--online", locked)
	assert.Equal(t, 1, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `fail +run-store`, r.stdout)
	assert.Contains(t, r.stdout, "PLANRUN_LOCK_FALLBACK=fail")

	up := newFleetHost(t, testenv.PGDatabase(t), "db-1")
	r = up.run("validate", "--online", up.plan("locked", "steps:\n  - id: work\n    type: exec\n    locks: [\"restic:/srv/repo\"]\n    with: {command: [\"true\"]}\n"))
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `ok +run-store`, r.stdout)
}

// A DR rebuild on a new machine: a host with no backups of its own drills
// the newest backup of the only host that has one; with two such hosts it
// must be told which (--host).
func TestFleetDrillOnANewHost(t *testing.T) {
	db := testenv.PGDatabase(t)
	src := filepath.Join(t.TempDir(), "src")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "etc"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(src, "etc", "app.conf"), []byte("listen 8080\n"), 0o600))
	backup := func(h *fleetHost) string {
		out := filepath.Join(h.dir, "backups")
		return h.plan("configs", fmt.Sprintf(`steps:
  - id: archive
    type: tar
    with: {paths: [%q], output: %q, compress: zstd}
`, filepath.Join(src, "etc"), filepath.Join(out, "configs.tar.zst")))
	}
	db1, db2, fresh := newFleetHost(t, db, "db-1"), newFleetHost(t, db, "db-2"), newFleetHost(t, db, "dr-1")
	plan1 := backup(db1)
	r := db1.run("apply", plan1)
	require.Equal(t, 0, r.code, r.stderr)
	src1, _ := db1.showJSON("latest", "--plan", "configs")

	r = fresh.run("drill", "configs")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	drill, _ := fresh.showJSON("latest", "--plan", "configs")
	assert.Equal(t, engine.KindDrill, drill.Kind)
	assert.Equal(t, "dr-1", drill.Host)
	assert.Equal(t, src1.ID, drill.SourceRun, "the drill read db-1's backup")

	r = db2.run("apply", backup(db2))
	require.Equal(t, 0, r.code, r.stderr)
	r = fresh.run("drill", "configs")
	assert.Equal(t, 2, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stderr, "backups from 2 hosts (db-1, db-2): choose one with --host")
	r = fresh.run("drill", "configs", "--host", "db-2")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	src2, _ := db2.showJSON("latest", "--plan", "configs")
	drill, _ = fresh.showJSON("latest", "--plan", "configs")
	assert.Equal(t, src2.ID, drill.SourceRun)
	// A host with backups of its own drills its own by default.
	r = db1.run("drill", "configs")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	drill, _ = db1.showJSON("latest", "--plan", "configs")
	assert.Equal(t, src1.ID, drill.SourceRun)
}
