package steps

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/internal/mongoconn"
)

func mongoEnv(t *testing.T) (string, *mongo.Client) {
	t.Helper()
	uri := testenv.Require(t, "MongoDB-wire server (FerretDB, scripts/testenv.sh)", "MONGO_URI")["MONGO_URI"]
	testenv.RequireTool(t, "mongodump")
	testenv.RequireTool(t, "mongorestore")
	cl, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(30 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Disconnect(context.Background()) })
	return uri, cl
}

// mongoFixture creates a database with known documents and an index.
func mongoFixture(t *testing.T, cl *mongo.Client, n int) string {
	t.Helper()
	ctx := context.Background()
	name := uniqueName("planrun_m")
	db := cl.Database(name)
	t.Cleanup(func() { db.Drop(context.Background()) })
	docs := make([]any, n)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}, {Key: "name", Value: fmt.Sprintf("thing-%05d", i)},
			{Key: "nested", Value: bson.D{{Key: "x", Value: i * 3}, {Key: "s", Value: "ü€"}}},
			{Key: "tags", Value: bson.A{"a", i % 5}},
			{Key: "at", Value: time.Date(2024, 1, 1, 0, 0, i, 0, time.UTC)}}
	}
	if _, err := db.Collection("things").InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("other").InsertMany(ctx, []any{bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "_id", Value: "b"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("things").Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys: bson.D{{Key: "name", Value: 1}}, Options: options.Index().SetUnique(true).SetName("name_1"),
	}); err != nil {
		t.Fatal(err)
	}
	return name
}

// mongoChecksum is an md5 of every document (canonical extended JSON), by _id.
func mongoChecksum(t *testing.T, cl *mongo.Client, db string) string {
	t.Helper()
	h := md5.New()
	for _, c := range []string{"things", "other"} {
		cur, err := cl.Database(db).Collection(c).Find(context.Background(), bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for cur.Next(context.Background()) {
			j, err := bson.MarshalExtJSON(cur.Current, true, false)
			if err != nil {
				t.Fatal(err)
			}
			h.Write(j)
			n++
		}
		fmt.Fprintf(h, "|%s:%d|", c, n)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func mongoHasIndex(t *testing.T, cl *mongo.Client, db, name string) bool {
	t.Helper()
	specs, err := cl.Database(db).Collection("things").Indexes().ListSpecifications(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if s.Name == name {
			return true
		}
	}
	return false
}

// acceptsNsIndexOption probes for the FerretDB fix scripts/testenv.sh builds
// in: mongorestore sends the legacy "ns" index option.
func acceptsNsIndexOption(cl *mongo.Client, db string) bool {
	err := cl.Database(db).RunCommand(context.Background(), bson.D{
		{Key: "createIndexes", Value: "probe"},
		{Key: "indexes", Value: bson.A{bson.D{{Key: "key", Value: bson.D{{Key: "p", Value: 1}}}, {Key: "name", Value: "p_1"}, {Key: "ns", Value: db + ".probe"}}}},
	}).Err()
	return err == nil
}

func TestMongodumpRestoreRoundTrip(t *testing.T) {
	uri, cl := mongoEnv(t)
	db := mongoFixture(t, cl, 1500)
	want := mongoChecksum(t, cl, db)
	idFile, recip := dbAgeKeys(t)
	out := filepath.Join(t.TempDir(), "m.archive.zst.age")
	env := dbEnv(t)
	res, err := dbRun(t, Mongodump, env, fmt.Sprintf("uri: %s\ndb: %s\noutput: %s\nencrypt: {recipients: [%s]}", uri, db, out, recip))
	if err != nil {
		t.Fatal(err)
	}
	assertCountedOnce(t, env, res)
	counts := res["counts"].(map[string]int64)
	if counts["documents:"+db+".things"] != 1500 || counts["documents:"+db+".other"] != 2 || res["documents"].(int64) != 1502 {
		t.Errorf("dump outputs: %v", res)
	}
	if err := cl.Database(db).Drop(context.Background()); err != nil {
		t.Fatal(err)
	}

	indexes := acceptsNsIndexOption(cl, db+"_probe")
	cl.Database(db + "_probe").Drop(context.Background())
	if !indexes {
		msg := "this FerretDB rejects the \"ns\" index option: restart it with scripts/testenv.sh (patched build) to test index restore"
		if testenv.InCI() {
			t.Fatal(msg)
		}
		t.Log(msg + "; restoring without indexes")
	}
	with := fmt.Sprintf("uri: %s\ninput: %s\nidentity_file: %s\ndrop: true\nno_index_restore: %v", uri, out, idFile, !indexes)
	rres, err := dbRun(t, Mongorestore, dbEnv(t), with)
	if err != nil {
		t.Fatal(err)
	}
	rc := rres["counts"].(map[string]int64)
	if rc["documents:"+db+".things"] != 1500 || rc["documents:"+db+".other"] != 2 || rres["failures"].(int64) != 0 {
		t.Errorf("restore outputs: %v", rres)
	}
	if got := mongoChecksum(t, cl, db); got != want {
		t.Errorf("content checksum %s after restore, want %s", got, want)
	}
	if indexes && !mongoHasIndex(t, cl, db, "name_1") {
		t.Error("unique index name_1 not restored")
	}
}

func TestMongorestoreRenameIntoScratch(t *testing.T) {
	uri, cl := mongoEnv(t)
	db := mongoFixture(t, cl, 300)
	want := mongoChecksum(t, cl, db)
	out := filepath.Join(t.TempDir(), "m.archive.zst")
	if _, err := dbRun(t, Mongodump, dbEnv(t), fmt.Sprintf("uri: %s\ndb: %s\nexclude_collections: [nothing]\noutput: %s", uri, db, out)); err != nil {
		t.Fatal(err)
	}
	scratch := db + "_drill"
	t.Cleanup(func() { cl.Database(scratch).Drop(context.Background()) })
	res, err := dbRun(t, Mongorestore, dbEnv(t), fmt.Sprintf("uri: %s\ninput: %s\nns_from: ['%s.*']\nns_to: ['%s.*']\nno_index_restore: true", uri, out, db, scratch))
	if err != nil {
		t.Fatal(err)
	}
	// Counted on the server, keyed as the backup names the collection.
	if c := res["counts"].(map[string]int64); c["documents:"+db+".things"] != 300 || c["documents:"+db+".other"] != 2 || len(c) != 2 {
		t.Errorf("counts: %v", res["counts"])
	}
	if got := mongoChecksum(t, cl, scratch); got != want {
		t.Errorf("scratch copy checksum %s, want %s", got, want)
	}
}

func TestMongorestoreTruncatedArtifactFails(t *testing.T) {
	uri, cl := mongoEnv(t)
	db := mongoFixture(t, cl, 3000)
	out := filepath.Join(t.TempDir(), "m.archive.zst")
	if _, err := dbRun(t, Mongodump, dbEnv(t), fmt.Sprintf("uri: %s\ndb: %s\noutput: %s", uri, db, out)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	os.WriteFile(out, b[:len(b)/2], 0o600)
	scratch := db + "_trunc"
	t.Cleanup(func() { cl.Database(scratch).Drop(context.Background()) })
	_, err := dbRun(t, Mongorestore, dbEnv(t), fmt.Sprintf("uri: %s\ninput: %s\nns_from: ['%s.*']\nns_to: ['%s.*']\nno_index_restore: true", uri, out, db, scratch))
	if err == nil || !strings.Contains(err.Error(), "reading input") {
		t.Fatalf("err = %v", err)
	}
}

// A mongodump that fails after streaming its whole archive leaves no artifact.
func TestMongodumpFailureDiscardsArtifact(t *testing.T) {
	uri, cl := mongoEnv(t)
	db := mongoFixture(t, cl, 2000)
	real, _ := exec.LookPath("mongodump")
	wrapper := filepath.Join(t.TempDir(), "mongodump-then-fail")
	script := "#!/bin/sh\n" + real + " \"$@\" || exit\necho 'Failed: error writing data for collection: connection reset' >&2\nexit 1\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := dbEnv(t)
	_, err := dbRun(t, Mongodump, env, fmt.Sprintf("uri: %s\ndb: %s\nmongodump: %s\noutput: %s/x.archive.zst", uri, db, wrapper, dir))
	if err == nil || !strings.Contains(err.Error(), "mongodump failed") || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("err = %v", err)
	}
	if streamed := env.Progress.Done(); streamed < 50<<10 {
		t.Fatalf("only %d bytes streamed before the failure", streamed)
	}
	dbNoArtifact(t, dir)
}

// The URI's password never appears in any /proc/*/cmdline while mongodump
// and mongorestore run (FerretDB's PLAIN mechanism accepts the credentials).
func TestMongoPasswordNeverInArgv(t *testing.T) {
	uri, cl := mongoEnv(t)
	db := mongoFixture(t, cl, 20000)
	const pw = "m0ngo-S3cret-pw"
	authURI := strings.Replace(uri, "mongodb://", "mongodb://backup:"+pw+"@", 1)
	if strings.Contains(authURI, "?") {
		authURI += "&authMechanism=PLAIN"
	} else {
		authURI = strings.TrimSuffix(authURI, "/") + "/?authMechanism=PLAIN"
	}
	out := filepath.Join(t.TempDir(), "m.archive.zst")
	s := startSampler(pw)
	env := dbEnv(t, "APP_MONGO_URI="+authURI)
	_, err := dbRun(t, Mongodump, env, fmt.Sprintf("uri_env: APP_MONGO_URI\ndb: %s\noutput: %s", db, out))
	if err == nil {
		scratch := db + "_pw"
		t.Cleanup(func() { cl.Database(scratch).Drop(context.Background()) })
		_, err = dbRun(t, Mongorestore, dbEnv(t, "APP_MONGO_URI="+authURI), fmt.Sprintf(
			"uri_env: APP_MONGO_URI\ninput: %s\nns_from: ['%s.*']\nns_to: ['%s.*']\nno_index_restore: true", out, db, scratch))
	}
	s.finish(t, "mongodump", "mongorestore")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := env.TempDir()
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("--config file left in temp dir: %v", ents)
	}
}

func TestMongodumpValidate(t *testing.T) {
	for with, want := range map[string]string{
		"uri: mongodb://h/\ndb: app\noplog: true\noutput: /b/x":         "--oplog mode only supported on full dumps",
		"uri: mongodb://h/\ncollection: c\noutput: /b/x":                "need db",
		"uri: mongodb://h/\nextra_args: ['--password=x']\noutput: /b/x": "set by the step",
		"uri: http://h/\noutput: /b/x":                                  "mongodb://",
		"uri: mongodb://h/\nuri_env: X\noutput: /b/x":                   "exactly one",
	} {
		if _, probs := dbTryDecode(Mongodump, with); len(probs) == 0 || !strings.Contains(fmt.Sprint(probs), want) {
			t.Errorf("%q: problems %v, want %q", with, probs, want)
		}
	}
	if _, probs := dbTryDecode(Mongodump, "uri: mongodb://h/\noplog: true\noutput: /b/x"); len(probs) != 0 {
		t.Errorf("full dump with oplog rejected: %v", probs)
	}
	if _, probs := dbTryDecode(Mongorestore, "uri: mongodb://h/\ninput: x\nns_from: [a.*]"); len(probs) == 0 {
		t.Error("unpaired ns_from accepted")
	}
}

func TestMongoUnreachableFailsFast(t *testing.T) {
	for _, uri := range []string{"mongodb://127.0.0.1:1/?authSource=admin", "mongodb://u:p@127.0.0.1:1,127.0.0.1:2/db"} {
		err := mongoconn.Reachable(context.Background(), uri)
		if err == nil || !strings.Contains(err.Error(), "MongoDB unreachable") || strings.Contains(err.Error(), ":p@") {
			t.Errorf("%s: %v", uri, err)
		}
	}
	if err := mongoconn.Reachable(context.Background(), "mongodb+srv://cluster.example/db"); err != nil {
		t.Errorf("srv URIs are left to the tools: %v", err)
	}
}
