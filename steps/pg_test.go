package steps

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"syscall"
	"testing"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

// pgEnv requires the shared PostgreSQL of scripts/testenv.sh.
func pgEnv(t *testing.T) {
	t.Helper()
	testenv.Require(t, "PostgreSQL (scripts/testenv.sh)", "PGHOST", "PGPORT", "PGUSER")
	testenv.RequireTool(t, "pg_dump")
	testenv.RequireTool(t, "psql")
}

func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// psqlT runs SQL with psql (test-side tooling), returning trimmed output.
func psqlT(t testing.TB, db string, sql string, env ...string) string {
	t.Helper()
	cmd := exec.Command("psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql -d %s -c %q: %v: %s", db, sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

// pgScratchDB creates a database with known rows and drops it at cleanup.
func pgScratchDB(t *testing.T, rows int) string {
	t.Helper()
	db := uniqueName("planrun_t")
	psqlT(t, "postgres", "CREATE DATABASE "+db)
	t.Cleanup(func() {
		exec.Command("psql", "-X", "-q", "-d", "postgres", "-c", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)").Run()
	})
	psqlT(t, db, fmt.Sprintf(`CREATE TABLE items(id int PRIMARY KEY, name text, price numeric(10,2), tags text[], created timestamptz);
CREATE TABLE "Mixed Case"(k text PRIMARY KEY, v jsonb);
INSERT INTO items SELECT g, 'item ' || g || repeat('x', g %% 50), g * 1.25, ARRAY['a'||g%%3, 'b'], timestamptz '2024-01-01' + g * interval '1 minute' FROM generate_series(1, %d) g;
INSERT INTO "Mixed Case" SELECT 'k'||g, jsonb_build_object('n', g, 's', 'ü€'||g) FROM generate_series(1, 100) g;
CREATE INDEX items_name ON items(name);`, rows))
	return db
}

// pgChecksum is an md5 over ordered COPY output of both tables.
func pgChecksum(t testing.TB, db string) string {
	t.Helper()
	a := psqlT(t, db, "COPY (SELECT * FROM items ORDER BY id) TO STDOUT")
	b := psqlT(t, db, `COPY (SELECT * FROM "Mixed Case" ORDER BY k) TO STDOUT`)
	sum := md5.Sum([]byte(a + "\n--\n" + b))
	return hex.EncodeToString(sum[:])
}

func TestPgDumpRestoreRoundTrip(t *testing.T) {
	pgEnv(t)
	for _, tc := range []struct {
		format, compress string
		jobs             int
		encrypt          bool
	}{
		{"custom", "zstd", 0, true},
		{"custom", "zstd", 2, true},  // parallel restore: spooled to the private temp dir
		{"custom", "none", 2, false}, // parallel restore straight from the (pg-compressed) artifact
		{"plain", "gzip", 0, true},
		{"tar", "zstd", 0, false},
	} {
		name := fmt.Sprintf("%s-%s-j%d-enc%v", tc.format, tc.compress, tc.jobs, tc.encrypt)
		t.Run(name, func(t *testing.T) {
			db := pgScratchDB(t, 5000)
			want := pgChecksum(t, db)
			idFile, recip := dbAgeKeys(t)
			out := filepath.Join(t.TempDir(), "db.dump")
			enc := ""
			if tc.encrypt {
				enc = "\nencrypt: {recipients: [" + recip + "]}"
			}
			env := dbEnv(t)
			res, err := dbRun(t, PgDump, env, fmt.Sprintf("database: %s\nformat: %s\ncompress: %s\noutput: %s%s",
				db, tc.format, tc.compress, out, enc))
			if err != nil {
				t.Fatal(err)
			}
			assertCountedOnce(t, env, res)
			if v, _ := res["server_version"].(string); !strings.HasPrefix(v, "15") {
				t.Errorf("server_version = %q", res["server_version"])
			}
			if res["path"] != out || res["size"].(int64) == 0 || len(res["sha256"].(string)) != 64 {
				t.Errorf("outputs: %v", res)
			}
			psqlT(t, "postgres", "DROP DATABASE "+db)

			restore := fmt.Sprintf("database: %s\nrecreate_database: true\ninput: %s\nidentity_file: %s\nverify_counts: [items, public.Mixed Case]",
				db, out, idFile)
			if tc.format != "plain" {
				restore += "\nno_owner: true"
			}
			if tc.jobs > 0 {
				restore += fmt.Sprintf("\njobs: %d", tc.jobs)
			} else {
				restore += "\nsingle_transaction: true"
			}
			env = dbEnv(t)
			rres, err := dbRun(t, PgRestore, env, restore)
			if err != nil {
				t.Fatal(err)
			}
			counts := rres["counts"].(map[string]int64)
			if counts["rows:public.items"] != 5000 || counts["rows:public.Mixed Case"] != 100 || rres["format"] != tc.format {
				t.Errorf("restore outputs: %v", rres)
			}
			if got := pgChecksum(t, db); got != want {
				t.Errorf("content checksum after restore %s, want %s", got, want)
			}
			if dir, err := env.TempDir(); err != nil {
				t.Fatal(err)
			} else if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("temp dir not cleaned: %v", ents)
			}
		})
	}
}

func TestPgRestoreScratchDrillDropsAfter(t *testing.T) {
	pgEnv(t)
	db := pgScratchDB(t, 100)
	out := filepath.Join(t.TempDir(), "db.dump.zst")
	if _, err := dbRun(t, PgDump, dbEnv(t), fmt.Sprintf("database: %s\noutput: %s", db, out)); err != nil {
		t.Fatal(err)
	}
	scratch := uniqueName("planrun_drill")
	res, err := dbRun(t, PgRestore, dbEnv(t), fmt.Sprintf("database: %s\nrecreate_database: true\ndrop_after: true\ninput: %s\nverify_counts: [items]", scratch, out))
	if err != nil {
		t.Fatal(err)
	}
	if res["counts"].(map[string]int64)["rows:public.items"] != 100 {
		t.Errorf("counts: %v", res["counts"])
	}
	if n := psqlT(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = '"+scratch+"'"); n != "0" {
		t.Errorf("scratch database %s still exists", scratch)
	}
	if n := psqlT(t, db, "SELECT count(*) FROM items"); n != "100" { // source untouched
		t.Errorf("source has %s rows", n)
	}
}

// A pg_dump that fails after streaming everything must not leave a backup.
func TestPgDumpFailureAfterStreamingDiscardsArtifact(t *testing.T) {
	pgEnv(t)
	db := pgScratchDB(t, 2000)
	real, _ := exec.LookPath("pg_dump")
	wrapper := filepath.Join(t.TempDir(), "pg_dump-then-fail")
	script := "#!/bin/sh\n" + real + " \"$@\" || exit\necho 'pg_dump: error: query failed: permission denied for table secrets' >&2\nexit 1\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := dbEnv(t)
	_, err := dbRun(t, PgDump, env, fmt.Sprintf("database: %s\npg_dump: %s\noutput: %s/db.dump.zst", db, wrapper, dir))
	if err == nil || !strings.Contains(err.Error(), "permission denied for table secrets") || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("err = %v", err)
	}
	if streamed := env.Progress.Done(); streamed < 100<<10 {
		t.Fatalf("only %d bytes streamed: the failure was not after streaming", streamed)
	}
	dbNoArtifact(t, dir)
}

// pg_dump killed in the middle of the stream: step fails, no artifact.
func TestPgDumpKilledMidStreamDiscardsArtifact(t *testing.T) {
	pgEnv(t)
	db := pgScratchDB(t, 200000) // ~25 MB of dump
	dir := t.TempDir()
	env := dbEnv(t)
	var once sync.Once
	killed := make(chan int, 1)
	env.Progress = engine.NewProgress(func(n int64) {
		if n < 1<<20 {
			return
		}
		once.Do(func() {
			pid := findProc(t, "pg_dump", db)
			if pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			killed <- pid
		})
	}, nil)
	_, err := dbRun(t, PgDump, env, fmt.Sprintf("database: %s\noutput: %s/db.dump.zst", db, dir))
	if pid := <-killed; pid <= 0 {
		t.Fatal("pg_dump process not found to kill")
	}
	if err == nil || !strings.Contains(err.Error(), "pg_dump: killed by") {
		t.Fatalf("err = %v", err)
	}
	dbNoArtifact(t, dir)
}

// findProc returns the pid of a process whose argv[0] ends in name and whose
// command line contains marker.
func findProc(t testing.TB, name, marker string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		args := bytes.Split(b, []byte{0})
		if strings.HasSuffix(string(args[0]), name) && bytes.Contains(b, []byte(marker)) {
			return pid
		}
	}
	return 0
}

func TestPgDumpValidate(t *testing.T) {
	for with, want := range map[string]string{
		"output: /b/x": "give database",
		"database: a\nuri: postgres://h/a\noutput: /b/x":         "not both",
		"database: a\nextra_args: [--file=/tmp/x]\noutput: /b/x": "set by the step",
		"database: a\nextra_args: [-Fd]\noutput: /b/x":           "set by the step",
		"database: a\nextra_args: [--fil=/tmp/x]\noutput: /b/x":  "set by the step", // getopt_long abbreviation
		"database: a\nextra_args: [--passw]\noutput: /b/x":       "set by the step",
		"database: a\nformat: directory\noutput: /b/x":           "must be one of",
	} {
		if _, probs := dbTryDecode(PgDump, with); len(probs) == 0 || !strings.Contains(fmt.Sprint(probs), want) {
			t.Errorf("%q: problems %v, want %q", with, probs, want)
		}
	}
	for with, want := range map[string]string{
		"database: a\ninput: x\nformat: plain\nclean: true":              "plain",
		"database: a\ninput: x\njobs: 4\nsingle_transaction: true":       "single_transaction",
		"database: a\ninput: x\ndrop_after: true":                        "drop_after",
		"database: postgres\ninput: x\ncreate: true\nverify_counts: [t]": "verify_counts cannot be combined with create",
	} {
		if _, probs := dbTryDecode(PgRestore, with); len(probs) == 0 || !strings.Contains(fmt.Sprint(probs), want) {
			t.Errorf("%q: problems %v, want %q", with, probs, want)
		}
	}
}

// Options that merely start like a refused one stay allowed.
func TestPgDumpExtraArgsAllowed(t *testing.T) {
	with := "database: a\noutput: /b/x\nextra_args: [--no-owner, --exclude-table-data=audit_*, --schema-only, -n, public, --file-extra, --hostile]"
	if _, probs := dbTryDecode(PgDump, with); len(probs) != 0 {
		t.Errorf("problems %v, want none", probs)
	}
}

func TestPgDumpPreviewHasNoSecrets(t *testing.T) {
	env := dbEnv(t)
	p := dbDecode(t, PgDump, "uri: postgres://app:hunter2pw@db.example:5433/app?sslmode=require\noutput: /b/app.dump.zst")
	lines := PgDump.Preview(env, p)
	joined := strings.Join(lines, "\n")
	if strings.Contains(joined, "hunter2pw") || !strings.Contains(joined, "--dbname=") || !strings.Contains(joined, "--compress=0") {
		t.Errorf("preview:\n%s", joined)
	}
}

// A truncated artifact must not restore partially: psql is stopped before
// it sees end of input, so its single transaction never commits.
func TestPgRestoreTruncatedArtifactCommitsNothing(t *testing.T) {
	pgEnv(t)
	db := pgScratchDB(t, 100000)
	out := filepath.Join(t.TempDir(), "db.sql.zst")
	if _, err := dbRun(t, PgDump, dbEnv(t), fmt.Sprintf("database: %s\nformat: plain\noutput: %s", db, out)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if err := os.WriteFile(out, b[:len(b)*3/4], 0o600); err != nil {
		t.Fatal(err)
	}
	target := uniqueName("planrun_trunc")
	t.Cleanup(func() {
		exec.Command("psql", "-X", "-q", "-d", "postgres", "-c", "DROP DATABASE IF EXISTS "+target).Run()
	})
	_, err := dbRun(t, PgRestore, dbEnv(t), fmt.Sprintf("database: %s\nrecreate_database: true\nsingle_transaction: true\ninput: %s", target, out))
	if err == nil || !strings.Contains(err.Error(), "reading input") {
		t.Fatalf("err = %v", err)
	}
	if n := psqlT(t, target, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"); n != "0" {
		t.Errorf("%s tables committed from a truncated dump", n)
	}
}

// A uri without a password (the password coming from password_env) runs:
// only the password is secret, not the whole URI that goes to --dbname.
func TestPgDumpURIWithPasswordEnv(t *testing.T) {
	pgEnv(t)
	db := pgScratchDB(t, 10)
	uri := fmt.Sprintf("postgres://%s@%s:%s/%s?sslmode=disable", os.Getenv("PGUSER"), os.Getenv("PGHOST"), os.Getenv("PGPORT"), db)
	out := filepath.Join(t.TempDir(), "db.dump.zst")
	res, err := dbRun(t, PgDump, dbEnv(t, "APP_PGPASS=unused-with-trust-auth"), fmt.Sprintf("uri: %s\npassword_env: APP_PGPASS\noutput: %s", uri, out))
	if err != nil {
		t.Fatal(err)
	}
	if res["path"] != out {
		t.Errorf("outputs: %v", res)
	}
}
