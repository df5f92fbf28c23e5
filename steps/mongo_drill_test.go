package steps

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/internal/mongoarchive"
)

// mongoMoreCollections adds an empty collection and a third one of n
// larger documents to a mongoFixture database.
func mongoMoreCollections(t *testing.T, cl *mongo.Client, db string, n int) {
	t.Helper()
	ctx := context.Background()
	if err := cl.Database(db).CreateCollection(ctx, "empty"); err != nil {
		t.Fatal(err)
	}
	docs := make([]any, n)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("k%06d", i)}, {Key: "blob", Value: strings.Repeat("z", 500+i%1000)}}
	}
	if _, err := cl.Database(db).Collection("third").InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
}

// mongoServerCounts counts every collection of db on the server, keyed as
// the manifest keys them (under the name `as`).
func mongoServerCounts(t *testing.T, cl *mongo.Client, db, as string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	names, err := cl.Database(db).ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, c := range names {
		n, err := cl.Database(db).Collection(c).CountDocuments(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		out["documents:"+as+"."+c] = n
	}
	return out
}

func mongoDBExists(t *testing.T, cl *mongo.Client, db string) bool {
	t.Helper()
	names, err := cl.ListDatabaseNames(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(names, db)
}

// mongoNoIndexes says whether restores must skip indexes on this server
// (an unpatched FerretDB; CI must have the patched one).
func mongoNoIndexes(t *testing.T, cl *mongo.Client, db string) bool {
	t.Helper()
	ok := acceptsNsIndexOption(cl, db+"_probe")
	cl.Database(db + "_probe").Drop(context.Background())
	if !ok && testenv.InCI() {
		t.Fatal("this FerretDB rejects the \"ns\" index option: use scripts/testenv.sh's patched build")
	}
	return !ok
}

// mongoDump dumps db through uri_env MONGO_URI (encrypted) and returns the
// record the manifest would hold and the identity that decrypts it.
func mongoDump(t *testing.T, uri, db string) (engine.ArtifactRecord, engine.Outputs, string) {
	t.Helper()
	idFile, recip := dbAgeKeys(t)
	out := filepath.Join(t.TempDir(), "m.archive.zst.age")
	env := dbEnv(t, "MONGO_URI="+uri)
	res, err := dbRun(t, Mongodump, env, fmt.Sprintf("uri_env: MONGO_URI\ndb: %s\noutput: %s\nencrypt: {recipients: [%s]}", db, out, recip))
	if err != nil {
		t.Fatal(err)
	}
	recs := recorded(t, env)
	if len(recs) != 1 || recs[0].Path != out {
		t.Fatalf("records: %+v", recs)
	}
	return *recs[0], res, idFile
}

// The documents counted are exactly those in the archive, recorded with
// where they came from and which mongodump wrote them.
func TestMongodumpCountsFromArchive(t *testing.T) {
	uri, cl := mongoEnv(t)
	db := mongoFixture(t, cl, 1500)
	mongoMoreCollections(t, cl, db, 777)
	rec, res, idFile := mongoDump(t, uri, db)

	want := map[string]int64{"documents:" + db + ".things": 1500, "documents:" + db + ".other": 2,
		"documents:" + db + ".empty": 0, "documents:" + db + ".third": 777}
	if got := res["counts"].(map[string]int64); !reflect.DeepEqual(got, want) {
		t.Errorf("counts output %v, want %v", got, want)
	}
	if res["documents"].(int64) != 2279 {
		t.Errorf("documents output %v", res["documents"])
	}
	if !reflect.DeepEqual(rec.Counts, want) {
		t.Errorf("record counts %v, want %v", rec.Counts, want)
	}
	if server := mongoServerCounts(t, cl, db, db); !reflect.DeepEqual(server, want) {
		t.Errorf("server has %v, archive counts %v", server, want)
	}
	host := strings.TrimSuffix(strings.TrimPrefix(uri, "mongodb://"), "/")
	for k, v := range map[string]string{"kind": "mongodb", "host": host, "db": db, "uri_env": "MONGO_URI", "format": "mongodump-archive"} {
		if rec.Source[k] != v {
			t.Errorf("source %s = %q, want %q (source %v)", k, rec.Source[k], v, rec.Source)
		}
	}
	if rec.Source["server_version"] == "" || rec.Source["collection"] != "" {
		t.Errorf("source %v", rec.Source)
	}
	ver, err := exec.Command("mongodump", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if v := rec.Tools["mongodump"]; v == "" || !strings.Contains(string(ver), "mongodump version: "+v+"\n") {
		t.Errorf("tools %v, mongodump --version says %q", rec.Tools, ver)
	}
	// The artifact holds exactly what was counted.
	sum, err := mongoarchive.Parse(strings.NewReader(string(dbReadArtifact(t, rec.Path, idFile))))
	if err != nil {
		t.Fatal(err)
	}
	for ns, n := range sum.Documents {
		if want["documents:"+ns] != n {
			t.Errorf("artifact holds %d documents in %s, counted %d", n, ns, want["documents:"+ns])
		}
	}
	if len(sum.Documents) != len(want) {
		t.Errorf("artifact namespaces %v, want %v", sum.Documents, want)
	}
}

// Under concurrent inserts the recorded counts still match the artifact's
// content exactly, and a scratch restore of it reproduces them.
func TestMongodumpCountsMatchArchiveUnderWrites(t *testing.T) {
	uri, cl := mongoEnv(t)
	db := mongoFixture(t, cl, 8000)
	stop := make(chan struct{})
	done := make(chan error, 1)
	var inserted atomic.Int64
	go func() {
		coll := cl.Database(db).Collection("things")
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: 1_000_000 + i}, {Key: "name", Value: fmt.Sprintf("late-%d", i)}}); err != nil {
				done <- err
				return
			}
			inserted.Add(1)
		}
	}()
	rec, _, idFile := mongoDump(t, uri, db)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d documents inserted during the dump; archive counts %v", inserted.Load(), rec.Counts)
	sum, err := mongoarchive.Parse(strings.NewReader(string(dbReadArtifact(t, rec.Path, idFile))))
	if err != nil {
		t.Fatal(err)
	}
	for ns, n := range sum.Documents {
		if rec.Counts["documents:"+ns] != n {
			t.Errorf("%s: recorded %d, artifact holds %d", ns, rec.Counts["documents:"+ns], n)
		}
	}
	if len(sum.Documents) != len(rec.Counts) {
		t.Errorf("artifact namespaces %v, recorded %v", sum.Documents, rec.Counts)
	}
	tgt := engine.RestoreTarget{Input: rec.Path, Scratch: true, ScratchSuffix: "_drill_" + uniqueName("w")[2:], IdentityFile: idFile}
	_, p := inverseDecode(t, Mongodump.Type(), rec, tgt)
	p.(*MongorestoreParams).NoIndexRestore = mongoNoIndexes(t, cl, db)
	out, err := Mongorestore.Type().Run(context.Background(), dbEnv(t, "MONGO_URI="+uri), p)
	if err != nil {
		t.Fatal(err)
	}
	if d := engine.CompareCounts(rec.Counts, restoredCounts(t, out)); len(d) != 0 {
		t.Errorf("scratch restore differs from the backup: %v", d)
	}
}

func TestMongodumpInverseParams(t *testing.T) {
	rec := engine.ArtifactRecord{Path: "/b/m.archive.zst.age",
		Source: map[string]string{"kind": "mongodb", "host": "h:27017", "db": "app", "uri_env": "MONGO_URI"},
		Counts: map[string]int64{"documents:app.users": 3}}
	tgt := engine.RestoreTarget{Input: "/r/m.archive.zst.age", Scratch: true, ScratchSuffix: "_drill_1a2b3c4d", IdentityFile: "/k/id"}
	name, p := inverseDecode(t, Mongodump.Type(), rec, tgt)
	got := p.(*MongorestoreParams)
	if name != "mongorestore" || got.URIEnv != "MONGO_URI" || got.Input != tgt.Input || got.IdentityFile != "/k/id" ||
		!got.Drop || !got.DropAfter || !reflect.DeepEqual(got.NsInclude, []string{"app.*"}) ||
		!reflect.DeepEqual(got.NsFrom, []string{"app.*"}) || !reflect.DeepEqual(got.NsTo, []string{"app_drill_1a2b3c4d.*"}) {
		t.Errorf("scratch params %+v", got)
	}
	tgt.Keep = true
	if _, p := inverseDecode(t, Mongodump.Type(), rec, tgt); p.(*MongorestoreParams).DropAfter {
		t.Error("keep: drop_after still set")
	}

	// The real target: the original namespaces, nothing dropped.
	_, p = inverseDecode(t, Mongodump.Type(), rec, engine.RestoreTarget{Input: tgt.Input, PassphraseFile: "/k/pass"})
	got = p.(*MongorestoreParams)
	if got.Drop || got.DropAfter || len(got.NsFrom) != 0 || !reflect.DeepEqual(got.NsInclude, []string{"app.*"}) || got.PassphraseFile != "/k/pass" {
		t.Errorf("real-target params %+v", got)
	}

	// A full dump: one scratch database per dumped database.
	full := engine.ArtifactRecord{Source: map[string]string{"kind": "mongodb", "uri_env": "U"},
		Counts: map[string]int64{"documents:b.x": 1, "documents:a.y": 2, "documents:a.z": 0}}
	_, p = inverseDecode(t, Mongodump.Type(), full, engine.RestoreTarget{Input: "x", Scratch: true, ScratchSuffix: "_s"})
	if got := p.(*MongorestoreParams); !reflect.DeepEqual(got.NsTo, []string{"a_s.*", "b_s.*"}) || !reflect.DeepEqual(got.NsInclude, got.NsFrom) {
		t.Errorf("full dump scratch params %+v", got)
	}
	full.Counts["documents:admin.system.version"] = 1
	if _, err := Mongodump.Inverse.With(full, engine.RestoreTarget{Input: "x", Scratch: true, ScratchSuffix: "_s"}); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Errorf("full dump with admin: %v", err)
	}
}

// drop_after is refused unless the drop can only reach scratch databases.
func TestMongorestoreDropAfterValidate(t *testing.T) {
	base := "uri: mongodb://h/\ninput: x\ndrop_after: true\n"
	for with, want := range map[string]string{
		"":                               "needs ns_from",
		"ns_from: [app.*]\nns_to: [s.*]": "needs ns_include",
		"ns_include: [app.*, other.*]\nns_from: [app.*]\nns_to: [s.*]":      "other.*",
		"ns_include: [app.*]\nns_from: [app.*, app.x]\nns_to: [s.*, app.y]": "also a source database",
		"ns_include: ['*.*']\nns_from: ['*.*']\nns_to: ['s_*.*']":           "named literally",
		"ns_include: [app.$c$]\nns_from: [app.$c$]\nns_to: [s_$c$.x]":       "named literally",
		"ns_include: [app.*]\nns_from: [app.*]\nns_to: [admin.*]":           "system database",
	} {
		if _, probs := dbTryDecode(Mongorestore, base+with); len(probs) == 0 || !strings.Contains(fmt.Sprint(probs), want) {
			t.Errorf("%q: problems %v, want %q", with, probs, want)
		}
	}
	ok := base + "ns_include: [app.*]\nns_from: [app.*]\nns_to: [app_drill.*]"
	if _, probs := dbTryDecode(Mongorestore, ok+"\nextra_args: ['--nsInclude=other.*']"); len(probs) == 0 {
		t.Error("drop_after with --nsInclude in extra_args accepted")
	}
	if _, probs := dbTryDecode(Mongorestore, ok); len(probs) != 0 {
		t.Errorf("scratch rename refused: %v", probs)
	}
	if _, probs := dbTryDecode(Mongorestore, "uri: mongodb://h/\ninput: x\nns_from: [a.*]\nns_to: [b.c]"); len(probs) == 0 {
		t.Error("unbalanced rename accepted")
	}
}

// A drill: scratch restore, counts equal to the backup's, the original and
// a bystander untouched, the scratch database dropped (or kept).
func TestMongoScratchDrillRoundTrip(t *testing.T) {
	uri, cl := mongoEnv(t)
	db := mongoFixture(t, cl, 1200)
	mongoMoreCollections(t, cl, db, 300)
	bystander := mongoFixture(t, cl, 10)
	wantSum, wantBystander := mongoChecksum(t, cl, db), mongoChecksum(t, cl, bystander)
	wantCounts := mongoServerCounts(t, cl, db, db)
	rec, _, idFile := mongoDump(t, uri, db)
	noIdx := mongoNoIndexes(t, cl, db)

	for _, keep := range []bool{true, false} {
		scratch := db + "_drill_" + uniqueName("k")[2:]
		t.Cleanup(func() { cl.Database(scratch).Drop(context.Background()) })
		tgt := engine.RestoreTarget{Input: rec.Path, Scratch: true, ScratchSuffix: strings.TrimPrefix(scratch, db), Keep: keep, IdentityFile: idFile}
		_, p := inverseDecode(t, Mongodump.Type(), rec, tgt)
		p.(*MongorestoreParams).NoIndexRestore = noIdx
		out, err := Mongorestore.Type().Run(context.Background(), dbEnv(t, "MONGO_URI="+uri), p)
		if err != nil {
			t.Fatalf("keep=%v: %v", keep, err)
		}
		counts := restoredCounts(t, out)
		if d := engine.CompareCounts(rec.Counts, counts); len(d) != 0 || len(counts) != len(rec.Counts) {
			t.Errorf("keep=%v: restored %v, backup %v: %v", keep, counts, rec.Counts, d)
		}
		if keep {
			if got := mongoChecksum(t, cl, scratch); got != wantSum {
				t.Errorf("kept scratch copy checksum %s, want %s", got, wantSum)
			}
			if out["dropped"] != nil {
				t.Errorf("keep: dropped %v", out["dropped"])
			}
		} else {
			if mongoDBExists(t, cl, scratch) {
				t.Errorf("scratch database %s left behind", scratch)
			}
			if !reflect.DeepEqual(out["dropped"], []string{scratch}) {
				t.Errorf("dropped %v", out["dropped"])
			}
		}
		if got := mongoChecksum(t, cl, db); got != wantSum {
			t.Fatalf("original database changed by the drill: checksum %s, want %s", got, wantSum)
		}
		if got := mongoServerCounts(t, cl, db, db); !reflect.DeepEqual(got, wantCounts) {
			t.Fatalf("original database counts %v, want %v", got, wantCounts)
		}
		if got := mongoChecksum(t, cl, bystander); got != wantBystander {
			t.Fatalf("bystander database changed: %s, want %s", got, wantBystander)
		}
	}

	// The real target: drop the original, restore it in place.
	if err := cl.Database(db).Drop(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, p := inverseDecode(t, Mongodump.Type(), rec, engine.RestoreTarget{Input: rec.Path, IdentityFile: idFile})
	p.(*MongorestoreParams).NoIndexRestore = noIdx
	out, err := Mongorestore.Type().Run(context.Background(), dbEnv(t, "MONGO_URI="+uri), p)
	if err != nil {
		t.Fatal(err)
	}
	if d := engine.CompareCounts(rec.Counts, restoredCounts(t, out)); len(d) != 0 {
		t.Errorf("in-place restore: %v", d)
	}
	if got := mongoChecksum(t, cl, db); got != wantSum {
		t.Errorf("in-place restore checksum %s, want %s", got, wantSum)
	}
}

// A scratch database that already holds data is never restored into, nor
// dropped.
func TestMongorestoreDropAfterRefusesExistingScratch(t *testing.T) {
	uri, cl := mongoEnv(t)
	db := mongoFixture(t, cl, 50)
	rec, _, idFile := mongoDump(t, uri, db)
	scratch := mongoFixture(t, cl, 7) // already there, with data
	want := mongoChecksum(t, cl, scratch)
	_, err := dbRun(t, Mongorestore, dbEnv(t, "MONGO_URI="+uri), fmt.Sprintf(
		"uri_env: MONGO_URI\ninput: %s\nidentity_file: %s\nns_include: ['%s.*']\nns_from: ['%s.*']\nns_to: ['%s.*']\ndrop: true\ndrop_after: true",
		rec.Path, idFile, db, db, scratch))
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("err = %v", err)
	}
	if got := mongoChecksum(t, cl, scratch); got != want {
		t.Errorf("existing database changed: %s, want %s", got, want)
	}
}

// A mongodump that exits 0 after writing a cut archive commits nothing.
func TestMongodumpTruncatedArchiveFails(t *testing.T) {
	uri, cl := mongoEnv(t)
	db := mongoFixture(t, cl, 3000)
	real, err := exec.LookPath("mongodump")
	if err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(t.TempDir(), "mongodump-cut")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\n"+real+" \"$@\" | head -c 50000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err = dbRun(t, Mongodump, dbEnv(t), fmt.Sprintf("uri: %s\ndb: %s\nmongodump: %s\noutput: %s/x.archive.zst", uri, db, wrapper, dir))
	if err == nil || !strings.Contains(err.Error(), "no complete archive") || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("err = %v", err)
	}
	dbNoArtifact(t, dir)
}

// A truncated artifact fails the restore, and drop_after still removes
// what mongorestore wrote into the scratch database before it stopped.
func TestMongorestoreTruncatedDropsScratch(t *testing.T) {
	uri, cl := mongoEnv(t)
	db := mongoFixture(t, cl, 3000)
	out := filepath.Join(t.TempDir(), "m.archive.zst")
	if _, err := dbRun(t, Mongodump, dbEnv(t), fmt.Sprintf("uri: %s\ndb: %s\noutput: %s", uri, db, out)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, b[:len(b)*3/4], 0o600); err != nil {
		t.Fatal(err)
	}
	scratch := db + "_trunc"
	t.Cleanup(func() { cl.Database(scratch).Drop(context.Background()) })
	_, err = dbRun(t, Mongorestore, dbEnv(t), fmt.Sprintf(
		"uri: %s\ninput: %s\nns_include: ['%s.*']\nns_from: ['%s.*']\nns_to: ['%s.*']\ndrop: true\ndrop_after: true\nno_index_restore: true",
		uri, out, db, db, scratch))
	if err == nil || !strings.Contains(err.Error(), "reading input") {
		t.Fatalf("err = %v", err)
	}
	if mongoDBExists(t, cl, scratch) {
		t.Errorf("scratch database %s left behind after a failed restore", scratch)
	}
}
