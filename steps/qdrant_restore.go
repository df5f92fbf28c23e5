package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/qdrantapi"
)

// QdrantRestoreParams are the params of qdrant-restore.
type QdrantRestoreParams struct {
	qdrantapi.Conn       `yaml:",inline"`
	Collection           string `yaml:"collection" required:"true" doc:"collection to recover (created if missing, overwritten if present)"`
	Input                string `yaml:"input" doc:"collection snapshot artifact to upload (decrypted and decompressed on the fly)"`
	Location             string `yaml:"location" doc:"instead of input: a URL or file:// path the Qdrant server itself fetches the snapshot from"`
	Priority             string `yaml:"priority" enum:"snapshot|replica|no_sync" default:"snapshot" doc:"conflict priority; snapshot makes the snapshot's data win (right for restores)"`
	Checksum             string `yaml:"checksum" doc:"expected sha256 of the plain snapshot file; the server verifies it"`
	SourceCollection     string `yaml:"source_collection" doc:"the collection the snapshot was taken of, which names the counts (points:<source_collection>); default: collection"`
	IfExists             string `yaml:"if_exists" enum:"overwrite|fail" default:"overwrite" doc:"what to do when collection already exists: overwrite it with the snapshot's data, or fail without touching it (what a derived DR restore uses)"`
	DeleteAfter          bool   `yaml:"delete_after" doc:"delete the restored collection after counting it (scratch restores in drills); only when collection differs from source_collection, and refused if collection exists before the restore"`
	artifact.ReadOptions `yaml:",inline"`
}

// Validate requires exactly one source, and makes delete_after impossible
// on the backed-up collection itself.
func (p *QdrantRestoreParams) Validate() error {
	if (p.Input == "") == (p.Location == "") {
		return errors.New("give exactly one of input and location")
	}
	if p.DeleteAfter {
		if p.SourceCollection == "" {
			return errors.New("delete_after: give source_collection (the backed-up collection), which collection must differ from")
		}
		if p.SourceCollection == p.Collection {
			return fmt.Errorf("delete_after: collection %q is the backed-up collection itself; delete_after is only for a scratch collection with another name", p.Collection)
		}
	}
	return nil
}

func (p *QdrantRestoreParams) sourceName() string {
	if p.SourceCollection != "" {
		return p.SourceCollection
	}
	return p.Collection
}

// QdrantRestore recovers a Qdrant collection from a snapshot.
var QdrantRestore = engine.Def[QdrantRestoreParams]{
	Name:    "qdrant-restore",
	Summary: "recover a Qdrant collection from a snapshot artifact (upload) or a location the server fetches",
	Doc: `With input, uploads the artifact as multipart field "snapshot" to
POST /collections/{name}/snapshots/upload?wait=true&priority=... , decrypting
and decompressing it on the fly (each retry re-opens the artifact). With
location, asks the server to fetch it: PUT /collections/{name}/snapshots/recover
{"location", "priority"}. Full-storage snapshots cannot be restored through
the API: decrypt/decompress the artifact and start Qdrant with
--storage-snapshot FILE (and --force-snapshot to overwrite existing data).

After the restore the collection's points are counted exactly (POST
/collections/{name}/points/count {"exact": true}) into the counts output,
keyed points:<source_collection> as the backup's manifest names them.
if_exists: fail leaves an existing collection alone and fails (a restore
derived from a manifest uses it; override it to overwrite). With
delete_after (drills), a collection that already exists is refused, and the
restored collection is deleted after counting — also when the restore
failed half-way.`,
	Kind: engine.KindOther,
	Outputs: []engine.Output{
		{Name: "collection", Doc: "the recovered collection"},
		{Name: "bytes_sent", Doc: "plain snapshot bytes uploaded (0 with location)"},
		{Name: "counts", Doc: "points in the restored collection, keyed points:<source_collection>"},
		{Name: "deleted", Doc: "whether the restored collection was deleted (delete_after)"},
		{Name: "duration_ms", Doc: "time taken, milliseconds"},
	},
	Example: "url: http://localhost:6333\ncollection: docs_drill\ninput: /backups/qdrant/docs.snapshot.zst\nidentity_file: /etc/planrun/restore.key",
	Preview: func(env *engine.Env, p *QdrantRestoreParams) []string {
		coll := p.URL + "/collections/" + url.PathEscape(p.Collection)
		base := p.URL + qdrantapi.SnapshotsPath(p.Collection)
		var out []string
		if p.DeleteAfter || p.IfExists == "fail" {
			out = append(out, "get: "+coll+" (must not exist)")
		}
		if p.Input != "" {
			out = append(out, "read: "+p.Input, "post: "+base+"/upload?wait=true&priority="+p.Priority+" (multipart field snapshot)")
		} else {
			out = append(out, "put: "+base+"/recover {location: "+env.Secrets.Redact(p.Location)+", priority: "+p.Priority+"}")
		}
		out = append(out, "post: "+coll+"/points/count {exact: true}")
		if p.DeleteAfter {
			out = append(out, "delete: "+coll)
		}
		return out
	},
	Run: runQdrantRestore,
}

func runQdrantRestore(ctx context.Context, env *engine.Env, p *QdrantRestoreParams) (out engine.Outputs, err error) {
	start := time.Now()
	q, err := p.Client(env)
	if err != nil {
		return nil, err
	}
	if p.DeleteAfter || p.IfExists == "fail" {
		exists, xerr := q.CollectionExists(ctx, p.Collection)
		if xerr != nil {
			return nil, xerr
		}
		switch {
		case exists && p.DeleteAfter: // only a collection this step creates may be deleted by it
			return nil, fmt.Errorf("delete_after: collection %s already exists; refusing to restore over it and delete it (a scratch collection must be new)", p.Collection)
		case exists:
			return nil, fmt.Errorf("collection %s already exists and if_exists is fail: not touched; set if_exists: overwrite to replace its data with the snapshot's", p.Collection)
		}
	}
	if p.DeleteAfter {
		defer func() {
			// Also after a failure or cancellation (bounded): the collection is scratch.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			derr := q.DeleteCollection(dctx, p.Collection)
			if derr != nil {
				derr = fmt.Errorf("delete_after: deleting scratch collection %s: %w", p.Collection, derr)
				if err == nil {
					err = derr
				} else {
					env.Log.Error("scratch collection left behind", "collection", p.Collection, "error", derr.Error())
				}
				return
			}
			env.Log.Info("scratch collection deleted", "collection", p.Collection)
			if out != nil {
				out["deleted"] = true
			}
		}()
	}
	sent, err := p.restore(ctx, env, q)
	if err != nil {
		return nil, err
	}
	n, err := q.CountPoints(ctx, p.Collection)
	if err != nil {
		return nil, err
	}
	out = engine.Outputs{"collection": p.Collection, "bytes_sent": sent, "deleted": false,
		"counts": map[string]int64{qdrantapi.PointsKey(p.sourceName()): n}}
	env.Log.Info("qdrant collection restored", "collection", p.Collection, "points", n)
	out["duration_ms"] = time.Since(start).Milliseconds()
	return out, nil
}

// restore recovers p.Collection from the input or the location and
// returns the snapshot bytes uploaded.
func (p *QdrantRestoreParams) restore(ctx context.Context, env *engine.Env, q *qdrantapi.Client) (int64, error) {
	if p.Location != "" {
		body := map[string]string{"location": p.Location, "priority": p.Priority}
		if p.Checksum != "" {
			body["checksum"] = p.Checksum
		}
		if err := q.Recover(ctx, p.Collection, body); err != nil {
			return 0, fmt.Errorf("recover %s from %s: %w", p.Collection, env.Secrets.Redact(p.Location), err)
		}
		return 0, nil
	}
	// Fail early (and clearly) on a missing file or a wrong key.
	f, err := artifact.Open(p.Input, p.ReadOptions)
	if err != nil {
		return 0, fmt.Errorf("input: %w", err)
	}
	f.Close()

	sent := &counter{}
	boundary := multipart.NewWriter(io.Discard).Boundary()
	body := retryablehttp.ReaderFunc(func() (io.Reader, error) {
		sent.reset()
		return multipartBody(p.Input, p.ReadOptions, boundary, sent)
	})
	query := url.Values{"wait": {"true"}, "priority": {p.Priority}}
	if p.Checksum != "" {
		query.Set("checksum", p.Checksum)
	}
	if err := q.Upload(ctx, p.Collection, query, body, "multipart/form-data; boundary="+boundary); err != nil {
		return 0, fmt.Errorf("upload %s to collection %s: %w", p.Input, p.Collection, err)
	}
	return sent.get(), nil
}

// multipartBody streams the plaintext artifact as a multipart form with one
// file field "snapshot". A read error (bad MAC, truncation) aborts the
// request body, so the server never sees a complete upload.
func multipartBody(path string, opts artifact.ReadOptions, boundary string, sent *counter) (io.Reader, error) {
	src, err := artifact.Open(path, opts)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer src.Close()
		mw := multipart.NewWriter(pw)
		_ = mw.SetBoundary(boundary)
		name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		if !strings.HasSuffix(name, ".snapshot") {
			name += ".snapshot"
		}
		part, err := mw.CreateFormFile("snapshot", name)
		if err == nil {
			_, err = io.Copy(io.MultiWriter(sent, part), src)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// counter counts bytes written through it; safe for concurrent use.
type counter struct{ n atomic.Int64 }

func (c *counter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }
func (c *counter) reset()                      { c.n.Store(0) }
func (c *counter) get() int64                  { return c.n.Load() }
