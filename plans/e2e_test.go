// End-to-end tests of the shipped plans against real services: PostgreSQL,
// FerretDB with the official mongo tools, RabbitMQ, an S3 server (rclone
// serve s3) for rclone and restic — started by scripts/testenv.sh — plus
// in-process test doubles of the Qdrant HTTP API and the Healthchecks ping
// API (no real Qdrant or Healthchecks server can be had here).
//
// The story: back up with kaleem-daily and chitlaq-full, drill both (planrun
// drill and the monthly kaleem-restore-test of the restic copy: counts equal
// to the manifests'), tamper with one artifact and see the drill fail naming
// it, wipe every service, the local backups and the source trees (a lost
// host), rebuild with dr-rebuild from the off-site copies and their
// manifests only, with a fresh state dir, and compare what came back with
// what was there. A second story breaks the database and checks that
// nothing destructive ran and the fail ping carried the log.
package plans_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/planrun/planrun/internal/hcdouble"
	"github.com/planrun/planrun/internal/qdrantdouble"
	"github.com/planrun/planrun/internal/testenv"
)

// world is everything one end-to-end run set up.
type world struct {
	t            *testing.T
	bin          string // planrun binary
	dir          string // temp root
	sfx          string // unique suffix for names on the shared services
	svc          map[string]string
	qdrant       *qdrantdouble.Server
	qURL         string
	hc           *hcdouble.Handler
	hcURL        string
	hcCheck      string // the Kaleem check's uuid
	restoreCheck string // the monthly restore test's
	pgDB         string
	mongoDB      string
	coll         string // Qdrant collection
	coll2        string // a second one: every collection is restored
	queue        string
	exch         string
	keyFile      string
	recips       string
	pwFile       string
	backups      string    // kaleem-daily's root
	resticL      string    // local restic repository
	chitlaq      string    // chitlaq-full's root
	offsite      string    // restic repository copy on "r2"
	remote       string    // chitlaq artifacts on "s3"
	cfgK         string    // Kaleem config fixture root
	cfgC         string    // ChitLaq config/uploads fixture root
	n8nRows      int       // rows in the n8n database, most of them only in its WAL
	n8n          *exec.Cmd // a writer holding the n8n database open
	n8nIn        io.WriteCloser
	state        string // PLANRUN_STATE_DIR
}

func TestPlansEndToEnd(t *testing.T) {
	w := newWorld(t)
	before := w.snapshot()

	// 1. The daily jobs.
	w.apply("kaleem-daily", "kaleem.env", 0, w.kaleemVars()...)
	w.assertPings(w.hcCheck, "start", "success")
	w.resticCLIListsAndChecks()
	w.offsiteHasTheLocalSnapshots()
	manifests, _ := filepath.Glob(filepath.Join(w.backups, "manifest", "kaleem-daily-*.manifest.json"))
	require.Len(t, manifests, 1, "kaleem-daily wrote its manifest where restic backs it up")
	assert.NoDirExists(t, filepath.Join(w.backups, ".staging", "n8n"), "the staged n8n database copy is removed")

	old := w.plantOldChitlaqBackups()
	w.apply("chitlaq-full", "chitlaq.env", 0, w.chitlaqVars()...)
	manifests, _ = filepath.Glob(filepath.Join(w.chitlaq, "manifest", "chitlaq-full_*.manifest.json"))
	require.Len(t, manifests, 1, "chitlaq-full wrote its manifest")
	stamp := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(manifests[0]), "chitlaq-full_"), ".manifest.json")
	w.offsiteDumpDecryptsWithAgeCLI(stamp)
	for _, prefix := range []string{"database/full", "config", "uploads", "manifest"} {
		got, _ := filepath.Glob(filepath.Join(w.s3Dir(), "chitlaq", prefix, "chitlaq*_"+stamp+".*"))
		assert.Len(t, got, 2, "%s off-site: the run's artifact and its sidecar", prefix)
	}
	// Off-site retention: 30 days for dumps, 90 for configuration.
	for rel, kept := range old {
		for _, f := range []string{rel, rel + ".sha256"} {
			_, err := os.Stat(filepath.Join(w.s3Dir(), "chitlaq", f))
			assert.Equal(t, kept, err == nil, "off-site %s kept: %v", f, kept)
		}
	}

	// 2. Drills: the newest run of each plan restored into scratch targets,
	// every count equal to the manifest's; the monthly drill of the restic copy.
	out := w.planrun(0, "drill", "kaleem-daily.yaml", "--env-file", filepath.Join(w.dir, "kaleem.env"))
	t.Logf("planrun drill kaleem-daily:\n%s", drillReport(out))
	assert.Regexp(t, `drill [0-9a-f]{8}: success`, out)
	for _, step := range []string{"restore-mongo", "restore-qdrant-collections", "restore-qdrant-collections-2", "restore-rabbitmq", "restore-configs", "restore-n8n"} {
		assert.Regexp(t, `ok +`+step+` +counts +[1-9][0-9]* compared`, out)
	}
	w.apply("kaleem-restore-test", "kaleem.env", 0, w.restoreTestVars()...)
	w.assertPings(w.restoreCheck, "start", "success")
	out = w.planrun(0, "drill", "chitlaq-full.yaml", "--identity-file", w.keyFile, "--env-file", filepath.Join(w.dir, "chitlaq.env"))
	t.Logf("planrun drill chitlaq-full:\n%s", drillReport(out))
	assert.Regexp(t, `drill [0-9a-f]{8}: success`, out)
	assert.Regexp(t, `ok +restore-db-full +counts +3 compared`, out, "users, posts, messages")
	assert.Regexp(t, `ok +restore-uploads +counts +[1-9][0-9]* compared`, out)
	w.noScratchLeft()

	// A row deleted from the scratch database after the restore and before
	// the comparison (the test hook: the restore's after_sql, set in a copy
	// of the plan) fails the drill, naming the table and both counts.
	plan, err := os.ReadFile("chitlaq-full.yaml")
	require.NoError(t, err)
	hooked := strings.Replace(string(plan), "db-full: {no_owner: true}",
		`db-full: {no_owner: true, after_sql: ["DELETE FROM messages WHERE id = (SELECT min(id) FROM messages)"]}`, 1)
	require.NotEqual(t, string(plan), hooked, "chitlaq-full.yaml's restore section changed: update the hook")
	hookedFile := filepath.Join(w.dir, "chitlaq-full.yaml")
	require.NoError(t, os.WriteFile(hookedFile, []byte(hooked), 0o600))
	out = w.planrun(1, "drill", hookedFile, "--only", "db-full", "--identity-file", w.keyFile, "--env-file", filepath.Join(w.dir, "chitlaq.env"))
	t.Logf("planrun drill chitlaq-full, a row deleted before the comparison:\n%s", drillReport(out))
	assert.Regexp(t, `drill [0-9a-f]{8}: failed`, out)
	assert.Regexp(t, `DIFFERS +restore-db-full +counts +3 compared`, out)
	assert.Regexp(t, `rows:public\.messages: backup 3000, restored 2999`, out)
	assert.Regexp(t, `ok +check-db-full +sha256`, out, "the artifact itself is intact")
	w.noScratchLeft()
	for _, plan := range []string{"kaleem-daily", "chitlaq-full"} {
		w.planrun(0, "status", plan, "--max-age", "1h", "--drill-max-age", "35d")
	}
	drills := 0
	for _, r := range w.runs("kaleem-daily") {
		if r.Kind == "drill" && r.Status == "success" {
			drills++
		}
	}
	assert.Equal(t, 2, drills, "planrun drill and kaleem-restore-test's drill are recorded as drills of kaleem-daily")

	// 3. A flipped byte in one artifact fails the drill, naming it.
	uploads, _ := filepath.Glob(filepath.Join(w.chitlaq, "uploads", "chitlaq_uploads_*.tar.zst.age"))
	require.Len(t, uploads, 1)
	flipByte(t, uploads[0], 300)
	out = w.planrun(1, "drill", "chitlaq-full.yaml", "--identity-file", w.keyFile, "--env-file", filepath.Join(w.dir, "chitlaq.env"))
	t.Logf("planrun drill chitlaq-full, tampered:\n%s", drillReport(out))
	assert.Regexp(t, `drill [0-9a-f]{8}: failed`, out)
	assert.Regexp(t, `DIFFERS +check-uploads +sha256`, out)
	assert.Contains(t, out, filepath.Base(uploads[0])+": sha256 mismatch")
	assert.Regexp(t, `ok +check-db-full +sha256`, out, "only the tampered artifact differs")
	w.noScratchLeft()

	// The monthly ChitLaq drill where the identity is: from the S3 copy
	// (intact, unlike the local one now) and its manifest, no run store.
	dir := filepath.Join(w.dir, "chitlaq-drill")
	for local, remote := range map[string]string{"manifest": "manifest", "full": "database/full", "config": "config", "uploads": "uploads"} {
		w.rclone("copy", w.remote+"/"+remote, filepath.Join(dir, local), "--include", "*_"+stamp+".*")
	}
	w.state = filepath.Join(w.dir, "drill-host-state")
	out = w.planrun(0, "drill", "chitlaq-full.yaml", "--manifest", filepath.Join(dir, "manifest", "chitlaq-full_"+stamp+".manifest.json"),
		"--identity-file", w.keyFile, "--env-file", filepath.Join(w.dir, "chitlaq.env"))
	assert.Regexp(t, `drill [0-9a-f]{8}: success`, out)
	assert.Regexp(t, `ok +check-uploads +sha256`, out, "the S3 copy is read, not the tampered local file")
	assert.Regexp(t, `ok +restore-db-full +counts +3 compared`, out)
	w.state = filepath.Join(w.dir, "state")
	w.noScratchLeft()

	// 4. Disaster: every service loses its data, the host its backups,
	// its configuration, uploads and n8n data, and planrun its run store.
	w.wipe()
	require.NotEqual(t, before.pg, w.snapshot().pg, "the wipe must really remove the data")

	// 5. Rebuild from the off-site copies and their manifests only.
	w.state = filepath.Join(w.dir, "fresh-state")
	start := time.Now()
	out = w.apply("dr-rebuild", "dr.env", 0, w.drVars()...)
	t.Logf("dr-rebuild wall time (end-to-end RTO): %s", time.Since(start).Round(time.Millisecond))
	_ = out
	w.logStageTimes("dr-rebuild")
	for _, plan := range []string{"kaleem-daily", "chitlaq-full"} {
		r := w.lastRun(plan)
		assert.Equal(t, "restore", r.Kind, "the restore of %s is recorded in the fresh run store", plan)
		assert.Equal(t, "success", r.Status)
		if assert.NotNil(t, r.Report) {
			t.Logf("%s restore RTO (planrun's report): %s", plan, time.Duration(r.Report.RTO).Round(time.Millisecond))
		}
	}

	after := w.snapshot()
	assert.Equal(t, before.pg, after.pg, "PostgreSQL row counts and content checksums")
	assert.Equal(t, before.mongoCounts, after.mongoCounts, "MongoDB document counts")
	assert.Equal(t, before.mongoSum, after.mongoSum, "MongoDB content checksum")
	assert.Equal(t, before.points, after.points, "Qdrant points")
	assert.Equal(t, before.points2, after.points2, "Qdrant points of the second collection")
	assert.Equal(t, before.rabbit, after.rabbit, "RabbitMQ queue, exchange and binding")
	assert.Equal(t, before.files, after.files, "configuration, uploads and n8n files at their original paths")
	assert.Equal(t, strconv.Itoa(w.n8nRows), w.sqlite(filepath.Join(w.backups, ".staging", "n8n", "database.sqlite"), "SELECT count(*) FROM workflow_entity"),
		"the n8n database copy has every row, also those only in the WAL at backup time")
	assert.NoDirExists(t, filepath.Join(w.dir, "dr"), "the fetched copies are removed")
}

// A failing database step: the run fails, the other components are still
// backed up, nothing destructive runs, the fail ping carries the log tail,
// and `planrun show` tells the story.
func TestPlansFailingDatabaseStep(t *testing.T) {
	w := newWorld(t)
	w.writeEnv("broken.env", w.kaleemEnv(map[string]string{"MONGO_URI": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=2000&connectTimeoutMS=2000"}))
	out := w.apply("kaleem-daily", "broken.env", 1, w.kaleemVars()...)
	assert.Contains(t, out, `msg="step failed"`)

	pings := w.pings(w.hcCheck)
	require.Len(t, pings, 2)
	assert.Equal(t, "start", pings[0].Signal)
	// A failed run is signalled as its exit status (/1): Healthchecks
	// records it and treats any non-zero status as a failure.
	assert.Equal(t, "exit", pings[1].Signal)
	if assert.NotNil(t, pings[1].ExitCode) {
		assert.Equal(t, 1, *pings[1].ExitCode)
	}
	assert.Equal(t, pings[0].RID, pings[1].RID, "start and fail share the run id")
	assert.Contains(t, pings[1].Body, "step=mongo", "the fail ping carries the log tail")
	assert.Contains(t, pings[1].Body, "run finished")

	show := w.showLatest("kaleem-daily")
	status := map[string]string{}
	reason := map[string]string{}
	for _, a := range show.Attempts {
		status[a.StepID], reason[a.StepID] = a.Status, a.Reason
	}
	assert.Equal(t, "failed", status["mongo"])
	for _, id := range []string{"qdrant-collections", "rabbitmq", "configs", "n8n", "manifest", "restic-backup", "offsite-copy"} {
		assert.Equal(t, "success", status[id], "%s still backed up after the mongo failure", id)
	}
	for _, id := range []string{"restic-forget", "prune-mongo", "prune-configs", "offsite-forget"} {
		assert.Equal(t, "skipped", status[id], "destructive step %s must not run", id)
		assert.NotEmpty(t, reason[id])
	}
	assert.Equal(t, "failed", show.Run.Status)
	assert.Equal(t, 1, show.Run.ExitCode)
	cmd := exec.Command(w.bin, "show", "latest", "--plan", "kaleem-daily")
	cmd.Env = w.cmdEnv()
	text, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", text)
	assert.Contains(t, string(text), "mongo (mongodump)")
	assert.Contains(t, string(text), "skipped")
	// restic copy cannot damage R2: what was snapshotted goes off-site, retention there does not run.
	w.offsiteHasTheLocalSnapshots()
}

// ---------------------------------------------------------------- set-up

func newWorld(t *testing.T) *world {
	svc := testenv.Require(t, "PostgreSQL, FerretDB, RabbitMQ and S3 (scripts/testenv.sh)",
		"PGHOST", "PGPORT", "PGUSER", "MONGO_URI", "RABBITMQ_MGMT_URL", "RABBITMQ_USER", "RABBITMQ_PASS",
		"S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_BUCKET", "S3_DATA_DIR")
	for _, tool := range []string{"pg_dump", "pg_restore", "psql", "mongodump", "mongorestore", "restic", "rclone", "age", "zstd", "sqlite3"} {
		testenv.RequireTool(t, tool)
	}
	w := &world{t: t, dir: t.TempDir(), svc: svc, sfx: randHex(4)}
	w.bin = buildPlanrun(t)

	// Test doubles for the services that cannot run here.
	w.qdrant = qdrantdouble.New(qdrantdouble.Options{APIKey: "qdrant-key-" + w.sfx})
	qs := httptest.NewServer(w.qdrant.Handler())
	t.Cleanup(qs.Close)
	w.qURL = qs.URL
	w.hc = hcdouble.New()
	hs := httptest.NewServer(w.hc)
	t.Cleanup(hs.Close)
	w.hcURL, w.hcCheck, w.restoreCheck = hs.URL, uuid4(), uuid4()

	w.pgDB = "chitlaq_e2e_" + w.sfx
	w.mongoDB = "kaleem_e2e_" + w.sfx
	w.coll = "kaleem_" + w.sfx
	w.coll2 = "kaleem_faq_" + w.sfx
	w.state = filepath.Join(w.dir, "state")
	w.queue, w.exch = "e2e-jobs-"+w.sfx, "e2e-events-"+w.sfx
	w.backups = filepath.Join(w.dir, "backups")
	w.resticL = filepath.Join(w.dir, "restic-local")
	w.chitlaq = filepath.Join(w.dir, "chitlaq-backups")
	w.offsite = "r2:" + svc["S3_BUCKET"] + "/e2e-" + w.sfx + "/kaleem-restic"
	w.remote = "s3:" + svc["S3_BUCKET"] + "/e2e-" + w.sfx + "/chitlaq"
	t.Cleanup(func() { os.RemoveAll(filepath.Join(svc["S3_DATA_DIR"], svc["S3_BUCKET"], "e2e-"+w.sfx)) })

	w.seedPostgres()
	w.seedMongo()
	w.seedQdrant()
	w.seedRabbit()
	w.fixtures()
	w.seedN8N()
	w.keys()
	w.writeEnv("kaleem.env", w.kaleemEnv(nil))
	w.writeEnv("chitlaq.env", w.chitlaqEnv())
	w.writeEnv("dr.env", w.drEnv())
	return w
}

func buildPlanrun(t *testing.T) string { return testenv.PlanrunBin(t) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func uuid4() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (w *world) psql(db, sql string) string {
	w.t.Helper()
	cmd := exec.Command("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql)
	out, err := cmd.CombinedOutput()
	require.NoError(w.t, err, "psql %s: %s", sql, out)
	return strings.TrimSpace(string(out))
}

func (w *world) seedPostgres() {
	w.psql("postgres", "CREATE DATABASE "+w.pgDB)
	w.t.Cleanup(func() {
		_ = exec.Command("psql", "-X", "-q", "-d", "postgres", "-c", "DROP DATABASE IF EXISTS "+w.pgDB+" WITH (FORCE)").Run()
	})
	w.psql(w.pgDB, `
CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, joined timestamptz NOT NULL);
CREATE TABLE posts (id int PRIMARY KEY, user_id int REFERENCES users(id), body text);
CREATE TABLE messages (id bigserial PRIMARY KEY, post_id int REFERENCES posts(id), text text, meta jsonb);
INSERT INTO users SELECT g, 'user ' || g, '2026-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 500) g;
INSERT INTO posts SELECT g, 1 + g % 500, repeat(md5(g::text), 3) FROM generate_series(1, 1500) g;
INSERT INTO messages (post_id, text, meta) SELECT 1 + g % 1500, 'msg ' || g, jsonb_build_object('n', g) FROM generate_series(1, 3000) g;`)
}

func (w *world) mongo() *mongo.Client {
	w.t.Helper()
	cl, err := mongo.Connect(options.Client().ApplyURI(w.svc["MONGO_URI"]).SetTimeout(30 * time.Second))
	require.NoError(w.t, err)
	w.t.Cleanup(func() { _ = cl.Disconnect(context.Background()) })
	return cl
}

func (w *world) seedMongo() {
	cl := w.mongo()
	ctx := context.Background()
	w.t.Cleanup(func() {
		_ = cl.Database(w.mongoDB).Drop(context.Background())
	})
	var convs, users []any
	for i := 0; i < 300; i++ {
		convs = append(convs, bson.D{{Key: "_id", Value: i}, {Key: "user", Value: fmt.Sprintf("u%d", i%40)},
			{Key: "turns", Value: bson.A{"hello", fmt.Sprintf("answer %d", i)}}, {Key: "meta", Value: bson.D{{Key: "lang", Value: "ar"}, {Key: "n", Value: i}}}})
	}
	for i := 0; i < 40; i++ {
		users = append(users, bson.D{{Key: "_id", Value: fmt.Sprintf("u%d", i)}, {Key: "name", Value: fmt.Sprintf("User %d", i)}})
	}
	_, err := cl.Database(w.mongoDB).Collection("conversations").InsertMany(ctx, convs)
	require.NoError(w.t, err)
	_, err = cl.Database(w.mongoDB).Collection("users").InsertMany(ctx, users)
	require.NoError(w.t, err)
}

func (w *world) seedQdrant() {
	var pts []qdrantdouble.Point
	for i := 0; i < 64; i++ {
		pts = append(pts, qdrantdouble.Point{ID: uint64(i + 1), Vector: []float64{float64(i), 0.5, -1, float64(i) / 7},
			Payload: map[string]any{"doc": fmt.Sprintf("chunk-%d", i)}})
	}
	w.qdrant.CreateCollection(w.coll, qdrantdouble.VectorParams{Size: 4, Distance: "Cosine"}, pts)
	w.qdrant.CreateCollection(w.coll2, qdrantdouble.VectorParams{Size: 4, Distance: "Dot"}, pts[:10])
}

// seedN8N creates n8n's SQLite database in WAL mode and keeps a writer
// connected with checkpoints off, as a running n8n does: most rows are only
// in the -wal file, so a copy of database.sqlite alone would lose them.
func (w *world) seedN8N() {
	dir := filepath.Join(w.cfgK, "opt", "n8n", "data")
	require.NoError(w.t, os.MkdirAll(dir, 0o700))
	require.NoError(w.t, os.WriteFile(filepath.Join(dir, "config"), []byte(`{"encryptionKey": "not-a-real-key"}`+"\n"), 0o600))
	db := filepath.Join(dir, "database.sqlite")
	w.sqlite(db, "PRAGMA journal_mode=WAL; CREATE TABLE workflow_entity (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO workflow_entity (name) VALUES ('checkpointed');")
	cmd := exec.Command("sqlite3", db)
	stdin, err := cmd.StdinPipe()
	require.NoError(w.t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(w.t, err)
	require.NoError(w.t, cmd.Start())
	w.n8n, w.n8nIn = cmd, stdin
	w.t.Cleanup(w.stopN8N)
	w.n8nRows = 201
	_, err = io.WriteString(stdin, "PRAGMA wal_autocheckpoint=0;\nWITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM g WHERE n < 200) INSERT INTO workflow_entity (name) SELECT 'workflow ' || n FROM g;\nSELECT 'ready';\n")
	require.NoError(w.t, err)
	// The pragma echoes its value; "ready" comes once the insert is done.
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		require.NoError(w.t, err, "sqlite3 writer")
		if line == "ready\n" {
			break
		}
	}
	wal, err := os.Stat(db + "-wal")
	require.NoError(w.t, err, "the rows are in the WAL")
	require.Positive(w.t, wal.Size())
}

// stopN8N closes the writer (n8n stopped, as before a restore).
func (w *world) stopN8N() {
	if w.n8n == nil {
		return
	}
	_ = w.n8nIn.Close()
	_ = w.n8n.Wait()
	w.n8n = nil
}

func (w *world) sqlite(db, sql string) string {
	w.t.Helper()
	out, err := exec.Command("sqlite3", db, sql).CombinedOutput()
	require.NoError(w.t, err, "sqlite3 %s: %s", sql, out)
	return strings.TrimSpace(string(out))
}

func (w *world) rabbit(method, path string, body any) (int, []byte) {
	w.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.svc["RABBITMQ_MGMT_URL"]+path, r)
	require.NoError(w.t, err)
	req.SetBasicAuth(w.svc["RABBITMQ_USER"], w.svc["RABBITMQ_PASS"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (w *world) seedRabbit() {
	for _, c := range []struct {
		path string
		body any
	}{
		{"/api/queues/%2F/" + w.queue, map[string]any{"durable": true, "arguments": map[string]any{"x-max-length": 1000}}},
		{"/api/exchanges/%2F/" + w.exch, map[string]any{"type": "topic", "durable": true}},
	} {
		code, b := w.rabbit("PUT", c.path, c.body)
		require.Contains(w.t, []int{201, 204}, code, "%s: %s", c.path, b)
	}
	code, b := w.rabbit("POST", "/api/bindings/%2F/e/"+w.exch+"/q/"+w.queue, map[string]any{"routing_key": "backup.#"})
	require.Contains(w.t, []int{201, 204}, code, "binding: %s", b)
	w.t.Cleanup(func() {
		w.rabbit("DELETE", "/api/queues/%2F/"+w.queue, nil)
		w.rabbit("DELETE", "/api/exchanges/%2F/"+w.exch, nil)
	})
}

func (w *world) fixtures() {
	w.cfgK = filepath.Join(w.dir, "kaleem-host")
	w.cfgC = filepath.Join(w.dir, "chitlaq-host")
	files := map[string]string{
		w.cfgK + "/etc/nginx/nginx.conf":                     "events {}\nhttp { include sites/*; }\n",
		w.cfgK + "/etc/nginx/sites/kaleem.conf":              "server { listen 80; }\n",
		w.cfgK + "/etc/cron.d/kaleem-backups":                "0 3 * * * root planrun apply /etc/planrun/plans/kaleem-daily.yaml\n",
		w.cfgK + "/opt/kaleem/app.env":                       "MODE=production\n",
		w.cfgK + "/opt/kaleem/cache/skip.bin":                "cache, excluded\n",
		w.cfgC + "/etc/nginx/nginx.conf":                     "events {}\n",
		w.cfgC + "/etc/docker/daemon.json":                   `{"log-driver": "json-file"}` + "\n",
		w.cfgC + "/etc/systemd/system/chitlaq.service":       "[Service]\nExecStart=/usr/bin/docker compose up\n",
		w.cfgC + "/opt/chitlaq/docker-compose.yml":           "services: {api: {image: chitlaq/api}}\n",
		w.cfgC + "/opt/chitlaq/.env":                         "JWT_SECRET=not-a-real-secret\n",
		w.cfgC + "/opt/chitlaq/nginx/site.conf":              "server {}\n",
		w.cfgC + "/opt/chitlaq/monitoring/prometheus.yml":    "scrape_configs: []\n",
		w.cfgC + "/opt/chitlaq/scripts/health-check.sh":      "#!/bin/sh\ncurl -sf localhost/health\n",
		w.cfgC + "/opt/chitlaq/storage/uploads/a.jpg":        strings.Repeat("jpeg", 4096),
		w.cfgC + "/opt/chitlaq/storage/avatars/u1.png":       strings.Repeat("png", 1024),
		w.cfgC + "/opt/chitlaq/storage/thumbnails/a-200.jpg": strings.Repeat("t", 512),
	}
	for p, c := range files {
		require.NoError(w.t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(w.t, os.WriteFile(p, []byte(c), 0o644))
	}
}

func (w *world) keys() {
	id, err := age.GenerateX25519Identity()
	require.NoError(w.t, err)
	w.keyFile = filepath.Join(w.dir, "dr-age.key")
	w.recips = filepath.Join(w.dir, "recipients.txt")
	w.pwFile = filepath.Join(w.dir, "restic.pass")
	require.NoError(w.t, os.WriteFile(w.keyFile, []byte(id.String()+"\n"), 0o600))
	require.NoError(w.t, os.WriteFile(w.recips, []byte("# ChitLaq backups\n"+id.Recipient().String()+"\n"), 0o644))
	require.NoError(w.t, os.WriteFile(w.pwFile, []byte("restic-pw-"+w.sfx+"\n"), 0o600))
}

// rcloneRemotes defines the remotes "r2" and "s3" on the test S3 server.
func (w *world) rcloneRemotes() map[string]string {
	m := map[string]string{}
	for _, name := range []string{"R2", "S3"} {
		p := "RCLONE_CONFIG_" + name + "_"
		m[p+"TYPE"], m[p+"PROVIDER"], m[p+"ENDPOINT"] = "s3", "Other", w.svc["S3_ENDPOINT"]
		m[p+"ACCESS_KEY_ID"], m[p+"SECRET_ACCESS_KEY"], m[p+"FORCE_PATH_STYLE"] = w.svc["S3_ACCESS_KEY"], w.svc["S3_SECRET_KEY"], "true"
	}
	return m
}

func (w *world) kaleemEnv(override map[string]string) map[string]string {
	m := w.rcloneRemotes()
	m["MONGO_URI"] = w.svc["MONGO_URI"]
	m["MONGO_RESTORE_URI"] = w.svc["MONGO_URI"]
	m["N8N_ENABLED"] = "1"
	m["QDRANT_URL"], m["QDRANT_API_KEY"] = w.qURL, "qdrant-key-"+w.sfx
	m["RABBIT_URL"], m["RABBIT_USER"], m["RABBIT_PASSWORD"] = w.svc["RABBITMQ_MGMT_URL"], w.svc["RABBITMQ_USER"], w.svc["RABBITMQ_PASS"]
	m["HC_URL"] = w.hcURL + "/" + w.hcCheck
	m["RESTORE_HC_URL"] = w.hcURL + "/" + w.restoreCheck
	for k, v := range override {
		m[k] = v
	}
	return m
}

func (w *world) chitlaqEnv() map[string]string {
	m := w.rcloneRemotes()
	m["PGHOST"], m["PGPORT"], m["PGUSER"], m["PGDATABASE"] = w.svc["PGHOST"], w.svc["PGPORT"], w.svc["PGUSER"], w.pgDB
	m["HC_URL"] = w.hcURL + "/" + uuid4()
	return m
}

func (w *world) drEnv() map[string]string {
	m := w.kaleemEnv(nil)
	for k, v := range w.chitlaqEnv() {
		m[k] = v
	}
	delete(m, "HC_URL")
	delete(m, "RESTORE_HC_URL")
	return m
}

// writeEnv writes a dotenv file as an operator would: 0600, quoted values.
func (w *world) writeEnv(name string, vars map[string]string) {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# written by the end-to-end test\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s='%s'\n", k, vars[k])
	}
	require.NoError(w.t, os.WriteFile(filepath.Join(w.dir, name), []byte(b.String()), 0o600))
}

func (w *world) kaleemVars() []string {
	return []string{"root=" + w.backups, "config_root=" + w.cfgK, "restic_repo=" + w.resticL,
		"restic_password_file=" + w.pwFile, "restic_cache=" + filepath.Join(w.dir, "cache"),
		"offsite=" + w.offsite, "mongo_db=" + w.mongoDB}
}

func (w *world) chitlaqVars() []string {
	return []string{"root=" + w.chitlaq, "recipients_file=" + w.recips, "identity_file=" + w.keyFile,
		"remote=" + w.remote, "source_root=" + w.cfgC}
}

func (w *world) drVars() []string {
	return []string{"staging=" + filepath.Join(w.dir, "dr"),
		"kaleem_repository=rclone:" + w.offsite, "restic_password_file=" + w.pwFile,
		"chitlaq_remote=" + w.remote, "identity_file=" + w.keyFile, "kaleem_root=" + w.backups,
		"chitlaq_database=" + w.pgDB, "plans=" + w.plansDir(), "env_file=" + filepath.Join(w.dir, "dr.env"), "planrun=" + w.bin}
}

func (w *world) restoreTestVars() []string {
	return []string{"repository=" + w.resticL, "password_file=" + w.pwFile, "cache_dir=" + filepath.Join(w.dir, "cache"),
		"backup_root=" + w.backups, "plan=" + filepath.Join(w.plansDir(), "kaleem-daily.yaml"),
		"env_file=" + filepath.Join(w.dir, "kaleem.env"), "planrun=" + w.bin, "scratch=" + filepath.Join(w.dir, "restore-test")}
}

func (w *world) plansDir() string {
	wd, err := os.Getwd()
	require.NoError(w.t, err)
	return wd
}

func (w *world) s3Dir() string {
	return filepath.Join(w.svc["S3_DATA_DIR"], w.svc["S3_BUCKET"], "e2e-"+w.sfx)
}

// cmdEnv is the environment planrun runs with: this process's, a private
// state dir, and AWS_CA_BUNDLE set as on this machine (planrun must clear
// it for rclone itself).
func (w *world) cmdEnv() []string {
	env := append(os.Environ(), "PLANRUN_STATE_DIR="+w.state, "AWS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt")
	return env
}

// apply runs a shipped plan and checks its exit code; it returns stderr.
func (w *world) apply(plan, envFile string, wantExit int, vars ...string) string {
	w.t.Helper()
	args := []string{"apply", plan + ".yaml", "--env-file", filepath.Join(w.dir, envFile)}
	for _, v := range vars {
		args = append(args, "--var", v)
	}
	return w.planrun(wantExit, args...)
}

// planrun runs a planrun command and checks its exit code; it returns
// stdout and stderr.
func (w *world) planrun(wantExit int, args ...string) string {
	w.t.Helper()
	cmd := exec.Command(w.bin, args...)
	cmd.Env = w.cmdEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(w.t, err)
	}
	require.Equal(w.t, wantExit, code, "planrun %s:\n%s", strings.Join(args, " "), out.String())
	return out.String()
}

type runJSON struct {
	Kind   string `json:"kind"`
	Status string `json:"status"`
	Report *struct {
		RTO int64 `json:"rto_ns"`
	} `json:"report"`
}

// runs are the plan's runs in the run store, newest first.
func (w *world) runs(plan string) []runJSON {
	w.t.Helper()
	var runs []runJSON
	require.NoError(w.t, json.Unmarshal([]byte(w.planrun(0, "runs", "--plan", plan, "--json")), &runs))
	return runs
}

// lastRun is the plan's newest run in the run store.
func (w *world) lastRun(plan string) runJSON {
	w.t.Helper()
	runs := w.runs(plan)
	require.NotEmpty(w.t, runs, "runs of %s", plan)
	return runs[0]
}

// drillReport is the report part of planrun drill's output (its log lines
// left out).
func drillReport(out string) string {
	if i := strings.LastIndex(out, "\ndrill "); i >= 0 {
		return out[i+1:]
	}
	return out
}

// flipByte inverts one byte of a file in place.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

// noScratchLeft: a drill drops its scratch databases and collections.
func (w *world) noScratchLeft() {
	w.t.Helper()
	assert.Empty(w.t, w.psql("postgres", "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '%scratch%'"), "scratch PostgreSQL databases left")
	names, err := w.mongo().ListDatabaseNames(context.Background(), bson.D{})
	require.NoError(w.t, err)
	for _, n := range names {
		assert.NotContains(w.t, n, "scratch", "scratch MongoDB database left")
	}
	req, err := http.NewRequest("GET", w.qURL+"/collections", nil)
	require.NoError(w.t, err)
	req.Header.Set("api-key", "qdrant-key-"+w.sfx)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(w.t, err)
	assert.Contains(w.t, string(body), w.coll2, "the collections list")
	assert.NotContains(w.t, string(body), "scratch", "scratch Qdrant collection left")
}

// ---------------------------------------------------------------- checks

type state struct {
	pg          map[string]string // table → "count/md5"
	mongoCounts map[string]int64
	mongoSum    string
	points      []qdrantdouble.Point
	points2     []qdrantdouble.Point
	rabbit      string
	files       map[string]string // path under the fixture roots → sha256
}

func (w *world) snapshot() state {
	s := state{pg: map[string]string{}}
	if w.psqlOK("SELECT 1 FROM pg_database WHERE datname = '" + w.pgDB + "'") {
		for _, tbl := range []string{"users", "posts", "messages"} {
			n := w.psql(w.pgDB, "SELECT count(*) FROM "+tbl)
			sum := w.psql(w.pgDB, "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM "+tbl+" t")
			s.pg[tbl] = n + "/" + sum
		}
	}
	s.mongoCounts = w.mongoCounts(w.mongoDB)
	s.mongoSum = w.mongoChecksum(w.mongoDB)
	s.points, _ = w.qdrant.Points(w.coll)
	s.points2, _ = w.qdrant.Points(w.coll2)
	s.rabbit = w.rabbitState()
	s.files = w.fileSums()
	return s
}

// fileSums hashes what the archives hold: the fixture trees without what
// the plans exclude (caches, n8n's live database files).
func (w *world) fileSums() map[string]string {
	out := map[string]string{}
	for _, root := range []string{w.cfgK, w.cfgC} {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(w.dir, p)
			if strings.Contains(rel, "/cache/") || strings.Contains(rel, "database.sqlite") {
				return nil
			}
			b, err := os.ReadFile(p)
			require.NoError(w.t, err)
			sum := sha256.Sum256(b)
			out[rel] = hex.EncodeToString(sum[:])
			return nil
		})
	}
	return out
}

func (w *world) psqlOK(sql string) bool {
	return w.psql("postgres", sql) == "1"
}

func (w *world) mongoCounts(db string) map[string]int64 {
	cl := w.mongo()
	out := map[string]int64{}
	for _, c := range []string{"conversations", "users"} {
		n, err := cl.Database(db).Collection(c).CountDocuments(context.Background(), bson.D{})
		require.NoError(w.t, err)
		out[c] = n
	}
	return out
}

func (w *world) mongoChecksum(db string) string {
	cl := w.mongo()
	h := md5.New()
	for _, c := range []string{"conversations", "users"} {
		cur, err := cl.Database(db).Collection(c).Find(context.Background(), bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		require.NoError(w.t, err)
		for cur.Next(context.Background()) {
			j, err := bson.MarshalExtJSON(cur.Current, true, false)
			require.NoError(w.t, err)
			h.Write(j)
		}
		fmt.Fprintf(h, "|%s|", c)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// rabbitState describes the queue, the exchange and their binding.
func (w *world) rabbitState() string {
	var parts []string
	code, b := w.rabbit("GET", "/api/queues/%2F/"+w.queue, nil)
	if code == 200 {
		var q struct {
			Durable   bool           `json:"durable"`
			Arguments map[string]any `json:"arguments"`
		}
		require.NoError(w.t, json.Unmarshal(b, &q))
		parts = append(parts, fmt.Sprintf("queue durable=%v args=%v", q.Durable, q.Arguments))
	}
	code, b = w.rabbit("GET", "/api/exchanges/%2F/"+w.exch, nil)
	if code == 200 {
		var e struct {
			Type string `json:"type"`
		}
		require.NoError(w.t, json.Unmarshal(b, &e))
		parts = append(parts, "exchange "+e.Type)
	}
	code, b = w.rabbit("GET", "/api/bindings/%2F/e/"+w.exch+"/q/"+w.queue, nil)
	if code == 200 {
		var bs []struct {
			RoutingKey string `json:"routing_key"`
		}
		require.NoError(w.t, json.Unmarshal(b, &bs))
		for _, x := range bs {
			parts = append(parts, "binding "+x.RoutingKey)
		}
	}
	return strings.Join(parts, "; ")
}

func (w *world) wipe() {
	w.psql("postgres", "DROP DATABASE "+w.pgDB+" WITH (FORCE)")
	cl := w.mongo()
	require.NoError(w.t, cl.Database(w.mongoDB).Drop(context.Background()))
	w.qdrant.DropAll()
	w.rabbit("DELETE", "/api/queues/%2F/"+w.queue, nil)
	w.rabbit("DELETE", "/api/exchanges/%2F/"+w.exch, nil)
	w.stopN8N()
	for _, d := range []string{w.backups, w.resticL, w.chitlaq, filepath.Join(w.dir, "cache"), w.cfgK, w.cfgC} {
		require.NoError(w.t, os.RemoveAll(d))
	}
}

func (w *world) pings(check string) []hcdouble.Ping {
	var out []hcdouble.Ping
	for _, p := range w.hc.Pings() {
		if p.Check == check {
			out = append(out, p)
		}
	}
	return out
}

func (w *world) assertPings(check string, signals ...string) {
	w.t.Helper()
	var got []string
	for _, p := range w.pings(check) {
		got = append(got, p.Signal)
		assert.NotEmpty(w.t, p.RID, "every ping carries the run id")
	}
	assert.Equal(w.t, signals, got)
}

// resticCLIListsAndChecks: the restic CLI itself reads planrun's snapshot.
func (w *world) resticCLIListsAndChecks() {
	w.t.Helper()
	env := append(os.Environ(), "RESTIC_REPOSITORY="+w.resticL, "RESTIC_PASSWORD_FILE="+w.pwFile, "RESTIC_CACHE_DIR="+filepath.Join(w.dir, "cache"))
	cmd := exec.Command("restic", "snapshots", "--json")
	cmd.Env = env
	out, err := cmd.Output()
	require.NoError(w.t, err)
	var snaps []struct {
		Tags  []string `json:"tags"`
		Paths []string `json:"paths"`
	}
	require.NoError(w.t, json.Unmarshal(out, &snaps))
	require.Len(w.t, snaps, 1)
	assert.Contains(w.t, snaps[0].Tags, "daily")
	assert.Contains(w.t, snaps[0].Paths, filepath.Join(w.backups, "mongo"))
	assert.Contains(w.t, snaps[0].Paths, filepath.Join(w.backups, "manifest"))
	assert.Contains(w.t, snaps[0].Paths, filepath.Join(w.backups, "n8n"))
	cmd = exec.Command("restic", "check", "--read-data")
	cmd.Env = env
	out, err = cmd.CombinedOutput()
	require.NoError(w.t, err, "restic check: %s", out)
	assert.Contains(w.t, string(out), "no errors were found")
}

// plantOldChitlaqBackups puts older chitlaq-full artifacts (named by
// their day, as prune reads it) locally and on S3, as earlier runs would
// have; it returns their S3 paths and whether retention must keep them.
func (w *world) plantOldChitlaqBackups() map[string]bool {
	w.t.Helper()
	day := func(n int) string { return time.Now().UTC().AddDate(0, 0, -n).Format("20060102") + "_020000" }
	old := map[string]bool{
		"full/chitlaq_full_" + day(40) + ".dump.zst.age":     false,
		"full/chitlaq_full_" + day(10) + ".dump.zst.age":     true,
		"config/chitlaq_config_" + day(40) + ".tar.zst.age":  true,
		"config/chitlaq_config_" + day(100) + ".tar.zst.age": false,
	}
	out := map[string]bool{}
	for rel, kept := range old {
		p := filepath.Join(w.chitlaq, rel)
		require.NoError(w.t, os.MkdirAll(filepath.Dir(p), 0o700))
		require.NoError(w.t, os.WriteFile(p, []byte("an older backup "+rel), 0o600))
		sum := sha256.Sum256([]byte("an older backup " + rel))
		require.NoError(w.t, os.WriteFile(p+".sha256", []byte(hex.EncodeToString(sum[:])+"  "+filepath.Base(p)+"\n"), 0o600))
		// Off-site retention goes by the copies' times, which rclone takes from the local files.
		stamp := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(p), ".dump.zst.age"), ".tar.zst.age")
		made, err := time.Parse("20060102_150405", stamp[len(stamp)-15:])
		require.NoError(w.t, err)
		for _, f := range []string{p, p + ".sha256"} {
			require.NoError(w.t, os.Chtimes(f, made, made))
		}
		remote := strings.Replace(rel, "full/", "database/full/", 1)
		out[remote] = kept
	}
	w.rclone("copy", filepath.Join(w.chitlaq, "full"), w.remote+"/database/full")
	w.rclone("copy", filepath.Join(w.chitlaq, "config"), w.remote+"/config")
	return out
}

func (w *world) rclone(args ...string) string {
	w.t.Helper()
	cmd := exec.Command("rclone", args...)
	env := append(os.Environ(), "AWS_CA_BUNDLE=")
	for k, v := range w.rcloneRemotes() {
		env = append(env, k+"="+v)
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	require.NoError(w.t, err, "rclone %s: %s", strings.Join(args, " "), out)
	return string(out)
}

// offsiteHasTheLocalSnapshots: R2 holds a restic repository of its own
// (restic copy, not a file mirror) with a copy of every local snapshot,
// and restic checks all of its data.
func (w *world) offsiteHasTheLocalSnapshots() {
	w.t.Helper()
	list := func(repo string) []string {
		env := append(os.Environ(), "RESTIC_REPOSITORY="+repo, "RESTIC_PASSWORD_FILE="+w.pwFile,
			"RESTIC_CACHE_DIR="+filepath.Join(w.dir, "cache"), "AWS_CA_BUNDLE=")
		for k, v := range w.rcloneRemotes() {
			env = append(env, k+"="+v)
		}
		cmd := exec.Command("restic", "snapshots", "--json")
		cmd.Env = env
		out, err := cmd.Output()
		require.NoError(w.t, err, "restic snapshots of %s", repo)
		var snaps []struct {
			Time  string   `json:"time"`
			Paths []string `json:"paths"`
			Tree  string   `json:"tree"`
		}
		require.NoError(w.t, json.Unmarshal(out, &snaps))
		var keys []string
		for _, s := range snaps {
			keys = append(keys, s.Time+" "+s.Tree+" "+strings.Join(s.Paths, ","))
		}
		sort.Strings(keys)
		cmd = exec.Command("restic", "check", "--read-data")
		cmd.Env = env
		text, err := cmd.CombinedOutput()
		require.NoError(w.t, err, "restic check %s: %s", repo, text)
		return keys
	}
	local, offsite := list(w.resticL), list("rclone:"+w.offsite)
	require.NotEmpty(w.t, local)
	assert.Equal(w.t, local, offsite, "every local snapshot (same time, tree and paths) is on R2")
	_, err := os.Stat(filepath.Join(w.s3Dir(), "kaleem-restic", "config"))
	require.NoError(w.t, err, "R2 holds a repository")
	lc, _ := os.ReadFile(filepath.Join(w.resticL, "config"))
	rc, _ := os.ReadFile(filepath.Join(w.s3Dir(), "kaleem-restic", "config"))
	assert.NotEqual(w.t, lc, rc, "a repository of its own, not a copy of the local one's files")
}

// offsiteDumpDecryptsWithAgeCLI: the uploaded dump is a standard age file
// of a zstd stream of a pg_dump custom archive.
func (w *world) offsiteDumpDecryptsWithAgeCLI(stamp string) {
	w.t.Helper()
	dumps, err := filepath.Glob(filepath.Join(w.s3Dir(), "chitlaq", "database", "full", "chitlaq_full_"+stamp+".dump.zst.age"))
	require.NoError(w.t, err)
	require.Len(w.t, dumps, 1, "the run's full dump off-site")
	// Through files: pg_restore --list stops reading after the TOC, which
	// would SIGPIPE a pipeline.
	tmp := w.t.TempDir()
	script := fmt.Sprintf("set -e; age -d -i %q -o %s/d.zst %q; zstd -q -d %s/d.zst -o %s/d.dump; pg_restore --list %s/d.dump",
		w.keyFile, tmp, dumps[0], tmp, tmp, tmp)
	out, err := exec.Command("bash", "-c", script).CombinedOutput()
	require.NoError(w.t, err, "%s", out)
	assert.Contains(w.t, string(out), "TABLE public users")
}

type showJSON struct {
	Run struct {
		Status   string `json:"status"`
		ExitCode int    `json:"exit_code"`
	} `json:"run"`
	Attempts []struct {
		StepID   string `json:"step_id"`
		Status   string `json:"status"`
		Reason   string `json:"reason"`
		Duration int64  `json:"duration_ns"`
	} `json:"attempts"`
}

func (w *world) showLatest(plan string) showJSON {
	w.t.Helper()
	cmd := exec.Command(w.bin, "show", "latest", "--plan", plan, "--json")
	cmd.Env = w.cmdEnv()
	out, err := cmd.Output()
	require.NoError(w.t, err)
	var s showJSON
	require.NoError(w.t, json.Unmarshal(out, &s))
	return s
}

// logStageTimes prints how long each stage took (the start of an RTO figure).
func (w *world) logStageTimes(plan string) {
	s := w.showLatest(plan)
	var b strings.Builder
	for _, a := range s.Attempts {
		fmt.Fprintf(&b, "  %-24s %-8s %8.2fs\n", a.StepID, a.Status, time.Duration(a.Duration).Seconds())
	}
	w.t.Logf("%s stage times:\n%s", plan, b.String())
}
