package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/pgconn"
)

// pgCountsDB adds to a pgScratchDB what the count rules are about: another
// schema with a mixed-case name, a partitioned table, an excluded schema,
// an excluded table, a table whose data is excluded.
func pgCountsDB(t *testing.T) string {
	t.Helper()
	db := pgScratchDB(t, 1234)
	psqlT(t, db, `CREATE SCHEMA "Other"; CREATE TABLE "Other".t2(id int); INSERT INTO "Other".t2 SELECT generate_series(1, 7);
CREATE TABLE events(id int, at date) PARTITION BY RANGE (at);
CREATE TABLE events_a PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
CREATE TABLE events_b PARTITION OF events FOR VALUES FROM ('2024-07-01') TO ('2025-01-01');
INSERT INTO events SELECT g, date '2024-01-01' + g * 7 FROM generate_series(0, 49) g;
CREATE SCHEMA audit; CREATE TABLE audit.log(id int); INSERT INTO audit.log VALUES (1), (2), (3);
CREATE TABLE skipme(id int); INSERT INTO skipme VALUES (1);
CREATE TABLE nodata(id int); INSERT INTO nodata VALUES (1), (2);`)
	return db
}

// pgDumpRecord runs pg_dump and returns its outputs and artifact record.
func pgDumpRecord(t *testing.T, env *engine.Env, with string) (engine.Outputs, *engine.ArtifactRecord) {
	t.Helper()
	p := dbDecode(t, PgDump, with)
	env.Secrets.Add(PgDump.Type().SecretValues(p)...)
	out, rec, err := runPgDump(context.Background(), env, p)
	if err != nil {
		t.Fatal(err)
	}
	return out, rec
}

// pgRestoreAll restores an artifact into a fresh database (dropped at
// cleanup) and counts every table there.
func pgRestoreAll(t *testing.T, input string) map[string]int64 {
	t.Helper()
	target := uniqueName("planrun_cnt")
	t.Cleanup(func() {
		exec.Command("psql", "-X", "-q", "-d", "postgres", "-c", "DROP DATABASE IF EXISTS "+target+" WITH (FORCE)").Run()
	})
	res, err := dbRun(t, PgRestore, dbEnv(t), fmt.Sprintf("database: %s\nrecreate_database: true\nno_owner: true\nsingle_transaction: true\ninput: %s\nverify_counts: ['*']", target, input))
	if err != nil {
		t.Fatal(err)
	}
	return res["counts"].(map[string]int64)
}

// The counts are the true counts of exactly the tables whose rows the
// dump holds: checked against the source and against a restore of the dump.
func TestPgDumpCountsFollowSelection(t *testing.T) {
	pgEnv(t)
	db := pgCountsDB(t)
	for _, tc := range []struct {
		name, with string
		want       map[string]int64
	}{
		{"default", "exclude_schemas: [audit]\nexclude_tables: [skipme]\nextra_args: [--exclude-table-data=nodata]", map[string]int64{
			"rows:public.items": 1234, "rows:public.Mixed Case": 100, "rows:Other.t2": 7,
			"rows:public.events": 50, "rows:public.events_a": 26, "rows:public.events_b": 24,
		}},
		// (Tables of other schemas would not restore: -t dumps no schema.)
		{"table patterns", "tables: [public.item*, '\"Mixed Case\"', '*.NoData']", map[string]int64{
			"rows:public.items": 1234, "rows:public.Mixed Case": 100, "rows:public.nodata": 2,
		}},
		{"schema patterns", "schemas: ['\"Other\"', 'aud*']", map[string]int64{"rows:Other.t2": 7, "rows:audit.log": 3}},
		{"schemas in extra_args", "extra_args: [-n, audit, --schema=Other]", map[string]int64{"rows:audit.log": 3}},
		// pg_dump 15 -t parent dumps no partition: the parent is not counted.
		{"partitioned parent alone", "tables: [events, skipme]", map[string]int64{"rows:public.skipme": 1}},
		{"schema only", "extra_args: [--schema-only]", map[string]int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			truth := map[string]int64{}
			for k := range tc.want {
				n, _ := strconv.ParseInt(psqlT(t, db, "SELECT count(*) FROM "+pgconn.QuoteIdent(strings.TrimPrefix(k, "rows:"))), 10, 64)
				truth[k] = n
			}
			if !maps.Equal(truth, tc.want) {
				t.Fatalf("test data: source has %v, test expects %v", truth, tc.want)
			}
			out := filepath.Join(t.TempDir(), "db.dump.zst")
			res, rec := pgDumpRecord(t, dbEnv(t), fmt.Sprintf("database: %s\noutput: %s\n%s", db, out, tc.with))
			got := res["counts"].(map[string]int64)
			if !maps.Equal(got, tc.want) {
				t.Errorf("counts %v, want %v", got, tc.want)
			}
			if len(tc.want) > 0 && !maps.Equal(rec.Counts, tc.want) {
				t.Errorf("record counts %v, want %v", rec.Counts, tc.want)
			}
			if len(tc.want) == 0 && rec.Counts != nil {
				t.Errorf("record counts %v for a dump without data", rec.Counts)
			}
			// The restore holds exactly these rows: every counted table with
			// its count, every other table empty.
			restored := pgRestoreAll(t, out)
			for k, n := range restored {
				if want, ok := tc.want[k]; (ok && n != want) || (!ok && n != 0) {
					t.Errorf("restored %s = %d, recorded %d (recorded: %v)", k, n, want, ok)
				}
			}
			if d := engine.CompareCounts(tc.want, restored); len(d) > 0 {
				t.Errorf("restore differs from the record: %v", d)
			}
		})
	}
}

// A writer inserting rows while the dump runs does not make the recorded
// counts differ from what the dump holds: the counts and pg_dump share one
// snapshot. The pg_dump wrapper also commits rows itself after the counts
// and before pg_dump starts (the window a separate count would miss), and
// checks that the snapshot session holds no table lock while pg_dump runs.
func TestPgDumpCountsSharedSnapshotUnderWrites(t *testing.T) {
	pgEnv(t)
	db := pgScratchDB(t, 50000)
	psqlT(t, db, "CREATE TABLE feed(id bigserial PRIMARY KEY, v text); INSERT INTO feed(v) SELECT md5(g::text) FROM generate_series(1, 1000) g")
	real, _ := exec.LookPath("pg_dump")
	dir := t.TempDir()
	locks := filepath.Join(dir, "locks")
	wrapper := filepath.Join(dir, "pg_dump-after-writes")
	script := fmt.Sprintf(`#!/bin/sh
case " $* " in *" --version "*) exec %[1]s "$@";; esac
psql -X -A -t -q -d postgres -c "SELECT count(*) FILTER (WHERE l.locktype = 'relation'), count(DISTINCT a.pid) FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid WHERE a.application_name = 'planrun-snapshot' AND a.state = 'idle in transaction' AND a.datname = '%[2]s'" > %[3]s || exit 1
psql -X -q -d %[2]s -c "INSERT INTO feed(v) SELECT 'between' FROM generate_series(1, 500)" || exit 1
exec %[1]s "$@"
`, real, db, locks)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	// The concurrent writer: one psql fed INSERTs (one transaction each)
	// for as long as the dump step runs.
	w := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db)
	stdin, err := w.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Stderr = os.Stderr
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var sent atomic.Int64
	fed := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				fed <- stdin.Close()
				return
			default:
			}
			if _, err := io.WriteString(stdin, "INSERT INTO feed(v) VALUES ('concurrent');\n"); err != nil {
				fed <- err
				return
			}
			sent.Add(1)
		}
	}()
	out := filepath.Join(dir, "db.dump.zst")
	res, rec := pgDumpRecord(t, dbEnv(t), fmt.Sprintf("database: %s\npg_dump: %s\noutput: %s", db, wrapper, out))
	close(stop)
	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(); err != nil {
		t.Fatalf("writer: %v", err)
	}

	recorded := rec.Counts["rows:public.feed"]
	now, _ := strconv.ParseInt(psqlT(t, db, "SELECT count(*) FROM feed"), 10, 64)
	between, _ := strconv.ParseInt(psqlT(t, db, "SELECT count(*) FROM feed WHERE v = 'between'"), 10, 64)
	t.Logf("feed: %d rows recorded, %d now (%d inserts sent by the writer, %d committed between counts and pg_dump)", recorded, now, sent.Load(), between)
	if between != 500 || recorded < 1000 || now < recorded+500 {
		t.Fatalf("the writes did not straddle the dump: recorded %d, now %d, between %d", recorded, now, between)
	}
	if !maps.Equal(res["counts"].(map[string]int64), rec.Counts) {
		t.Errorf("output counts %v, record %v", res["counts"], rec.Counts)
	}
	if b, err := os.ReadFile(locks); err != nil || strings.TrimSpace(string(b)) != "0|1" {
		t.Errorf("snapshot session during pg_dump (relation locks|sessions idle in transaction): %q, %v; want 0|1", b, err)
	}
	restored := pgRestoreAll(t, out)
	if d := engine.CompareCounts(rec.Counts, restored); len(d) > 0 {
		t.Errorf("restore differs from the recorded counts: %v", d)
	}
	if n := psqlT(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'planrun-snapshot'"); n != "0" {
		t.Errorf("%s snapshot sessions still open after the step", n)
	}
}

// A table the role may not read fails the step before any artifact
// exists, with an error that names it; so does row-level security.
func TestPgDumpCountsPermissionDenied(t *testing.T) {
	pgEnv(t)
	db := pgScratchDB(t, 10)
	role := uniqueName("planrun_ro")
	psqlT(t, "postgres", "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() {
		exec.Command("psql", "-X", "-q", "-d", db, "-c", "DROP OWNED BY "+role).Run()
		exec.Command("psql", "-X", "-q", "-d", "postgres", "-c", "DROP ROLE IF EXISTS "+role).Run()
	})
	psqlT(t, db, "GRANT SELECT ON items TO "+role+`; CREATE TABLE secrets(v text); INSERT INTO secrets VALUES ('x');
CREATE TABLE tenant(v text); INSERT INTO tenant VALUES ('a'), ('b'); ALTER TABLE tenant ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_a ON tenant USING (v = 'a'); GRANT SELECT ON tenant TO `+role)
	for _, tc := range []struct{ with, want string }{
		{"exclude_tables: [tenant]", "permission denied for table Mixed Case"},
		{"tables: [items, tenant]", "row-level security"},
	} {
		dir := t.TempDir()
		_, err := dbRun(t, PgDump, dbEnv(t), fmt.Sprintf("database: %s\nuser: %s\noutput: %s/db.dump.zst\n%s", db, role, dir, tc.with))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "count rows") {
			t.Errorf("%s: err = %v, want %q", tc.with, err, tc.want)
		}
		dbNoArtifact(t, dir)
	}
	// The role's table alone dumps, with its count.
	out := filepath.Join(t.TempDir(), "db.dump.zst")
	res, err := dbRun(t, PgDump, dbEnv(t), fmt.Sprintf("database: %s\nuser: %s\noutput: %s\ntables: [items]", db, role, out))
	if err != nil {
		t.Fatal(err)
	}
	if c := res["counts"].(map[string]int64); len(c) != 1 || c["rows:public.items"] != 10 {
		t.Errorf("counts %v", c)
	}
}

func pgRecord() engine.ArtifactRecord {
	return engine.ArtifactRecord{
		StepID: "db", StepType: "pg_dump", Path: "/backups/chitlaq.dump.zst.age",
		Source: map[string]string{"kind": "postgres", "host": "db.internal", "port": "5433", "database": "chitlaq",
			"user": "backup", "password_env": "PGPASSWORD_PROD", "server_version": "15.18", "format": "custom"},
		Counts: map[string]int64{"rows:public.users": 3, "rows:public.posts": 10, "rows:Other.odd.name": 1},
	}
}

// pgInverseDecode runs the inverse and decodes its params as the engine does.
func pgInverseDecode(t *testing.T, rec engine.ArtifactRecord, target engine.RestoreTarget) *PgRestoreParams {
	t.Helper()
	with, err := PgDump.Inverse.With(rec, target)
	if err != nil {
		t.Fatal(err)
	}
	var node yaml.Node
	if err := node.Encode(with); err != nil {
		t.Fatal(err)
	}
	p, probs := PgRestore.Type().Decode(&node, false)
	if len(probs) > 0 {
		t.Fatalf("inverse params %v: %v", with, probs)
	}
	return p.(*PgRestoreParams)
}

func TestPgDumpInverseParams(t *testing.T) {
	if PgDump.Inverse == nil || PgDump.Inverse.Type != PgRestore.Name {
		t.Fatalf("inverse: %+v", PgDump.Inverse)
	}
	tables := []string{"Other.odd.name", "public.posts", "public.users"}
	target := engine.RestoreTarget{Input: "/r/x.age", Scratch: true, ScratchSuffix: "_drill_1a2b3c4d", IdentityFile: "/k/id"}
	p := pgInverseDecode(t, pgRecord(), target)
	if p.Database != "chitlaq_drill_1a2b3c4d" || !p.RecreateDatabase || !p.DropAfter || !p.NoOwner || p.Create || p.Clean ||
		p.Host != "db.internal" || p.Port != 5433 || p.User != "backup" || p.PasswordEnv != "PGPASSWORD_PROD" ||
		p.Input != "/r/x.age" || p.IdentityFile != "/k/id" || p.Format != "custom" || !slices.Equal(p.VerifyCounts, tables) {
		t.Errorf("scratch: %+v", p)
	}
	target.Keep = true
	if p := pgInverseDecode(t, pgRecord(), target); p.DropAfter || !p.RecreateDatabase {
		t.Errorf("scratch, keep: %+v", p)
	}
	p = pgInverseDecode(t, pgRecord(), engine.RestoreTarget{Input: "/r/x.age", PassphraseFile: "/k/pw"})
	if p.Database != "chitlaq" || p.RecreateDatabase || p.DropAfter || p.NoOwner || p.Clean || p.Create ||
		p.PassphraseFile != "/k/pw" || !slices.Equal(p.VerifyCounts, tables) {
		t.Errorf("non-scratch: %+v", p)
	}
	plain := pgRecord()
	plain.Source["format"] = "plain"
	if p := pgInverseDecode(t, plain, engine.RestoreTarget{Input: "/r/x", Scratch: true, ScratchSuffix: "_s"}); p.Format != "plain" || p.NoOwner || p.Database != "chitlaq_s" {
		t.Errorf("plain scratch: %+v", p)
	}
	long := pgRecord()
	long.Source["database"] = strings.Repeat("d", 60) + "é"
	if p := pgInverseDecode(t, long, engine.RestoreTarget{Input: "/r/x", Scratch: true, ScratchSuffix: "_drill_1a2b3c4d"}); len(p.Database) > 63 ||
		!strings.HasSuffix(p.Database, "_drill_1a2b3c4d") || !utf8.ValidString(p.Database) {
		t.Errorf("long source name: scratch database %q", p.Database)
	}
	if _, probs := dbTryDecode(PgRestore, "database: "+strings.Repeat("d", 64)+"\ninput: x\nrecreate_database: true"); len(probs) == 0 {
		t.Error("recreate_database accepted a name PostgreSQL would cut")
	}
	bad := pgRecord()
	bad.Source = map[string]string{"kind": "mongodb", "database": "x"}
	if _, err := PgDump.Inverse.With(bad, target); err == nil {
		t.Error("a non-postgres record was accepted")
	}
	if _, err := PgDump.Inverse.With(pgRecord(), engine.RestoreTarget{Input: "/x", Scratch: true}); err == nil {
		t.Error("a scratch target without a suffix was accepted")
	}
}

// The snapshot session asks for pg_dump's version (psql's \!): a program
// whose --version fails (a quoted path with a space here) leaves the
// record without a version, and the session goes on to count the rows.
func TestPgDumpVersionFailsBackupGoesOn(t *testing.T) {
	pgEnv(t)
	db := pgCountsDB(t)
	real, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(t.TempDir(), "my pg_dump")
	script := "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'no version here' >&2; exit 3; }\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "db.dump")
	_, rec := pgDumpRecord(t, dbEnv(t), fmt.Sprintf("database: %s\npg_dump: %q\noutput: %s", db, wrapper, out))
	if v, ok := rec.Tools["pg_dump"]; ok {
		t.Errorf("the record names version %q of a program whose --version failed", v)
	}
	if rec.Counts["rows:Other.t2"] != 7 || len(rec.Counts) != 9 {
		t.Errorf("counts after the failed --version: %v", rec.Counts)
	}
}

// Dump, derive the scratch restore from the record, run it: the restored
// counts equal the manifest's, the scratch database is gone, the source
// untouched; the record holds what a restore needs and no secret.
func TestPgDumpInverseScratchRoundTrip(t *testing.T) {
	pgEnv(t)
	db := pgCountsDB(t)
	idFile, recip := dbAgeKeys(t)
	out := filepath.Join(t.TempDir(), "db.dump.zst.age")
	env := dbEnv(t, "PLANRUN_T_PGPW=unused-with-trust")
	_, rec := pgDumpRecord(t, env, fmt.Sprintf("database: %s\npassword_env: PLANRUN_T_PGPW\noutput: %s\nencrypt: {recipients: [%s]}", db, out, recip))
	src := rec.Source
	if src["kind"] != "postgres" || src["database"] != db || src["host"] != os.Getenv("PGHOST") || src["port"] != os.Getenv("PGPORT") ||
		src["user"] != os.Getenv("PGUSER") || src["password_env"] != "PLANRUN_T_PGPW" || src["format"] != "custom" ||
		!strings.HasPrefix(src["server_version"], "15") || !strings.HasPrefix(rec.Tools["pg_dump"], "pg_dump (PostgreSQL) ") {
		t.Errorf("record: source %v, tools %v", src, rec.Tools)
	}
	if b, _ := json.Marshal(rec); strings.Contains(string(b), "unused-with-trust") {
		t.Errorf("secret in the record: %s", b)
	}
	if len(rec.Counts) != 9 {
		t.Errorf("counts: %v", rec.Counts)
	}
	suffix := "_drill_" + strings.TrimPrefix(uniqueName(""), "_")
	p := pgInverseDecode(t, *rec, engine.RestoreTarget{Input: out, Scratch: true, ScratchSuffix: suffix, IdentityFile: idFile})
	renv := dbEnv(t, "PLANRUN_T_PGPW=unused-with-trust")
	renv.Secrets.Add(PgRestore.Type().SecretValues(p)...)
	t.Cleanup(func() {
		exec.Command("psql", "-X", "-q", "-d", "postgres", "-c", "DROP DATABASE IF EXISTS "+pgconn.QuoteIdent(db+suffix)+" WITH (FORCE)").Run()
	})
	res, err := PgRestore.Run(context.Background(), renv, p)
	if err != nil {
		t.Fatal(err)
	}
	restored, ok := engine.CountsOf(res["counts"])
	if !ok {
		t.Fatalf("counts output %T", res["counts"])
	}
	if d := engine.CompareCounts(rec.Counts, restored); len(d) > 0 || len(restored) != len(rec.Counts) {
		t.Errorf("restored %v, manifest %v: %v", restored, rec.Counts, d)
	}
	if n := psqlT(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = '"+db+suffix+"'"); n != "0" {
		t.Errorf("scratch database %s%s left behind", db, suffix)
	}
	if n := psqlT(t, db, "SELECT count(*) FROM items"); n != "1234" {
		t.Errorf("source has %s rows", n)
	}
}

// drop_after also drops the scratch database when the restore fails: each
// drill names its own, failed ones must not pile up.
func TestPgRestoreDropAfterOnFailure(t *testing.T) {
	pgEnv(t)
	db := pgScratchDB(t, 20000)
	out := filepath.Join(t.TempDir(), "db.dump.zst")
	if _, err := dbRun(t, PgDump, dbEnv(t), fmt.Sprintf("database: %s\noutput: %s", db, out)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if err := os.WriteFile(out, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	target := uniqueName("planrun_dropfail")
	t.Cleanup(func() {
		exec.Command("psql", "-X", "-q", "-d", "postgres", "-c", "DROP DATABASE IF EXISTS "+target+" WITH (FORCE)").Run()
	})
	_, err := dbRun(t, PgRestore, dbEnv(t), fmt.Sprintf("database: %s\nrecreate_database: true\ndrop_after: true\nsingle_transaction: true\ninput: %s\nverify_counts: [items]", target, out))
	if err == nil || !strings.Contains(err.Error(), "reading input") {
		t.Fatalf("err = %v", err)
	}
	if n := psqlT(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = '"+target+"'"); n != "0" {
		t.Errorf("scratch database %s left behind after a failed restore", target)
	}
}

// counts: false dumps without counting (a database too large to read
// twice): the record has no counts, so a drill compares checksums only.
func TestPgDumpWithoutCounts(t *testing.T) {
	pgEnv(t)
	db := pgScratchDB(t, 10)
	env := dbEnv(t)
	out := filepath.Join(t.TempDir(), "db.dump.zst")
	res, err := dbRun(t, PgDump, env, fmt.Sprintf("database: %s\noutput: %s\ncounts: false", db, out))
	if err != nil {
		t.Fatal(err)
	}
	recs := recorded(t, env)
	if len(recs) != 1 || recs[0].Counts != nil || len(res["counts"].(map[string]int64)) != 0 {
		t.Fatalf("counts taken although counts: false: %+v, %v", recs, res["counts"])
	}
	if recs[0].Source["database"] != db {
		t.Errorf("source %v", recs[0].Source)
	}
}
