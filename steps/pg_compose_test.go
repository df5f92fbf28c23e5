package steps

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planrun/planrun/internal/testenv"
)

// A Compose service of its own project (the test image's PostgreSQL 15, as
// scripts/testenv.sh runs it): pg_dump and pg_restore with compose:
// {project_dir, service} run through `docker compose exec -T`. Round trip
// with identical counts and content over TCP with the password, which
// crosses as -e PGPASSWORD and is never in an argv on the host (compose's
// plugin process included); nothing is left in the container's temp dirs.
func TestPgComposeRoundTrip(t *testing.T) {
	docker := testenv.RequireCompose(t)
	image := testenv.Require(t, "the test containers' image (scripts/testenv.sh)", "CONTAINER_IMAGE")["CONTAINER_IMAGE"]
	dir := t.TempDir()
	project := uniqueName("planrun_compose")
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(fmt.Sprintf(`name: %s
services:
  db:
    image: %s
    entrypoint: [/opt/planrun/pg-entrypoint.sh]
    network_mode: none
    stop_signal: SIGINT
    volumes: ["/usr:/usr:ro"]
`, project, image)), 0o600); err != nil {
		t.Fatal(err)
	}
	compose := func(args ...string) (string, error) {
		out, err := exec.Command(docker, append([]string{"compose", "--project-directory", dir}, args...)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("docker compose %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return strings.TrimSpace(string(out)), nil
	}
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Cleanup(func() { _, _ = compose("down", "--volumes", "--timeout", "20") })
	must(compose("create", "db"))
	// The first start takes its password from a file copied in from a tar
	// stream (scripts/container-images.sh): never in an argv or the config.
	pw := "C0mpose-" + uniqueName("pw")
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	if err := tw.WriteHeader(&tar.Header{Name: "password", Mode: 0o600, Size: int64(len(pw))}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write([]byte(pw))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	cp := exec.Command(docker, "cp", "-", must(compose("ps", "-a", "-q", "db"))+":/run/planrun-setup/")
	cp.Stdin = &tarball
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("docker cp: %v: %s", err, out)
	}
	must(compose("start", "db"))
	psql := func(db, sql string) string {
		t.Helper()
		return must(compose("exec", "-T", "--user", "postgres", "db", "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql))
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		_, err := compose("exec", "-T", "db", "pg_isready", "-q", "-h", "127.0.0.1")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Compose service's PostgreSQL never became ready: %v", err)
		}
	}
	psql("postgres", "CREATE DATABASE app")
	psql("app", `CREATE TABLE items(id int PRIMARY KEY, v text); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 50000) g;
CREATE TABLE "Mixed Case"(k text PRIMARY KEY); INSERT INTO "Mixed Case" SELECT 'k'||g FROM generate_series(1, 30) g;`)
	sum := func() string {
		return psql("app", `SELECT md5(string_agg(v, ',' ORDER BY id)) || (SELECT count(*) FROM "Mixed Case") FROM items`)
	}
	before := sum()

	clean := []string{"PGHOST=", "PGPORT=", "PGUSER=", "PGPASSWORD=", "PG_SECRET=" + pw}
	target := fmt.Sprintf("host: 127.0.0.1\nuser: postgres\npassword_env: PG_SECRET\ndatabase: app\ncompose: {project_dir: %s, service: db}\n", dir)
	out := filepath.Join(t.TempDir(), "app.dump.zst")
	s := startSampler(pw)
	_, rec, err := runPgDump(context.Background(), dbEnv(t, clean...), dbDecode(t, PgDump, target+"output: "+out))
	s.finish(t, "docker")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Counts["rows:public.items"] != 50000 || rec.Counts["rows:public.Mixed Case"] != 30 ||
		rec.Source["compose_service"] != "db" || rec.Source["compose_project_dir"] != dir ||
		!strings.HasPrefix(rec.Tools["pg_dump"], "pg_dump (PostgreSQL) 15") {
		t.Fatalf("record: source %v, counts %v, tools %v", rec.Source, rec.Counts, rec.Tools)
	}
	psql("postgres", "DROP DATABASE app WITH (FORCE)")

	pgRestoreMatches(t, dbEnv(t, clean...), target+"input: "+out, pw, rec, sum, before)
	if left := must(compose("exec", "-T", "db", "sh", "-c", "ls -A /tmp /var/tmp")); strings.Contains(left, "pgpass") || strings.Contains(left, ".planrun-") {
		t.Errorf("left in the container's temp dirs:\n%s", left)
	}
}
