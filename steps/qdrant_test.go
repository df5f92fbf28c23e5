package steps

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/planrun/planrun/internal/qdrantdouble"
)

func qdrantFixture(t *testing.T, o qdrantdouble.Options) (*qdrantdouble.Server, *httptest.Server) {
	t.Helper()
	d := qdrantdouble.New(o)
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(srv.Close)
	return d, srv
}

func qdrantPoints(n int) []qdrantdouble.Point {
	pts := make([]qdrantdouble.Point, n)
	for i := range pts {
		pts[i] = qdrantdouble.Point{ID: uint64(i + 1), Vector: []float64{float64(i), 0.5, -1, float64(i % 7)},
			Payload: map[string]any{"title": fmt.Sprintf("doc %d", i), "tag": i % 3}}
	}
	return pts
}

func TestQdrantSnapshotRoundTripEncrypted(t *testing.T) {
	d, srv := qdrantFixture(t, qdrantdouble.Options{APIKey: "qdrant-key-s3cr3t", SnapshotPadding: 8 << 20})
	want := qdrantPoints(500)
	d.CreateCollection("docs", qdrantdouble.VectorParams{Size: 4, Distance: "Cosine"}, want)
	idFile, recip := dbAgeKeys(t)
	out := filepath.Join(t.TempDir(), "docs.snapshot.zst.age")

	env := dbEnv(t, "QDRANT_API_KEY=qdrant-key-s3cr3t")
	res, err := dbRun(t, QdrantSnapshot, env, fmt.Sprintf(
		"url: %s\napi_key_env: QDRANT_API_KEY\ncollections: [docs]\noutput: %s\nencrypt: {recipients: [%s]}", srv.URL, out, recip))
	if err != nil {
		t.Fatal(err)
	}
	if res["path"] != out || res["size"].(int64) <= 0 || res["bytes_in"].(int64) < 8<<20 {
		t.Fatalf("outputs: %v", res)
	}
	assertCountedOnce(t, env, res)
	if names := d.SnapshotNames("docs"); len(names) != 0 {
		t.Errorf("server-side snapshots not deleted: %v", names)
	}
	if snaps := res["snapshots"].([]string); len(snaps) != 1 || !strings.HasPrefix(snaps[0], "docs-") {
		t.Errorf("snapshots output: %v", snaps)
	}

	d.DropAll()
	_, err = dbRun(t, QdrantRestore, dbEnv(t, "QDRANT_API_KEY=qdrant-key-s3cr3t"), fmt.Sprintf(
		"url: %s\napi_key_env: QDRANT_API_KEY\ncollection: docs_restored\ninput: %s\nidentity_file: %s", srv.URL, out, idFile))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := d.Points("docs_restored")
	if !ok || !reflect.DeepEqual(jsonRound(t, got), jsonRound(t, want)) {
		t.Fatalf("restored %d points, want %d identical", len(got), len(want))
	}
}

func TestQdrantSnapshotRetriesServerErrorsAndBrokenDownloads(t *testing.T) {
	d, srv := qdrantFixture(t, qdrantdouble.Options{SnapshotPadding: 1 << 20})
	d.CreateCollection("c1", qdrantdouble.VectorParams{Size: 4, Distance: "Dot"}, qdrantPoints(10))
	d.FailNext(http.MethodPost, "/collections/c1/snapshots", 2, http.StatusServiceUnavailable)
	d.FailNext(http.MethodGet, "/collections/c1/snapshots/", 1, http.StatusInternalServerError)
	d.TruncateNext("/collections/c1/snapshots/", 1)
	out := filepath.Join(t.TempDir(), "c1.snapshot")
	res, err := dbRun(t, QdrantSnapshot, dbEnv(t), fmt.Sprintf(
		"url: %s\ncollections: [c1]\noutput: %s\ncompress: none\nretries: 3", srv.URL, out))
	if err != nil {
		t.Fatal(err)
	}
	var posts, gets int
	for _, r := range d.Requests() {
		switch {
		case r == "POST /collections/c1/snapshots":
			posts++
		case strings.HasPrefix(r, "GET /collections/c1/snapshots/"):
			gets++
		}
	}
	if posts != 3 || gets != 3 {
		t.Errorf("requests: %d POST (want 3: 2 x 503 + ok), %d GET (want 3: 500, truncated, ok): %v", posts, gets, d.Requests())
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() != res["size"].(int64) {
		t.Fatalf("artifact: %v %v", fi, err)
	}
}

func TestQdrantSnapshotNotFoundIsNotRetried(t *testing.T) {
	d, srv := qdrantFixture(t, qdrantdouble.Options{})
	dir := t.TempDir()
	_, err := dbRun(t, QdrantSnapshot, dbEnv(t), fmt.Sprintf(
		"url: %s\ncollections: [missing]\noutput: %s/x.snapshot\nretries: 5", srv.URL, dir))
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), "doesn't exist") {
		t.Fatalf("err = %v", err)
	}
	var n int
	for _, r := range d.Requests() {
		if strings.Contains(r, "/collections/missing") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d requests for a 404, want 1 (no retry): %v", n, d.Requests())
	}
	dbNoArtifact(t, dir)
}

func TestQdrantSnapshotWrongAPIKeyFails(t *testing.T) {
	_, srv := qdrantFixture(t, qdrantdouble.Options{APIKey: "right-key"})
	_, err := dbRun(t, QdrantSnapshot, dbEnv(t), fmt.Sprintf(
		"url: %s\napi_key: wrong-key-123\noutput: %s/full.snapshot", srv.URL, t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "wrong-key-123") {
		t.Errorf("api key in error: %v", err)
	}
}

func TestQdrantSnapshotAllCollectionsAndFullStorage(t *testing.T) {
	d, srv := qdrantFixture(t, qdrantdouble.Options{SnapshotDelay: 0})
	d.CreateCollection("a", qdrantdouble.VectorParams{Size: 4, Distance: "Cosine"}, qdrantPoints(3))
	d.CreateCollection("b", qdrantdouble.VectorParams{Size: 4, Distance: "Cosine"}, qdrantPoints(7))
	dir := t.TempDir()
	res, err := dbRun(t, QdrantSnapshot, dbEnv(t), fmt.Sprintf(
		"url: %s\nall_collections: true\noutput: %s/{collection}.snapshot.zst", srv.URL, dir))
	if err != nil {
		t.Fatal(err)
	}
	arts := res["artifacts"].([]map[string]any)
	if len(arts) != 2 || arts[0]["path"] != dir+"/a.snapshot.zst" || arts[1]["path"] != dir+"/b.snapshot.zst" {
		t.Fatalf("artifacts: %v", arts)
	}

	full := filepath.Join(dir, "full.snapshot.zst")
	if _, err := dbRun(t, QdrantSnapshot, dbEnv(t), fmt.Sprintf("url: %s\noutput: %s", srv.URL, full)); err != nil {
		t.Fatal(err)
	}
	if names := d.SnapshotNames(""); len(names) != 0 {
		t.Errorf("full snapshot not deleted: %v", names)
	}
	// A full-storage snapshot is restored at server start (--storage-snapshot).
	fresh := qdrantdouble.New(qdrantdouble.Options{})
	if err := fresh.LoadStorageSnapshot(strings.NewReader(string(dbReadArtifact(t, full, "")))); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]int{"a": 3, "b": 7} {
		if pts, ok := fresh.Points(name); !ok || len(pts) != n {
			t.Errorf("collection %s after storage restore: %d points, want %d", name, len(pts), n)
		}
	}
}

func TestQdrantRestoreFromLocation(t *testing.T) {
	d, srv := qdrantFixture(t, qdrantdouble.Options{})
	want := qdrantPoints(42)
	d.CreateCollection("src", qdrantdouble.VectorParams{Size: 4, Distance: "Cosine"}, want)
	plain := filepath.Join(t.TempDir(), "src.snapshot")
	res, err := dbRun(t, QdrantSnapshot, dbEnv(t), fmt.Sprintf("url: %s\ncollections: [src]\noutput: %s\ncompress: none", srv.URL, plain))
	if err != nil {
		t.Fatal(err)
	}
	with := fmt.Sprintf("url: %s\ncollection: copy\nlocation: file://%s\nchecksum: %s", srv.URL, plain, res["sha256"])
	if _, err := dbRun(t, QdrantRestore, dbEnv(t), with); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Points("copy"); len(got) != len(want) {
		t.Fatalf("copy has %d points, want %d", len(got), len(want))
	}
	// A wrong checksum is rejected by the server (400, no retry).
	bad := fmt.Sprintf("url: %s\ncollection: copy2\nlocation: file://%s\nchecksum: %s", srv.URL, plain, strings.Repeat("0", 64))
	if _, err := dbRun(t, QdrantRestore, dbEnv(t), bad); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("err = %v", err)
	}
}

func TestQdrantRestoreTruncatedArtifactFails(t *testing.T) {
	d, srv := qdrantFixture(t, qdrantdouble.Options{SnapshotPadding: 256 << 10})
	d.CreateCollection("src", qdrantdouble.VectorParams{Size: 4, Distance: "Cosine"}, qdrantPoints(5))
	art := filepath.Join(t.TempDir(), "src.snapshot.zst")
	if _, err := dbRun(t, QdrantSnapshot, dbEnv(t), fmt.Sprintf("url: %s\ncollections: [src]\noutput: %s", srv.URL, art)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(art)
	if err := os.WriteFile(art, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := dbRun(t, QdrantRestore, dbEnv(t), fmt.Sprintf("url: %s\ncollection: broken\ninput: %s\nretries: 0", srv.URL, art))
	if err == nil {
		t.Fatal("restore of a truncated artifact succeeded")
	}
	if _, ok := d.Points("broken"); ok {
		t.Error("collection created from a truncated upload")
	}
}

func TestQdrantSnapshotValidate(t *testing.T) {
	for with, want := range map[string]string{
		"url: http://q:6333\ncollections: [a, b]\noutput: /b/x.snapshot":                       "must contain {collection}",
		"url: http://q:6333\nall_collections: true\ncollections: [a]\noutput: /b/{collection}": "not both",
		"url: http://q:6333\noutput: /b/{collection}.snapshot":                                 "only meaningful",
	} {
		if _, probs := dbTryDecode(QdrantSnapshot, with); len(probs) == 0 || !strings.Contains(fmt.Sprint(probs), want) {
			t.Errorf("%q: problems %v, want %q", with, probs, want)
		}
	}
	if _, probs := dbTryDecode(QdrantRestore, "url: http://q\ncollection: c"); len(probs) == 0 {
		t.Error("restore without input or location accepted")
	}
}
