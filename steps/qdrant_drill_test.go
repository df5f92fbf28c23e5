package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/qdrantdouble"
	"github.com/planrun/planrun/internal/testenv"
)

// qdrantBackup snapshots one collection of the double into an encrypted
// artifact and returns the record the manifest would hold.
func qdrantBackup(t *testing.T, url, coll, apiKey string) (engine.ArtifactRecord, string, *testenv.SyncBuffer) {
	t.Helper()
	idFile, recip := dbAgeKeys(t)
	out := filepath.Join(t.TempDir(), coll+".snapshot.zst.age")
	env, logs := testStepEnv(t, "QDRANT_API_KEY="+apiKey)
	auth := ""
	if apiKey != "" {
		auth = "api_key_env: QDRANT_API_KEY\n"
	}
	if _, err := dbRun(t, QdrantSnapshot, env, fmt.Sprintf(
		"url: %s\n%scollections: [%s]\noutput: %s\nencrypt: {recipients: [%s]}", url, auth, coll, out, recip)); err != nil {
		t.Fatal(err)
	}
	recs := recorded(t, env)
	if len(recs) != 1 || recs[0].Path != out {
		t.Fatalf("records: %+v", recs)
	}
	return *recs[0], idFile, logs
}

func TestQdrantSnapshotRecordsAndScratchRestoreCounts(t *testing.T) {
	const key = "qdrant-key-s3cr3t"
	d, srv := qdrantFixture(t, qdrantdouble.Options{APIKey: key})
	d.CreateCollection("docs", qdrantdouble.VectorParams{Size: 4, Distance: "Cosine"}, qdrantPoints(321))
	rec, idFile, _ := qdrantBackup(t, srv.URL, "docs", key)

	wantSrc := map[string]string{"kind": "qdrant", "url": srv.URL, "collection": "docs", "api_key_env": "QDRANT_API_KEY",
		"server_version": qdrantdouble.Version}
	for k, v := range wantSrc {
		if rec.Source[k] != v {
			t.Errorf("source[%s] = %q, want %q (source %v)", k, rec.Source[k], v, rec.Source)
		}
	}
	if !reflect.DeepEqual(rec.Counts, map[string]int64{"points:docs": 321}) || rec.Tools["qdrant"] != qdrantdouble.Version {
		t.Errorf("counts %v tools %v", rec.Counts, rec.Tools)
	}
	if b, _ := json.Marshal(rec); strings.Contains(string(b), key) {
		t.Fatalf("api key in the record: %s", b)
	}

	// Drill: scratch restore into docs+suffix, counted, then deleted.
	const suffix = "_drill_1a2b3c4d"
	tgt := engine.RestoreTarget{Input: rec.Path, Scratch: true, ScratchSuffix: suffix, IdentityFile: idFile}
	name, p := inverseDecode(t, QdrantSnapshot.Type(), rec, tgt)
	rp := p.(*QdrantRestoreParams)
	if name != "qdrant-restore" || rp.Collection != "docs"+suffix || rp.SourceCollection != "docs" || !rp.DeleteAfter ||
		rp.APIKeyEnv != "QDRANT_API_KEY" || rp.Input != rec.Path || rp.IdentityFile != idFile {
		t.Fatalf("scratch inverse: %s %+v", name, rp)
	}
	env := dbEnv(t, "QDRANT_API_KEY="+key)
	out, err := QdrantRestore.Run(context.Background(), env, rp)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := engine.CountsOf(out["counts"])
	if diffs := engine.CompareCounts(rec.Counts, got); len(diffs) > 0 || out["deleted"] != true {
		t.Fatalf("restore counts %v differ from the backup's %v: %v (deleted %v)", got, rec.Counts, diffs, out["deleted"])
	}
	if _, ok := d.Points("docs" + suffix); ok {
		t.Error("scratch collection left behind")
	}
	if pts, _ := d.Points("docs"); len(pts) != 321 {
		t.Errorf("original collection has %d points after the drill", len(pts))
	}

	// keep: the scratch collection stays for inspection.
	tgt.Keep = true
	_, p = inverseDecode(t, QdrantSnapshot.Type(), rec, tgt)
	if rp := p.(*QdrantRestoreParams); rp.DeleteAfter {
		t.Fatal("keep still deletes")
	}
	if _, err := QdrantRestore.Run(context.Background(), env, p.(*QdrantRestoreParams)); err != nil {
		t.Fatal(err)
	}
	if pts, ok := d.Points("docs" + suffix); !ok || len(pts) != 321 {
		t.Errorf("kept scratch collection: %d points, exists %v", len(pts), ok)
	}

	// DR restore: the original collection, not over a live one unless the
	// operator overrides if_exists, and recreated on a server that lost it.
	_, p = inverseDecode(t, QdrantSnapshot.Type(), rec, engine.RestoreTarget{Input: rec.Path, IdentityFile: idFile})
	rp = p.(*QdrantRestoreParams)
	if rp.Collection != "docs" || rp.DeleteAfter || rp.IfExists != "fail" {
		t.Fatalf("non-scratch inverse: %+v", rp)
	}
	d.AddPoints("docs", qdrantPoints(400)[321:])
	if _, err := QdrantRestore.Run(context.Background(), env, rp); err == nil || !strings.Contains(err.Error(), "already exists and if_exists is fail") {
		t.Fatalf("restore over a live collection: %v", err)
	}
	if pts, _ := d.Points("docs"); len(pts) != 400 {
		t.Fatalf("live collection touched: %d points", len(pts))
	}
	d.DropAll()
	out, err = QdrantRestore.Run(context.Background(), env, rp)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = engine.CountsOf(out["counts"])
	if diffs := engine.CompareCounts(rec.Counts, got); len(diffs) > 0 || out["deleted"] != false {
		t.Fatalf("DR restore: %v (outputs %v)", diffs, out)
	}
	if pts, _ := d.Points("docs"); len(pts) != 321 {
		t.Errorf("restored collection has %d points", len(pts))
	}
}

func TestQdrantRestoreDeleteAfterGuards(t *testing.T) {
	for with, want := range map[string]string{
		"url: http://q\ncollection: docs\ninput: x\ndelete_after: true":                          "give source_collection",
		"url: http://q\ncollection: docs\nsource_collection: docs\ninput: x\ndelete_after: true": "backed-up collection itself",
	} {
		if _, probs := dbTryDecode(QdrantRestore, with); len(probs) == 0 || !strings.Contains(fmt.Sprint(probs), want) {
			t.Errorf("%q: problems %v, want %q", with, probs, want)
		}
	}

	d, srv := qdrantFixture(t, qdrantdouble.Options{})
	d.CreateCollection("docs", qdrantdouble.VectorParams{Size: 4, Distance: "Cosine"}, qdrantPoints(12))
	rec, idFile, _ := qdrantBackup(t, srv.URL, "docs", "")

	// A "scratch" name that already exists is refused and left alone.
	d.CreateCollection("docs_copy", qdrantdouble.VectorParams{Size: 4, Distance: "Cosine"}, qdrantPoints(3))
	with := fmt.Sprintf("url: %s\ncollection: docs_copy\nsource_collection: docs\ninput: %s\nidentity_file: %s\ndelete_after: true\nretries: 0", srv.URL, rec.Path, idFile)
	if _, err := dbRun(t, QdrantRestore, dbEnv(t), with); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("err = %v", err)
	}
	if pts, ok := d.Points("docs_copy"); !ok || len(pts) != 3 {
		t.Fatalf("existing collection touched: %d points, exists %v", len(pts), ok)
	}

	// A restore that fails after creating the scratch collection (here the
	// count) still deletes it.
	d.FailNext(http.MethodPost, "/collections/docs_scratch/points/count", 1, http.StatusBadRequest)
	with = strings.ReplaceAll(with, "docs_copy", "docs_scratch")
	if _, err := dbRun(t, QdrantRestore, dbEnv(t), with); err == nil || !strings.Contains(err.Error(), "count points of docs_scratch") {
		t.Fatalf("err = %v", err)
	}
	if _, ok := d.Points("docs_scratch"); ok {
		t.Error("scratch collection left behind after a failed restore")
	}
	if pts, _ := d.Points("docs"); len(pts) != 12 {
		t.Errorf("original has %d points", len(pts))
	}
}

// Qdrant has no snapshot-consistent count: a collection written to while
// the snapshot is made is recorded with the count after creation (and a
// warning), so the drill of that artifact reports a difference.
func TestQdrantSnapshotCountWhileWritten(t *testing.T) {
	var d *qdrantdouble.Server
	d, srv := qdrantFixture(t, qdrantdouble.Options{AfterSnapshotCopy: func(coll string) {
		pts := qdrantPoints(15)[10:]
		d.AddPoints(coll, pts)
	}})
	d.CreateCollection("busy", qdrantdouble.VectorParams{Size: 4, Distance: "Dot"}, qdrantPoints(10))
	rec, idFile, logs := qdrantBackup(t, srv.URL, "busy", "")
	if rec.Counts["points:busy"] != 15 || rec.Source["points_changed"] != "10 before the snapshot, 15 after" ||
		!strings.Contains(logs.String(), "changed while the snapshot was made") {
		t.Fatalf("counts %v source %v", rec.Counts, rec.Source)
	}
	_, p := inverseDecode(t, QdrantSnapshot.Type(), rec, engine.RestoreTarget{Input: rec.Path, Scratch: true, ScratchSuffix: "_d", IdentityFile: idFile})
	out, err := QdrantRestore.Run(context.Background(), dbEnv(t), p.(*QdrantRestoreParams))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := engine.CountsOf(out["counts"])
	if diffs := engine.CompareCounts(rec.Counts, got); len(diffs) != 1 || diffs[0].Restored != 10 {
		t.Fatalf("diffs %v", diffs)
	}
}

func TestQdrantFullStorageSnapshotRecord(t *testing.T) {
	d, srv := qdrantFixture(t, qdrantdouble.Options{})
	d.CreateCollection("a", qdrantdouble.VectorParams{Size: 4, Distance: "Cosine"}, qdrantPoints(3))
	d.CreateCollection("b", qdrantdouble.VectorParams{Size: 4, Distance: "Cosine"}, qdrantPoints(7))
	env := dbEnv(t)
	if _, err := dbRun(t, QdrantSnapshot, env, fmt.Sprintf("url: %s\noutput: %s/full.snapshot.zst", srv.URL, t.TempDir())); err != nil {
		t.Fatal(err)
	}
	recs := recorded(t, env)
	if len(recs) != 1 || recs[0].Source["scope"] != "full-storage" ||
		!reflect.DeepEqual(recs[0].Counts, map[string]int64{"points:a": 3, "points:b": 7}) {
		t.Fatalf("records %+v", recs)
	}
	if _, err := QdrantSnapshot.Inverse.With(*recs[0], engine.RestoreTarget{Input: recs[0].Path}); !errors.Is(err, engine.ErrNoRestore) ||
		!strings.Contains(err.Error(), "--storage-snapshot") {
		t.Fatalf("full-storage inverse: %v", err)
	}
}
