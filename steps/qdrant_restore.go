package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// QdrantRestoreParams are the params of qdrant-restore.
type QdrantRestoreParams struct {
	QdrantConn           `yaml:",inline"`
	Collection           string `yaml:"collection" required:"true" doc:"collection to recover (created if missing, overwritten if present)"`
	Input                string `yaml:"input" doc:"collection snapshot artifact to upload (decrypted and decompressed on the fly)"`
	Location             string `yaml:"location" doc:"instead of input: a URL or file:// path the Qdrant server itself fetches the snapshot from"`
	Priority             string `yaml:"priority" enum:"snapshot|replica|no_sync" default:"snapshot" doc:"conflict priority; snapshot makes the snapshot's data win (right for restores)"`
	Checksum             string `yaml:"checksum" doc:"expected sha256 of the plain snapshot file; the server verifies it"`
	artifact.ReadOptions `yaml:",inline"`
}

// Validate requires exactly one source.
func (p *QdrantRestoreParams) Validate() error {
	if (p.Input == "") == (p.Location == "") {
		return errors.New("give exactly one of input and location")
	}
	return nil
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
--storage-snapshot FILE (and --force-snapshot to overwrite existing data).`,
	Kind: engine.KindOther,
	Outputs: []engine.Output{
		{Name: "collection", Doc: "the recovered collection"},
		{Name: "bytes_sent", Doc: "plain snapshot bytes uploaded (0 with location)"},
		{Name: "duration_ms", Doc: "time taken, milliseconds"},
	},
	Example: "url: http://localhost:6333\ncollection: docs_drill\ninput: /backups/qdrant/docs.snapshot.zst\nidentity_file: /etc/planrun/restore.key",
	Preview: func(env *engine.Env, p *QdrantRestoreParams) []string {
		base := p.URL + qdrantSnapshotsPath(p.Collection)
		if p.Input != "" {
			return []string{"read: " + p.Input, "post: " + base + "/upload?wait=true&priority=" + p.Priority + " (multipart field snapshot)"}
		}
		return []string{"put: " + base + "/recover {location: " + env.Secrets.Redact(p.Location) + ", priority: " + p.Priority + "}"}
	},
	Run: runQdrantRestore,
}

func runQdrantRestore(ctx context.Context, env *engine.Env, p *QdrantRestoreParams) (engine.Outputs, error) {
	start := time.Now()
	q, err := p.client(env)
	if err != nil {
		return nil, err
	}
	base := qdrantSnapshotsPath(p.Collection)
	out := engine.Outputs{"collection": p.Collection, "bytes_sent": int64(0)}
	if p.Location != "" {
		body := map[string]string{"location": p.Location, "priority": p.Priority}
		if p.Checksum != "" {
			body["checksum"] = p.Checksum
		}
		if err := q.call(ctx, http.MethodPut, base+"/recover?wait=true", body, nil); err != nil {
			return nil, fmt.Errorf("recover %s from %s: %w", p.Collection, env.Secrets.Redact(p.Location), err)
		}
		out["duration_ms"] = time.Since(start).Milliseconds()
		return out, nil
	}
	// Fail early (and clearly) on a missing file or a wrong key.
	f, err := artifact.Open(p.Input, p.ReadOptions)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	f.Close()

	var sent counter
	boundary := multipart.NewWriter(io.Discard).Boundary()
	body := retryablehttp.ReaderFunc(func() (io.Reader, error) {
		sent.reset()
		return multipartBody(p.Input, p.ReadOptions, boundary, &sent)
	})
	query := url.Values{"wait": {"true"}, "priority": {p.Priority}}
	if p.Checksum != "" {
		query.Set("checksum", p.Checksum)
	}
	req, err := q.request(ctx, http.MethodPost, base+"/upload?"+query.Encode(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	if err := q.do(req, nil); err != nil {
		return nil, fmt.Errorf("upload %s to collection %s: %w", p.Input, p.Collection, err)
	}
	out["bytes_sent"] = sent.get()
	out["duration_ms"] = time.Since(start).Milliseconds()
	return out, nil
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
