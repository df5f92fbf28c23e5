// End-to-end tests of the shipped plans against real services: PostgreSQL,
// FerretDB with the official mongo tools, RabbitMQ, an S3 server (rclone
// serve s3) for rclone and restic — started by scripts/testenv.sh — plus
// in-process test doubles of the Qdrant HTTP API and the Healthchecks ping
// API (no real Qdrant or Healthchecks server can be had here).
//
// The story: back up with kaleem-daily and chitlaq-full, run the monthly
// restore drill, wipe every service and the local backups (a lost host),
// rebuild with dr-rebuild from the off-site copies only, and compare what
// came back with what was there. A second story breaks the database and
// checks that nothing destructive ran and the fail ping carried the log.
package plans_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
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
	t       *testing.T
	bin     string // planrun binary
	dir     string // temp root
	sfx     string // unique suffix for names on the shared services
	svc     map[string]string
	qdrant  *qdrantdouble.Server
	qURL    string
	hc      *hcdouble.Handler
	hcURL   string
	hcCheck string // the Kaleem check's uuid
	pgDB    string
	mongoDB string
	coll    string // Qdrant collection
	queue   string
	exch    string
	keyFile string
	recips  string
	pwFile  string
	backups string // kaleem-daily's root
	resticL string // local restic repository
	chitlaq string // chitlaq-full's root
	offsite string // restic repository copy on "r2"
	remote  string // chitlaq artifacts on "s3"
	cfgK    string // Kaleem config fixture root
	cfgC    string // ChitLaq config/uploads fixture root
	env     map[string]string
}

func TestPlansEndToEnd(t *testing.T) {
	w := newWorld(t)
	before := w.snapshot()

	// 1. The daily jobs.
	w.apply("kaleem-daily", "kaleem.env", 0, w.kaleemVars()...)
	w.assertPings(w.hcCheck, "start", "success")
	w.resticCLIListsAndChecks()
	w.rcloneCheck(w.resticL, w.offsite)

	w.apply("chitlaq-full", "chitlaq.env", 0, w.chitlaqVars()...)
	w.offsiteDumpDecryptsWithAgeCLI()

	// 2. The monthly restore drill (on the live host).
	w.apply("kaleem-restore-test", "kaleem.env", 0,
		"repository="+w.resticL, "password_file="+w.pwFile, "cache_dir="+filepath.Join(w.dir, "cache"),
		"backup_root="+w.backups, "mongo_db="+w.mongoDB, "scratch_db="+w.mongoDB+"_drill")
	drill := w.mongoCounts(w.mongoDB + "_drill")
	assert.Equal(t, before.mongoCounts, drill, "restore drill restored every document into the scratch database")

	// 3. Disaster: every service loses its data and the host its backups.
	w.wipe()
	require.NotEqual(t, before.pg, w.snapshot().pg, "the wipe must really remove the data")

	// 4. Rebuild from the off-site copies only.
	start := time.Now()
	w.apply("dr-rebuild", "dr.env", 0, w.drVars()...)
	t.Logf("dr-rebuild wall time: %s", time.Since(start).Round(time.Millisecond))
	w.logStageTimes("dr-rebuild")

	after := w.snapshot()
	assert.Equal(t, before.pg, after.pg, "PostgreSQL row counts and content checksums")
	assert.Equal(t, before.mongoCounts, after.mongoCounts, "MongoDB document counts")
	assert.Equal(t, before.mongoSum, after.mongoSum, "MongoDB content checksum")
	assert.Equal(t, before.points, after.points, "Qdrant points")
	assert.Equal(t, before.rabbit, after.rabbit, "RabbitMQ queue, exchange and binding")
	for _, f := range []string{"etc/nginx/nginx.conf", "opt/kaleem/app.env"} {
		assert.FileExists(t, filepath.Join(w.dir, "newroot", w.cfgK, f), "Kaleem config restored")
	}
	assert.FileExists(t, filepath.Join(w.dir, "newroot", w.cfgC, "opt/chitlaq/docker-compose.yml"), "ChitLaq config restored")
	assert.NoDirExists(t, filepath.Join(w.dir, "dr"), "decrypted staging copies are removed")
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
	for _, id := range []string{"qdrant-full", "rabbitmq", "configs", "restic-backup"} {
		assert.Equal(t, "success", status[id], "%s still backed up after the mongo failure", id)
	}
	for _, id := range []string{"restic-forget", "prune-mongo", "prune-configs", "offsite-sync"} {
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
	assert.NoDirExists(t, filepath.Join(w.svc["S3_DATA_DIR"], w.svc["S3_BUCKET"], "e2e-"+w.sfx, "kaleem-restic"), "nothing reached R2")
}

// ---------------------------------------------------------------- set-up

func newWorld(t *testing.T) *world {
	svc := testenv.Require(t, "PostgreSQL, FerretDB, RabbitMQ and S3 (scripts/testenv.sh)",
		"PGHOST", "PGPORT", "PGUSER", "MONGO_URI", "RABBITMQ_MGMT_URL", "RABBITMQ_USER", "RABBITMQ_PASS",
		"S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_BUCKET", "S3_DATA_DIR")
	for _, tool := range []string{"pg_dump", "pg_restore", "psql", "mongodump", "mongorestore", "restic", "rclone", "age", "zstd"} {
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
	w.hcURL, w.hcCheck = hs.URL, uuid4()

	w.pgDB = "chitlaq_e2e_" + w.sfx
	w.mongoDB = "kaleem_e2e_" + w.sfx
	w.coll = "kaleem_" + w.sfx
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
	w.keys()
	w.writeEnv("kaleem.env", w.kaleemEnv(nil))
	w.writeEnv("chitlaq.env", w.chitlaqEnv())
	w.writeEnv("dr.env", w.drEnv())
	return w
}

func buildPlanrun(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "planrun")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/planrun")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

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
		_ = cl.Database(w.mongoDB + "_drill").Drop(context.Background())
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
	m["N8N_ENABLED"] = "0"
	m["QDRANT_URL"], m["QDRANT_API_KEY"] = w.qURL, "qdrant-key-"+w.sfx
	m["RABBIT_URL"], m["RABBIT_USER"], m["RABBIT_PASSWORD"] = w.svc["RABBITMQ_MGMT_URL"], w.svc["RABBITMQ_USER"], w.svc["RABBITMQ_PASS"]
	m["HC_URL"] = w.hcURL + "/" + w.hcCheck
	m["RESTORE_HC_URL"] = w.hcURL + "/" + uuid4()
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
	return []string{"staging=" + filepath.Join(w.dir, "dr"), "target_root=" + filepath.Join(w.dir, "newroot"),
		"kaleem_repository=rclone:" + w.offsite, "restic_password_file=" + w.pwFile,
		"chitlaq_remote=" + w.remote, "identity_file=" + w.keyFile, "kaleem_root=" + w.backups,
		"chitlaq_database=" + w.pgDB, "qdrant_collection=" + w.coll}
}

// cmdEnv is the environment planrun runs with: this process's, a private
// state dir, and AWS_CA_BUNDLE set as on this machine (planrun must clear
// it for rclone itself).
func (w *world) cmdEnv() []string {
	env := append(os.Environ(), "PLANRUN_STATE_DIR="+filepath.Join(w.dir, "state"), "AWS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt")
	return env
}

// apply runs a shipped plan and checks its exit code; it returns stderr.
func (w *world) apply(plan, envFile string, wantExit int, vars ...string) string {
	w.t.Helper()
	args := []string{"apply", plan + ".yaml", "--env-file", filepath.Join(w.dir, envFile)}
	for _, v := range vars {
		args = append(args, "--var", v)
	}
	cmd := exec.Command(w.bin, args...)
	cmd.Env = w.cmdEnv()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(w.t, err)
	}
	require.Equal(w.t, wantExit, code, "planrun apply %s:\n%s", plan, stderr.String())
	return stderr.String()
}

// ---------------------------------------------------------------- checks

type state struct {
	pg          map[string]string // table → "count/md5"
	mongoCounts map[string]int64
	mongoSum    string
	points      []qdrantdouble.Point
	rabbit      string
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
	s.rabbit = w.rabbitState()
	return s
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
	require.NoError(w.t, cl.Database(w.mongoDB+"_drill").Drop(context.Background()))
	w.qdrant.DropAll()
	w.rabbit("DELETE", "/api/queues/%2F/"+w.queue, nil)
	w.rabbit("DELETE", "/api/exchanges/%2F/"+w.exch, nil)
	for _, d := range []string{w.backups, w.resticL, w.chitlaq, filepath.Join(w.dir, "cache")} {
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
	cmd = exec.Command("restic", "check", "--read-data")
	cmd.Env = env
	out, err = cmd.CombinedOutput()
	require.NoError(w.t, err, "restic check: %s", out)
	assert.Contains(w.t, string(out), "no errors were found")
}

// rcloneCheck: the off-site copy matches, by rclone's own check.
func (w *world) rcloneCheck(local, remote string) {
	w.t.Helper()
	cmd := exec.Command("rclone", "check", local, remote)
	env := append(os.Environ(), "AWS_CA_BUNDLE=")
	for k, v := range w.rcloneRemotes() {
		env = append(env, k+"="+v)
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	require.NoError(w.t, err, "rclone check: %s", out)
	assert.Contains(w.t, string(out), "0 differences found")
}

// offsiteDumpDecryptsWithAgeCLI: the uploaded dump is a standard age file
// of a zstd stream of a pg_dump custom archive.
func (w *world) offsiteDumpDecryptsWithAgeCLI() {
	w.t.Helper()
	dumps, err := filepath.Glob(filepath.Join(w.svc["S3_DATA_DIR"], w.svc["S3_BUCKET"], "e2e-"+w.sfx, "chitlaq", "database", "full", "*.dump.zst.age"))
	require.NoError(w.t, err)
	require.Len(w.t, dumps, 1, "one full dump off-site")
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
