package steps

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
	"github.com/planrun/planrun/internal/qdrantdouble"
	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/internal/childenv"
)

// preflightOf writes plan (0600) and runs the preflight checks on it as
// apply would prepare it, with environ as the process environment.
func preflightOf(t *testing.T, plan string, environ []string, o engine.PreflightOptions) []engine.PreflightCheck {
	t.Helper()
	file := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(file, []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := engine.LoadFile(file, All())
	if err != nil {
		t.Fatal(err)
	}
	scope, err := engine.Prepare(p, engine.Invocation{Environ: environ})
	if err != nil {
		t.Fatal(err)
	}
	return engine.Preflight(context.Background(), p, scope, o)
}

// checkOf finds the check of a kind (and target substring) or fails.
func checkOf(t *testing.T, checks []engine.PreflightCheck, kind, target string) engine.PreflightCheck {
	t.Helper()
	for _, c := range checks {
		if c.Check == kind && strings.Contains(c.Target, target) {
			return c
		}
	}
	t.Fatalf("no %s check on %q in:\n%s", kind, target, checksText(checks))
	return engine.PreflightCheck{}
}

func checksText(checks []engine.PreflightCheck) string {
	var b strings.Builder
	for _, c := range checks {
		b.WriteString(c.String() + "\n")
	}
	return b.String()
}

func wantCheck(t *testing.T, c engine.PreflightCheck, status, reason string) {
	t.Helper()
	if c.Status != status || !strings.Contains(c.Reason, reason) {
		t.Errorf("%s: want %s with %q", c, status, reason)
	}
}

// closedPort is a TCP port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func pgPlan(with string) string {
	return "version: 1\nname: pf\nsteps:\n  - id: db\n    type: pg_dump\n    with:\n" + with + "      output: /nonexistent/planrun-pf/db.dump.zst\n"
}

func TestPreflightPostgres(t *testing.T) {
	pgEnv(t)
	euid := os.Geteuid()

	// A correct setup: every check passes.
	checks := preflightOf(t, pgPlan("      database: postgres\n"), os.Environ(), engine.PreflightOptions{Euid: euid})
	if engine.PreflightFailed(checks) {
		t.Fatalf("a correct setup failed:\n%s", checksText(checks))
	}
	wantCheck(t, checkOf(t, checks, "postgres", "/postgres"), engine.CheckOK, "connected, server version 15")
	wantCheck(t, checkOf(t, checks, "tool-version", "pg_dump"), engine.CheckOK, ", server 15")
	wantCheck(t, checkOf(t, checks, "tool", "psql"), engine.CheckOK, "/psql")

	// Server down: nothing listens on the port.
	port := closedPort(t)
	checks = preflightOf(t, pgPlan(fmt.Sprintf("      host: 127.0.0.1\n      port: %d\n      database: postgres\n", port)),
		os.Environ(), engine.PreflightOptions{Euid: euid})
	wantCheck(t, checkOf(t, checks, "postgres", fmt.Sprint(port)), engine.CheckFail, "Connection refused")

	// A client older than the server. Debian 12 has no older pg_dump than
	// the server's 15, so a wrapper stands in for one: it reports 13.11
	// and would run the real pg_dump otherwise.
	real := testenv.RequireTool(t, "pg_dump")
	stub := filepath.Join(t.TempDir(), "pg_dump")
	script := "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) 13.11 (Debian 13.11-1)'; exit 0; fi\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(stub, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	checks = preflightOf(t, pgPlan("      database: postgres\n      pg_dump: "+stub+"\n"), os.Environ(), engine.PreflightOptions{Euid: euid})
	wantCheck(t, checkOf(t, checks, "tool-version", stub), engine.CheckFail, "pg_dump 13.11 is older than the server (15)")
}

func TestPreflightPostgresWrongPassword(t *testing.T) {
	pw := "pf-right-" + offsiteSuffix(t)
	port := pgPasswordCluster(t, pw)
	clean := childenv.Unset(os.Environ(), "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGPASSFILE")
	with := "      host: 127.0.0.1\n      port: " + port + "\n      user: postgres\n      password_env: PF_PW\n      database: postgres\n"

	checks := preflightOf(t, pgPlan(with), append(clean, "PF_PW="+pw), engine.PreflightOptions{Euid: os.Geteuid()})
	wantCheck(t, checkOf(t, checks, "postgres", port), engine.CheckOK, "connected")

	wrong := "pf-wrong-" + offsiteSuffix(t)
	checks = preflightOf(t, pgPlan(with), append(clean, "PF_PW="+wrong), engine.PreflightOptions{Euid: os.Geteuid()})
	c := checkOf(t, checks, "postgres", port)
	wantCheck(t, c, engine.CheckFail, `password authentication failed for user "postgres"`)
	if strings.Contains(checksText(checks), wrong) {
		t.Errorf("the password is in the checks:\n%s", checksText(checks))
	}
}

func TestPreflightRestic(t *testing.T) {
	r := newResticRepo(t, "")
	r.restic(t, "init")
	plan := func(pwFile string) string {
		return "version: 1\nname: pf\nsteps:\n  - id: offsite\n    type: restic-check\n    with:\n      repository: " + r.repo +
			"\n      password_file: " + pwFile + "\n"
	}
	checks := preflightOf(t, plan(r.pwFile), os.Environ(), engine.PreflightOptions{Euid: os.Geteuid()})
	wantCheck(t, checkOf(t, checks, "restic", r.repo), engine.CheckOK, "opens with its password")
	wantCheck(t, checkOf(t, checks, "secret-file", r.pwFile), engine.CheckOK, "mode 0600")

	// A wrong password in a group-readable file: both fail, by name.
	bad := filepath.Join(t.TempDir(), "wrong.pass")
	if err := os.WriteFile(bad, []byte("not the password\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bad, 0o640); err != nil { // whatever the umask
		t.Fatal(err)
	}
	checks = preflightOf(t, plan(bad), os.Environ(), engine.PreflightOptions{Euid: os.Geteuid()})
	wantCheck(t, checkOf(t, checks, "restic", r.repo), engine.CheckFail, "wrong password")
	wantCheck(t, checkOf(t, checks, "secret-file", bad), engine.CheckFail, "mode 0640: group or others can access it")

	// No repository there yet: restic-init's job, a warning.
	checks = preflightOf(t, strings.Replace(plan(r.pwFile), r.repo, r.repo+"-none", 1), os.Environ(), engine.PreflightOptions{Euid: os.Geteuid()})
	wantCheck(t, checkOf(t, checks, "restic", r.repo+"-none"), engine.CheckWarn, "no repository there yet")
}

func TestPreflightMongoAndRclone(t *testing.T) {
	vals := testenv.Require(t, "MongoDB-wire server (scripts/testenv.sh)", "MONGO_URI")
	remote := rcloneRemote(t)
	plan := func(uri, dest string) string {
		return "version: 1\nname: pf\nsteps:\n  - id: mongo\n    type: mongodump\n    with: {uri: \"" + uri + "\", output: /nonexistent/m.archive.zst}\n" +
			"  - id: upload\n    type: rclone-copy\n    with: {source: /nonexistent/m, dest: \"" + dest + "\"}\n"
	}
	checks := preflightOf(t, plan(vals["MONGO_URI"], remote+"/pf-"+offsiteSuffix(t)), os.Environ(), engine.PreflightOptions{Euid: os.Geteuid()})
	wantCheck(t, checkOf(t, checks, "mongodb", ""), engine.CheckOK, "ping")
	wantCheck(t, checkOf(t, checks, "rclone", remote), engine.CheckOK, "") // S3 has no directories: a new prefix lists (empty)

	port := closedPort(t)
	env := childenv.Set(os.Environ(), "RCLONE_CONFIG_TESTS3_SECRET_ACCESS_KEY", "wrong-"+offsiteSuffix(t))
	checks = preflightOf(t, plan(fmt.Sprintf("mongodb://127.0.0.1:%d/", port), remote+"/pf"), env, engine.PreflightOptions{Euid: os.Geteuid()})
	wantCheck(t, checkOf(t, checks, "mongodb", fmt.Sprint(port)), engine.CheckFail, "MongoDB unreachable")
	wantCheck(t, checkOf(t, checks, "rclone", remote), engine.CheckFail, "SignatureDoesNotMatch")
}

// A plan that root runs must be writable by root only: preflight says so
// and apply refuses it.
func TestPreflightWritablePlanRunAsRoot(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plan.yaml")
	src := "version: 1\nname: pf\nsteps:\n  - id: x\n    type: exec\n    with: {command: [\"true\"]}\n"
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o666); err != nil {
		t.Fatal(err)
	}
	p, err := engine.LoadFile(file, All())
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.PlanFileSafe(file, 0); err == nil || !strings.Contains(err.Error(), "mode 0666 and planrun runs as root: group or others can write it") {
		t.Fatalf("PlanFileSafe: %v", err)
	}
	if err := engine.PlanFileSafe(file, 1000); err != nil {
		t.Errorf("not as root: %v", err)
	}
	if os.Geteuid() == 0 {
		_, err := engine.Prepare(p, engine.Invocation{Environ: os.Environ()})
		if err == nil || !strings.Contains(err.Error(), "plan file "+file+" has mode 0666") {
			t.Errorf("apply's Prepare as root: %v", err)
		}
		if err := os.Chmod(file, 0o644); err != nil {
			t.Fatal(err)
		}
		scope, err := engine.Prepare(p, engine.Invocation{Environ: os.Environ()})
		if err != nil {
			t.Fatalf("a safe plan refused: %v", err)
		}
		checks := engine.Preflight(context.Background(), p, scope, engine.PreflightOptions{Euid: 0})
		wantCheck(t, checkOf(t, checks, "plan-file", file), engine.CheckOK, "not writable by others")
		os.Chmod(file, 0o666)
		checks = engine.Preflight(context.Background(), p, scope, engine.PreflightOptions{Euid: 0})
		wantCheck(t, checkOf(t, checks, "plan-file", file), engine.CheckFail, "group or others can write it")
	}
}

// The disk check predicts from the sizes earlier runs recorded: 10 MiB
// of artifacts do not fit a 4 MiB filesystem.
func TestPreflightDiskRoomFromHistory(t *testing.T) {
	dir := testenv.Tmpfs(t, "4m")
	st, err := store.Open(filepath.Join(t.TempDir(), "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	record := func(id string, size int64) {
		started := time.Now().Add(-time.Hour).UTC()
		ctx := context.Background()
		host, _ := os.Hostname() // this host's runs: the prediction reads no other host's
		run := engine.RunRecord{ID: id, Plan: "pf", Host: host, Started: started, Status: engine.StatusRunning}
		must(t, st.StartRun(ctx, run))
		must(t, st.RecordAttempt(ctx, engine.AttemptRecord{RunID: id, StepID: "archive", StepType: "tar", Attempt: 1,
			Status: engine.StatusSuccess, Started: started, Finished: started,
			Records: []engine.ArtifactRecord{{Path: dir + "/backups/old-" + id + ".tar.zst", Size: size}}}))
		run.Status, run.Finished = engine.StatusSuccess, started.Add(time.Minute)
		must(t, st.FinishRun(ctx, run))
	}
	plan := "version: 1\nname: pf\nsteps:\n  - id: archive\n    type: tar\n    with: {paths: [/etc/hostname], output: " + dir + "/backups/new.tar.zst}\n"

	record("run-1", 1<<20)
	checks := preflightOf(t, plan, os.Environ(), engine.PreflightOptions{Euid: os.Geteuid(), History: st})
	wantCheck(t, checkOf(t, checks, "disk", dir), engine.CheckOK, "the artifacts of archive need about 1.0 MiB")

	record("run-2", 10<<20)
	checks = preflightOf(t, plan, os.Environ(), engine.PreflightOptions{Euid: os.Geteuid(), History: st})
	wantCheck(t, checkOf(t, checks, "disk", dir), engine.CheckFail, "too little room: the artifacts of archive need about 10.0 MiB (the largest of their last 14 runs), 4.0 MiB available")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPreflightQdrantAPIKey(t *testing.T) {
	_, srv := qdrantFixture(t, qdrantdouble.Options{APIKey: "qdrant-key-s3cr3t"})
	plan := "version: 1\nname: pf\nsteps:\n  - id: vectors\n    type: qdrant-snapshot\n    with: {url: " + srv.URL +
		", api_key_env: QDRANT_API_KEY, collections: [docs], output: /nonexistent/q.snapshot.zst}\n"
	checks := preflightOf(t, plan, append(os.Environ(), "QDRANT_API_KEY=qdrant-key-s3cr3t"), engine.PreflightOptions{Euid: os.Geteuid()})
	wantCheck(t, checkOf(t, checks, "qdrant", srv.URL), engine.CheckOK, "answers with the API key")
	checks = preflightOf(t, plan, append(os.Environ(), "QDRANT_API_KEY=wrong-key"), engine.PreflightOptions{Euid: os.Geteuid()})
	wantCheck(t, checkOf(t, checks, "qdrant", srv.URL), engine.CheckFail, "401")
}

func TestPreflightRabbitMQAPICredentials(t *testing.T) {
	vals := testenv.Require(t, "RabbitMQ management API (scripts/testenv.sh)", "RABBITMQ_MGMT_URL", "RABBITMQ_USER", "RABBITMQ_PASS")
	plan := "version: 1\nname: pf\nsteps:\n  - id: rabbit\n    type: http-get\n    with:\n      url: " + vals["RABBITMQ_MGMT_URL"] +
		"/api/definitions\n      basic_auth: {user: " + vals["RABBITMQ_USER"] + ", password_env: PF_RABBIT}\n      expect_json: true\n" +
		"      save: {output: /nonexistent/defs.json.zst}\n"
	checks := preflightOf(t, plan, append(os.Environ(), "PF_RABBIT="+vals["RABBITMQ_PASS"]), engine.PreflightOptions{Euid: os.Geteuid()})
	wantCheck(t, checkOf(t, checks, "http", "/api/definitions"), engine.CheckOK, "GET answered 200")
	wrong := "wrong-" + offsiteSuffix(t)
	checks = preflightOf(t, plan, append(os.Environ(), "PF_RABBIT="+wrong), engine.PreflightOptions{Euid: os.Geteuid()})
	wantCheck(t, checkOf(t, checks, "http", "/api/definitions"), engine.CheckFail, "401")
	if strings.Contains(checksText(checks), wrong) {
		t.Errorf("the password is in the checks:\n%s", checksText(checks))
	}
	// Nothing listens: the host check fails before any request.
	checks = preflightOf(t, strings.Replace(plan, vals["RABBITMQ_MGMT_URL"], fmt.Sprintf("http://127.0.0.1:%d", closedPort(t)), 1),
		os.Environ(), engine.PreflightOptions{Euid: os.Geteuid()})
	wantCheck(t, checkOf(t, checks, "http", "127.0.0.1"), engine.CheckFail, "does not accept connections")
}
