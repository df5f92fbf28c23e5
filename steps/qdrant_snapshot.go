package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/qdrantapi"
)

// QdrantSnapshotParams are the params of qdrant-snapshot.
type QdrantSnapshotParams struct {
	qdrantapi.Conn        `yaml:",inline"`
	Collections           []string `yaml:"collections" doc:"collections to snapshot, one artifact each; empty (and all_collections false): one full-storage snapshot"`
	AllCollections        bool     `yaml:"all_collections" doc:"snapshot every collection the server lists, one artifact each"`
	DeleteAfter           bool     `yaml:"delete_after" default:"true" doc:"delete the server-side snapshot after downloading it, so the server's disk does not fill up"`
	artifact.WriteOptions `yaml:",inline"`
}

// Validate checks the output template against the snapshot mode.
func (p *QdrantSnapshotParams) Validate() error {
	if p.AllCollections && len(p.Collections) > 0 {
		return errors.New("give collections or all_collections, not both")
	}
	perColl := p.AllCollections || len(p.Collections) > 1
	if perColl && !strings.Contains(p.Output, "{collection}") {
		return errors.New("output: with several collections it must contain {collection}, e.g. /backups/qdrant/{collection}.snapshot.zst")
	}
	if !p.AllCollections && len(p.Collections) == 0 && strings.Contains(p.Output, "{collection}") {
		return errors.New("output: {collection} is only meaningful with collections or all_collections")
	}
	for _, c := range p.Collections {
		if c == "" || strings.ContainsAny(c, "/") {
			return fmt.Errorf("collections: invalid collection name %q", c)
		}
	}
	return p.WriteOptions.Validate()
}

func (p *QdrantSnapshotParams) outputFor(collection string) artifact.WriteOptions {
	o := p.WriteOptions
	o.Output = strings.ReplaceAll(o.Output, "{collection}", collection)
	return o
}

// QdrantSnapshot creates Qdrant snapshots and streams them into artifacts.
var QdrantSnapshot = engine.Def[QdrantSnapshotParams]{
	Name:    "qdrant-snapshot",
	Summary: "create a Qdrant snapshot (full storage or per collection) and download it into an artifact",
	Doc: `Creates the snapshot with wait=true (POST /snapshots or POST
/collections/{name}/snapshots), streams it over HTTP (GET .../snapshots/{name})
through compression and encryption into the artifact — no docker cp, no
container paths — checks the downloaded size and sha256 against the
snapshot description the server returned (when it reports them), and then
deletes the server-side snapshot (delete_after). A download that fails
half-way is retried from the start; the partial artifact is discarded.
Restore a collection snapshot with qdrant-restore; a full-storage snapshot
is restored by starting Qdrant with --storage-snapshot FILE (decrypt and
decompress it first with the decrypt/decompress steps).

The manifest records each collection's exact point count (POST
/collections/{name}/points/count {"exact": true}), taken right after the
snapshot is created. Qdrant offers no count consistent with a snapshot: on
a collection written to while the snapshot is made, the recorded count
can differ from the snapshot's content (a warning says so when the counts
before and after creation differ), and a drill's comparison with it then
fails.`,
	Kind: engine.KindBackup,
	Inverse: &engine.Inverse{Type: "qdrant-restore", With: qdrantSnapshotInverse,
		Targets: []string{"collection", "source_collection", "if_exists", "delete_after"}},
	Outputs: append(append([]engine.Output(nil), artifact.StandardOutputs...),
		engine.Output{Name: "snapshots", Doc: "server-side snapshot names, in collection order"},
		engine.Output{Name: "artifacts", Doc: "one entry per artifact: collection, path, size, sha256, bytes_in, snapshot"},
		engine.Output{Name: "duration_ms", Doc: "time taken, milliseconds"},
	),
	Example: "url: http://localhost:6333\napi_key_env: QDRANT_API_KEY\ncollections: [docs]\noutput: /backups/qdrant/docs.snapshot.zst\nencrypt: {recipients_file: /etc/planrun/backup.pub}",
	Preview: func(env *engine.Env, p *QdrantSnapshotParams) []string {
		var out []string
		targets := p.Collections
		switch {
		case p.AllCollections:
			out = append(out, "get: "+p.URL+"/collections (list collections)")
			targets = []string{"{collection}"}
		case len(targets) == 0:
			targets = []string{""}
		}
		for _, c := range targets {
			path := qdrantapi.SnapshotsPath(c)
			out = append(out, "post: "+p.URL+path+"?wait=true", "get: "+p.URL+path+"/{snapshot}", "write: "+p.outputFor(c).Describe())
			if p.DeleteAfter {
				out = append(out, "delete: "+p.URL+path+"/{snapshot}")
			}
		}
		return out
	},
	Run: runQdrantSnapshot,
}

func runQdrantSnapshot(ctx context.Context, env *engine.Env, p *QdrantSnapshotParams) (engine.Outputs, error) {
	start := time.Now()
	q, err := p.Client(env)
	if err != nil {
		return nil, err
	}
	// The version is informative: a server that hides it (a proxy in
	// front) does not fail the backup.
	ver, err := q.Version(ctx)
	if err != nil {
		env.Log.Warn("qdrant server version unknown", "error", err.Error())
	}
	targets := p.Collections
	if p.AllCollections {
		if targets, err = q.ListCollections(ctx); err != nil {
			return nil, err
		}
		if len(targets) == 0 {
			return nil, errors.New("all_collections: the server has no collections")
		}
	} else if len(targets) == 0 {
		targets = []string{""} // full storage
	}

	var arts []map[string]any
	var names []string
	var total artifact.Result
	for _, coll := range targets {
		res, snap, err := snapshotOne(ctx, env, q, p, coll)
		if err != nil {
			return nil, err
		}
		if ver != "" {
			res.Record.Tools = map[string]string{"qdrant": ver}
			res.Record.Source["server_version"] = ver
		}
		names = append(names, snap)
		arts = append(arts, map[string]any{
			"collection": coll, "path": res.Path, "size": res.Size, "sha256": res.SHA256,
			"bytes_in": res.BytesIn, "snapshot": snap,
		})
		if total.Path == "" {
			total.Path, total.SHA256 = res.Path, res.SHA256
		}
		total.Size += res.Size
		total.BytesIn += res.BytesIn
	}
	out := total.Outputs()
	out["snapshots"] = names
	out["artifacts"] = arts
	out["duration_ms"] = time.Since(start).Milliseconds()
	return out, nil
}

// snapshotOne creates, downloads (with whole-download retries), verifies and
// deletes one snapshot.
func snapshotOne(ctx context.Context, env *engine.Env, q *qdrantapi.Client, p *QdrantSnapshotParams, coll string) (artifact.Result, string, error) {
	what := "full storage"
	if coll != "" {
		what = "collection " + coll
	}
	// Qdrant gives no count consistent with a snapshot: the exact count
	// is taken just before and right after creation. When they differ the
	// collection was written to meanwhile, and a drill may see a different
	// number than recorded (the later one).
	var before map[string]int64
	if coll != "" {
		n, err := q.CountPoints(ctx, coll)
		if err != nil {
			return artifact.Result{}, "", fmt.Errorf("snapshot of %s: %w", what, err)
		}
		before = map[string]int64{qdrantapi.PointsKey(coll): n}
	}
	desc, err := q.CreateSnapshot(ctx, coll)
	if err != nil {
		return artifact.Result{}, "", fmt.Errorf("snapshot of %s: %w", what, err)
	}
	env.Log.Info("qdrant snapshot created", "of", what, "name", desc.Name, "size", desc.Size)
	counts, err := q.Counts(ctx, coll)
	if err != nil {
		if p.DeleteAfter { // nothing was downloaded: do not leave it filling the server's disk
			if derr := q.DeleteSnapshot(ctx, coll, desc.Name); derr != nil {
				env.Log.Warn("deleting the server-side snapshot failed", "name", desc.Name, "error", derr.Error())
			}
		}
		return artifact.Result{}, desc.Name, fmt.Errorf("snapshot %s of %s: %w", desc.Name, what, err)
	}
	changed := ""
	for k, n := range before {
		if counts[k] != n {
			changed = fmt.Sprintf("%d before the snapshot, %d after", n, counts[k])
			env.Log.Warn("qdrant collection changed while the snapshot was made; the recorded count may differ from the snapshot's",
				"collection", coll, "points_before", n, "points_after", counts[k])
		}
	}

	var res artifact.Result
	for attempt := 0; ; attempt++ {
		res, err = download(ctx, env, q, coll, desc, p.outputFor(coll))
		if err == nil || ctx.Err() != nil || attempt >= p.Retries || !retryableDownload(err) {
			break
		}
		env.Log.Warn("qdrant snapshot download failed, retrying", "name", desc.Name, "error", err)
	}
	if err != nil {
		// Keep the server-side snapshot: it may be fetched by hand.
		return artifact.Result{}, desc.Name, fmt.Errorf("snapshot %s of %s: %w", desc.Name, what, err)
	}
	src := p.Conn.Source()
	src["snapshot"] = desc.Name
	if coll != "" {
		src["collection"] = coll
	} else {
		src["scope"] = "full-storage"
	}
	if changed != "" {
		src["points_changed"] = changed
	}
	res.Record.Source, res.Record.Counts = src, counts
	if p.DeleteAfter {
		if err := q.DeleteSnapshot(ctx, coll, desc.Name); err != nil {
			return artifact.Result{}, desc.Name, fmt.Errorf("artifact %s written, but deleting the server-side snapshot failed: %w", res.Path, err)
		}
	}
	return res, desc.Name, nil
}

// qdrantSnapshotInverse restores a collection snapshot with qdrant-restore:
// into collection+suffix (deleted after counting unless kept) for a
// scratch restore, into the original collection otherwise, failing if it
// exists. A full-storage snapshot has no API restore.
func qdrantSnapshotInverse(a engine.ArtifactRecord, t engine.RestoreTarget) (map[string]any, error) {
	coll := a.Source["collection"]
	if coll == "" {
		return nil, fmt.Errorf("a Qdrant full-storage snapshot is restored by starting Qdrant with --storage-snapshot (after decrypt/decompress): %w", engine.ErrNoRestore)
	}
	if a.Source["url"] == "" {
		return nil, fmt.Errorf("qdrant artifact %s: no source url recorded", a.Path)
	}
	with := map[string]any{"url": a.Source["url"], "collection": coll, "source_collection": coll, "input": t.Input}
	if k := a.Source["api_key_env"]; k != "" {
		with["api_key_env"] = k
	}
	if t.Scratch {
		if t.ScratchSuffix == "" {
			return nil, errors.New("scratch restore without a scratch suffix")
		}
		with["collection"] = coll + t.ScratchSuffix
		with["delete_after"] = !t.Keep
	}
	// Never replace a live collection's data unless the operator says so
	// (restore override if_exists: overwrite); a lost one is recreated.
	with["if_exists"] = "fail"
	artifact.AddReadKeys(with, t)
	return with, nil
}

// errMidBody marks a download that broke after the headers: worth a retry.
type errMidBody struct{ err error }

func (e errMidBody) Error() string { return e.err.Error() }
func (e errMidBody) Unwrap() error { return e.err }

func retryableDownload(err error) bool {
	var mb errMidBody
	return errors.As(err, &mb)
}

// download streams a snapshot into an artifact (counted there, once) and
// checks it against the server's description.
func download(ctx context.Context, env *engine.Env, q *qdrantapi.Client, coll string, desc qdrantapi.Snapshot, opts artifact.WriteOptions) (artifact.Result, error) {
	body, err := q.DownloadSnapshot(ctx, coll, desc.Name)
	if err != nil {
		return artifact.Result{}, err
	}
	defer body.Close()
	w, err := artifact.Create(ctx, env, opts)
	if err != nil {
		return artifact.Result{}, err
	}
	defer w.Abort()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), body)
	if err != nil {
		if ctx.Err() != nil {
			return artifact.Result{}, ctx.Err()
		}
		return artifact.Result{}, errMidBody{fmt.Errorf("download broke after %d bytes: %w", n, err)}
	}
	if desc.Size > 0 && n != desc.Size {
		return artifact.Result{}, errMidBody{fmt.Errorf("downloaded %d bytes, server reported size %d", n, desc.Size)}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if desc.Checksum != "" && !strings.EqualFold(desc.Checksum, sum) {
		return artifact.Result{}, fmt.Errorf("checksum mismatch: downloaded sha256 %s, server reported %s", sum, desc.Checksum)
	}
	return w.Commit()
}
