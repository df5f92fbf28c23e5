package steps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/internal/pgsnap"
)

func TestPgContainerValidation(t *testing.T) {
	for with, want := range containerCases("database: a\noutput: /b/x\n", nil) {
		if _, probs := dbTryDecode(PgDump, with); len(probs) == 0 || !strings.Contains(fmt.Sprint(probs), want) {
			t.Errorf("%q: problems %v, want %q", with, probs, want)
		}
	}
	if _, probs := dbTryDecode(PgRestore, "database: a\ninput: x\njobs: 4\ncontainer: {name: c}"); len(probs) == 0 || !strings.Contains(fmt.Sprint(probs), "jobs > 1") {
		t.Errorf("jobs with container: %v", probs)
	}
}

// Dry-run shows the exact engine command line: -e PGPASSWORD, never its value.
func TestPgContainerPreview(t *testing.T) {
	env := dbEnv(t, "PW_APP=hunter2pw")
	p := dbDecode(t, PgDump, "database: chitlaq\nuser: postgres\npassword_env: PW_APP\noutput: /b/x.dump.zst\ncontainer: {name: chitlaq-postgres, engine: docker}")
	joined := strings.Join(PgDump.Preview(env, p), "\n")
	for _, want := range []string{
		`run: docker exec -i -e PGPASSWORD -e PGAPPNAME chitlaq-postgres sh -c 'echo "planrun-exec pid $$" >&2; exec "$@"' planrun-exec psql -X`,
		`run: docker exec -i -e PGPASSWORD chitlaq-postgres sh -c 'echo "planrun-exec pid $$" >&2; exec "$@"' planrun-exec pg_dump --format=custom`,
		"--username=postgres --dbname=chitlaq",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("preview lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "hunter2pw") || strings.Contains(joined, "PGPASSWORD=") {
		t.Errorf("preview shows the password:\n%s", joined)
	}
	r := dbDecode(t, PgRestore, "database: chitlaq\ninput: /b/x\nafter_sql: [ANALYZE]\ncompose: {project_dir: /opt/chitlaq, service: postgres, user: postgres}")
	joined = strings.Join(PgRestore.Preview(env, r), "\n")
	if !strings.Contains(joined, "run: docker compose --project-directory /opt/chitlaq exec -T --user postgres postgres sh -c") ||
		!strings.Contains(joined, "planrun-exec pg_restore --no-password") {
		t.Errorf("restore preview:\n%s", joined)
	}
}

// A backup taken in a container restores into the same container.
func TestPgDumpInverseContainer(t *testing.T) {
	env := dbEnv(t, "PGHOST=host.example")
	p := dbDecode(t, PgDump, "database: chitlaq\noutput: /b/x\ncontainer: {name: chitlaq-postgres, user: postgres}")
	src := p.source(env, &pgsnap.Snapshot{ServerVersion: "15.8", Database: "chitlaq"})
	if src["host"] != "" || src["container_name"] != "chitlaq-postgres" {
		t.Fatalf("source %v", src)
	}
	with, err := pgDumpInverse(engine.ArtifactRecord{Path: "/b/x", Source: src}, engine.RestoreTarget{Input: "/b/x"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := with["container"].(map[string]any)
	if c["name"] != "chitlaq-postgres" || c["user"] != "postgres" {
		t.Fatalf("with %v", with)
	}
	if _, probs := dbTryDecode(PgRestore, "database: chitlaq\ninput: /b/x\ncontainer: {name: chitlaq-postgres, user: postgres}"); len(probs) > 0 {
		t.Fatal(probs)
	}
}

// A missing container fails the step with an error naming it. The engine
// here is a stand-in printing Docker's message (the real-container tests
// cover the real one).
func TestPgContainerMissing(t *testing.T) {
	dir := t.TempDir()
	script := "#!/bin/sh\necho \"Error: No such container: $5\" >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := dbEnv(t, "PATH="+dir+":"+os.Getenv("PATH"))
	out := filepath.Join(t.TempDir(), "x.dump")
	p := dbDecode(t, PgDump, "database: a\noutput: "+out+"\ncontainer: {name: kaleem-pg}")
	_, err := PgDump.Run(context.Background(), env, p)
	if err == nil || !strings.Contains(err.Error(), `container "kaleem-pg" not found`) {
		t.Fatalf("err %v", err)
	}
	dbNoArtifact(t, filepath.Dir(out))
}

// fakeEngine writes a stand-in for `docker` into a new PATH directory: it
// runs `exec -i [--user U] [-e NAME]... CONTAINER program args...` on the
// host, with only the -e names crossing (as docker passes them from its
// client's environment) and no PGPASSFILE. It proves the wrapping, the
// streaming and the secret handling end to end against a real server
// where no Docker daemon runs; the real-container test below is the one
// that proves the engine itself. With FAKE_ENGINE_KILL set, the "container"
// streams 64 KiB of pg_dump's output and then reports the tool killed (137).
func fakeEngine(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
if [ "$1" = container ]; then echo true; exit 0; fi
[ "$1" = exec ] || { echo "fake engine: unexpected $1" >&2; exit 2; }
shift
[ "$1" = -i ] && shift
pass=" "
while :; do
  case "$1" in
    --user) shift 2 ;;
    -e) pass="$pass$2 "; shift 2 ;;
    *) break ;;
  esac
done
shift
case "$pass" in *" PGPASSWORD "*) ;; *) unset PGPASSWORD ;; esac
unset PGPASSFILE
# "$@" is: sh -c <announce the pid; exec the tool> planrun-exec TOOL ARGS...
if [ -n "$FAKE_ENGINE_KILL" ] && [ "$5" = pg_dump ] && [ "$6" != --version ]; then "$@" | head -c 65536; exit 137; fi
exec "$@"
`
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pg_dump and pg_restore through the engine path: a password-protected
// server, the password crossing only as -e PGPASSWORD (the sampler watches
// every argv), identical counts after the round trip, and a tool killed
// mid-stream failing the step with no artifact.
func TestPgContainerPathRoundTrip(t *testing.T) {
	testenv.RequireTool(t, "pg_dump")
	const pw = "C0ntainer:S3cret\\pw-91bd"
	port := pgPasswordCluster(t, pw)
	base := []string{"PGHOST=127.0.0.1", "PGPORT=" + port, "PGUSER=postgres", "PGPASSWORD=" + pw}
	psqlT(t, "postgres", "CREATE DATABASE app", base...)
	psqlT(t, "app", "CREATE TABLE t(id int primary key, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1,50000) g", base...)
	bin := fakeEngine(t)
	// Inside the "container", libpq's defaults point at the server (as its
	// socket would); the password is not among them.
	clean := []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "PGHOST=127.0.0.1", "PGPORT=" + port, "PGUSER=postgres", "PGPASSWORD=", "PG_SECRET=" + pw}
	out := filepath.Join(t.TempDir(), "app.dump.zst")
	ctr := "container: {name: app-postgres, engine: docker, user: postgres}"

	s := startSampler(pw, "S3cret")
	env := dbEnv(t, clean...)
	p := dbDecode(t, PgDump, "database: app\npassword_env: PG_SECRET\noutput: "+out+"\n"+ctr)
	_, rec, err := runPgDump(context.Background(), env, p)
	s.finish(t, "pg_dump", "psql")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Counts["rows:public.t"] != 50000 || rec.Source["container_name"] != "app-postgres" || rec.Source["host"] != "" {
		t.Fatalf("record: %v %v", rec.Source, rec.Counts)
	}
	with, err := pgDumpInverse(*rec, engine.RestoreTarget{Input: out, Scratch: true, ScratchSuffix: "_drill"})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := with["container"].(map[string]any); c["name"] != "app-postgres" {
		t.Fatalf("inverse: %v", with)
	}
	psqlT(t, "postgres", "DROP DATABASE app", base...)

	s = startSampler(pw, "S3cret")
	res, err := dbRun(t, PgRestore, dbEnv(t, clean...), "database: app\npassword_env: PG_SECRET\nrecreate_database: true\ninput: "+out+
		"\nverify_counts: [t]\nafter_sql: [ANALYZE]\n"+ctr)
	s.finish(t, "pg_restore", "psql")
	if err != nil {
		t.Fatal(err)
	}
	if n := res["counts"].(map[string]int64)["rows:public.t"]; n != 50000 {
		t.Errorf("restored rows %d, want 50000", n)
	}
	if got := psqlT(t, "app", "SELECT md5(string_agg(v, ',' ORDER BY id)) FROM t", base...); got != psqlT(t, "postgres", "SELECT md5(string_agg(md5(g::text), ',' ORDER BY g)) FROM generate_series(1,50000) g", base...) {
		t.Errorf("content checksum differs: %s", got)
	}

	// The tool dies inside the container after streaming part of the dump.
	dir := t.TempDir()
	_, err = dbRun(t, PgDump, dbEnv(t, append(clean, "FAKE_ENGINE_KILL=1")...), "database: app\npassword_env: PG_SECRET\nformat: plain\ncompress: none\noutput: "+filepath.Join(dir, "x.sql")+"\n"+ctr)
	if err == nil || !strings.Contains(err.Error(), "exit status 137") {
		t.Fatalf("killed tool: err %v", err)
	}
	dbNoArtifact(t, dir)
}

// dockerPsql runs SQL with psql inside the container (test-side tooling).
func dockerPsql(t testing.TB, docker, ctr, db, sql string) string {
	t.Helper()
	out, err := exec.Command(docker, "exec", ctr, "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", db, "-c", sql).CombinedOutput()
	if err != nil {
		t.Fatalf("docker exec psql %q: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

// The round trip through a real container: pg_dump inside it over TCP with
// the password (scram), drop, pg_restore inside it, identical counts and
// content; the password never in any argv on the host (docker's included)
// and nothing left in the container's /tmp; pg_dump killed inside the
// container mid-stream fails the step with no artifact.
func TestPgRealContainerRoundTrip(t *testing.T) {
	docker := testenv.RequireDocker(t)
	pg := testenv.PGContainer(t)
	db := uniqueName("planrun_c")
	dockerPsql(t, docker, pg.Name, "postgres", "CREATE DATABASE "+db)
	t.Cleanup(func() {
		exec.Command(docker, "exec", pg.Name, "psql", "-X", "-q", "-U", "postgres", "-d", "postgres", "-c", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)").Run()
	})
	dockerPsql(t, docker, pg.Name, db, `CREATE TABLE items(id int PRIMARY KEY, v text); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 200000) g;
CREATE TABLE "Mixed Case"(k text PRIMARY KEY); INSERT INTO "Mixed Case" SELECT 'k'||g FROM generate_series(1, 100) g;`)
	sum := func() string {
		return dockerPsql(t, docker, pg.Name, db, "SELECT md5(string_agg(v, ',' ORDER BY id)) || (SELECT count(*) FROM \"Mixed Case\") FROM items")
	}
	before := sum()
	// The host's libpq defaults must not leak into the container.
	clean := []string{"PGHOST=", "PGPORT=", "PGUSER=", "PGPASSWORD=", "PG_SECRET=" + pg.Password}
	ctr := fmt.Sprintf("host: 127.0.0.1\nuser: %s\npassword_env: PG_SECRET\ndatabase: %s\ncontainer: {name: %s}\n", pg.User, db, pg.Name)
	out := filepath.Join(t.TempDir(), "db.dump.zst")

	s := startSampler(pg.Password)
	_, rec, err := runPgDump(context.Background(), dbEnv(t, clean...), dbDecode(t, PgDump, ctr+"output: "+out))
	s.finish(t, "docker")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Counts["rows:public.items"] != 200000 || rec.Counts["rows:public.Mixed Case"] != 100 || rec.Source["container_name"] != pg.Name {
		t.Fatalf("record: %v %v", rec.Source, rec.Counts)
	}
	dockerPsql(t, docker, pg.Name, "postgres", "DROP DATABASE "+db+" WITH (FORCE)")

	pgRestoreMatches(t, dbEnv(t, clean...), ctr+"after_sql: [ANALYZE]\ninput: "+out, pg.Password, rec, sum, before)
	if ls, err := exec.Command(docker, "exec", pg.Name, "sh", "-c", "ls -A /tmp /var/tmp").CombinedOutput(); err != nil || strings.Contains(string(ls), "pgpass") {
		t.Errorf("container temp dirs: %v\n%s", err, ls)
	}

	// pg_dump killed inside the container while it streams: a table large
	// enough that the dump runs for seconds, counts off so pg_dump starts at
	// once; pkill is retried until it finds the dump (its pattern is this
	// dump's own: the snapshot session and other tests' dumps are spared).
	dockerPsql(t, docker, pg.Name, db, "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g+1)::text) AS v FROM generate_series(1, 3000000) g")
	dir := t.TempDir()
	done := make(chan struct{})
	killed := make(chan bool, 1)
	go func() {
		for {
			select {
			case <-done:
				killed <- false
				return
			default:
			}
			if exec.Command(docker, "exec", pg.Name, "pkill", "-KILL", "-f", "pg_dump .*--dbname="+db).Run() == nil {
				killed <- true
				return
			}
		}
	}()
	_, err = dbRun(t, PgDump, dbEnv(t, clean...), ctr+"format: plain\ncounts: false\noutput: "+filepath.Join(dir, "x.sql.zst"))
	close(done)
	if !<-killed {
		t.Fatalf("pg_dump finished before pkill found it (err %v): the check proved nothing", err)
	}
	if err == nil || !strings.Contains(err.Error(), "pg_dump failed, no artifact written") {
		t.Fatalf("killed pg_dump: err %v", err)
	}
	dbNoArtifact(t, dir)

	// A step cancelled (timeout, signal) while pg_dump waits for a lock
	// another session holds: docker exec does not pass the signal on, and
	// a blocked pg_dump never writes, so no broken pipe would stop it; the
	// step must stop it in the container itself.
	locker := exec.Command(docker, "exec", "-i", pg.Name, "psql", "-X", "-q", "-U", "postgres", "-d", db)
	lockIn, err := locker.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	lockOut, err := locker.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := locker.Start(); err != nil {
		t.Fatal(err)
	}
	defer locker.Wait()
	defer lockIn.Close()
	fmt.Fprintln(lockIn, "BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE;\n\\echo locked")
	if line, err := bufio.NewReader(lockOut).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("locker: %q %v", line, err)
	}
	inContainer := func(pattern string) string {
		out, _ := exec.Command(docker, "exec", pg.Name, "pgrep", "-a", "-f", pattern+" .*--dbname="+db).Output()
		return strings.TrimSpace(string(out))
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for ctx.Err() == nil && inContainer("pg_dump") == "" {
		}
		cancel()
	}()
	_, _, err = runPgDump(ctx, dbEnv(t, clean...), dbDecode(t, PgDump, ctr+"format: plain\ncounts: false\noutput: "+filepath.Join(dir, "y.sql.zst")))
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pg_dump: err %v", err)
	}
	dbNoArtifact(t, dir)
	deadline := time.Now().Add(10 * time.Second)
	for left := inContainer("(pg_dump|psql)"); left != ""; left = inContainer("(pg_dump|psql)") {
		if time.Now().After(deadline) {
			t.Fatalf("still running in the container after the step was cancelled:\n%s", left)
		}
	}
}

// pgRestoreMatches runs pg_restore (with, plus a recreated database in one
// transaction and every table counted) while the sampler watches for
// secret: the restored counts are the dump's, the content checksum (sum)
// is what it was before the dump.
func pgRestoreMatches(t *testing.T, env *engine.Env, with, secret string, rec *engine.ArtifactRecord, sum func() string, before string) {
	t.Helper()
	s := startSampler(secret)
	res, err := dbRun(t, PgRestore, env, "recreate_database: true\nsingle_transaction: true\nverify_counts: ['*']\n"+with)
	s.finish(t, "docker")
	if err != nil {
		t.Fatal(err)
	}
	counts := res["counts"].(map[string]int64)
	for k, v := range rec.Counts {
		if counts[k] != v {
			t.Errorf("%s: restored %d, dumped %d", k, counts[k], v)
		}
	}
	if after := sum(); after != before {
		t.Errorf("content checksum %s, want %s", after, before)
	}
}

// A container that does not exist fails with an error naming it.
func TestPgRealContainerMissing(t *testing.T) {
	testenv.RequireDocker(t)
	dir := t.TempDir()
	_, err := dbRun(t, PgDump, dbEnv(t), "database: a\noutput: "+filepath.Join(dir, "x")+"\ncontainer: {name: planrun-no-such-ctr, engine: docker}")
	if err == nil || !strings.Contains(err.Error(), `container "planrun-no-such-ctr" not found`) {
		t.Fatalf("err %v", err)
	}
	dbNoArtifact(t, dir)
}
