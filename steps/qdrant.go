package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/httpx"
)

// QdrantConn is the connection part shared by the qdrant steps.
type QdrantConn struct {
	URL       string          `yaml:"url" required:"true" doc:"Qdrant HTTP API base URL, e.g. http://localhost:6333"`
	APIKey    string          `yaml:"api_key" secret:"true" doc:"API key sent in the api-key header; prefer api_key_env"`
	APIKeyEnv string          `yaml:"api_key_env" doc:"name of the environment variable holding the API key (e.g. QDRANT_API_KEY)"`
	Timeout   engine.Duration `yaml:"timeout" default:"30m" doc:"how long one request may wait for response headers (snapshot creation answers only when done)"`
	Retries   int             `yaml:"retries" default:"3" doc:"retries on connection errors and 5xx (never on 4xx)"`
}

type qdrantClient struct {
	base string
	key  string
	http *retryablehttp.Client
	// createHTTP retries snapshot creation only on error answers.
	createHTTP *retryablehttp.Client
	env        *engine.Env
	header     http.Header
}

func (c *QdrantConn) client(env *engine.Env) (*qdrantClient, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url: %q is not an http(s) URL", c.URL)
	}
	key := c.APIKey
	if c.APIKeyEnv != "" {
		v, ok := engine.LookupEnv(env.Environ, c.APIKeyEnv)
		if !ok || v == "" {
			return nil, fmt.Errorf("api_key_env: %s is not set", c.APIKeyEnv)
		}
		key = v
	}
	if key != "" {
		env.Secrets.Add(key)
	}
	opts := httpx.Options{Retries: c.Retries, HeaderTimeout: time.Duration(c.Timeout), Log: env.Log}
	createHTTP := httpx.New(opts)
	createHTTP.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if err != nil {
			return false, err // no answer: the snapshot may exist, never create a second
		}
		return retryablehttp.DefaultRetryPolicy(ctx, resp, nil)
	}
	return &qdrantClient{
		base: strings.TrimRight(c.URL, "/"), key: key, env: env,
		http: httpx.New(opts), createHTTP: createHTTP,
	}, nil
}

// qdrantEnvelope is Qdrant's response wrapper: {"result", "status", "time"};
// errors carry {"status": {"error": "..."}}.
type qdrantEnvelope struct {
	Result json.RawMessage `json:"result"`
	Status json.RawMessage `json:"status"`
	Time   float64         `json:"time"`
}

type qdrantSnapshot struct {
	Name         string `json:"name"`
	CreationTime string `json:"creation_time"`
	Size         int64  `json:"size"`
	Checksum     string `json:"checksum"`
}

func (q *qdrantClient) request(ctx context.Context, method, path string, body any) (*retryablehttp.Request, error) {
	req, err := retryablehttp.NewRequestWithContext(ctx, method, q.base+path, body)
	if err != nil {
		return nil, err
	}
	if q.key != "" {
		req.Header.Set("api-key", q.key)
	}
	return req, nil
}

// call does a JSON request and decodes the envelope's result into out.
func (q *qdrantClient) call(ctx context.Context, method, path string, in, out any) error {
	var body any
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	req, err := q.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return q.do(req, out)
}

func (q *qdrantClient) do(req *retryablehttp.Request, out any) error {
	resp, err := q.http.Do(req)
	if err != nil {
		return fmt.Errorf("qdrant %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("qdrant %s %s: %w", req.Method, req.URL.Path, err)
	}
	var env qdrantEnvelope
	jerr := json.Unmarshal(raw, &env)
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(raw))
		var st struct {
			Error string `json:"error"`
		}
		if jerr == nil && json.Unmarshal(env.Status, &st) == nil && st.Error != "" {
			msg = st.Error
		}
		if len(msg) > 2048 {
			msg = msg[:2048]
		}
		return fmt.Errorf("qdrant %s %s: HTTP %d: %s", req.Method, req.URL.Path, resp.StatusCode, q.env.Secrets.Redact(msg))
	}
	if jerr != nil {
		return fmt.Errorf("qdrant %s %s: response is not JSON: %w", req.Method, req.URL.Path, jerr)
	}
	if out != nil {
		if err := json.Unmarshal(env.Result, out); err != nil {
			return fmt.Errorf("qdrant %s %s: unexpected result: %w", req.Method, req.URL.Path, err)
		}
	}
	return nil
}

// version returns the server's version from GET / (which, unlike the
// other endpoints, answers without the result envelope).
func (q *qdrantClient) version(ctx context.Context) (string, error) {
	req, err := q.request(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return "", err
	}
	resp, err := q.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("qdrant GET /: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("qdrant GET /: %w", httpx.NewStatusError(resp, q.base+"/"))
	}
	var v struct {
		Version string `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v); err != nil {
		return "", fmt.Errorf("qdrant GET /: %w", err)
	}
	return v.Version, nil
}

// countPoints is the exact number of points in a collection (POST
// /collections/{name}/points/count {"exact": true}). Qdrant documents the
// points_count of GET /collections/{name} as approximate, so it is not used.
func (q *qdrantClient) countPoints(ctx context.Context, collection string) (int64, error) {
	var res struct {
		Count *int64 `json:"count"`
	}
	path := "/collections/" + url.PathEscape(collection) + "/points/count"
	if err := q.call(ctx, http.MethodPost, path, map[string]bool{"exact": true}, &res); err != nil {
		return 0, fmt.Errorf("count points of %s: %w", collection, err)
	}
	if res.Count == nil {
		return 0, fmt.Errorf("count points of %s: answer has no count", collection)
	}
	return *res.Count, nil
}

// listCollections returns the collection names the server lists.
func (q *qdrantClient) listCollections(ctx context.Context) ([]string, error) {
	var list struct {
		Collections []struct {
			Name string `json:"name"`
		} `json:"collections"`
	}
	if err := q.call(ctx, http.MethodGet, "/collections", nil, &list); err != nil {
		return nil, err
	}
	names := make([]string, len(list.Collections))
	for i, c := range list.Collections {
		names[i] = c.Name
	}
	return names, nil
}

// pointsKey is the manifest's count key for a collection's points.
func pointsKey(collection string) string { return "points:" + collection }

// source describes the server for a manifest: the URL without userinfo and
// the name (never the value) of the API key's variable.
func (c *QdrantConn) source() map[string]string {
	src := map[string]string{"kind": "qdrant", "url": urlWithoutUserinfo(c.URL)}
	if c.APIKeyEnv != "" {
		src["api_key_env"] = c.APIKeyEnv
	}
	return src
}

func qdrantSnapshotsPath(collection string) string {
	if collection == "" {
		return "/snapshots"
	}
	return "/collections/" + url.PathEscape(collection) + "/snapshots"
}

// QdrantSnapshotParams are the params of qdrant-snapshot.
type QdrantSnapshotParams struct {
	QdrantConn            `yaml:",inline"`
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
			path := qdrantSnapshotsPath(c)
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
	q, err := p.client(env)
	if err != nil {
		return nil, err
	}
	// The version is informative: a server that hides it (a proxy in
	// front) does not fail the backup.
	ver, err := q.version(ctx)
	if err != nil {
		env.Log.Warn("qdrant server version unknown", "error", err.Error())
	}
	targets := p.Collections
	if p.AllCollections {
		if targets, err = q.listCollections(ctx); err != nil {
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
		res, snap, err := q.snapshotOne(ctx, p, coll)
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
func (q *qdrantClient) snapshotOne(ctx context.Context, p *QdrantSnapshotParams, coll string) (artifact.Result, string, error) {
	what := "full storage"
	if coll != "" {
		what = "collection " + coll
	}
	base := qdrantSnapshotsPath(coll)
	// Qdrant gives no count consistent with a snapshot: the exact count
	// is taken just before and right after creation. When they differ the
	// collection was written to meanwhile, and a drill may see a different
	// number than recorded (the later one).
	var before map[string]int64
	if coll != "" {
		n, err := q.countPoints(ctx, coll)
		if err != nil {
			return artifact.Result{}, "", fmt.Errorf("snapshot of %s: %w", what, err)
		}
		before = map[string]int64{pointsKey(coll): n}
	}
	var desc qdrantSnapshot
	// Creation is retried only on an error answer: after a timeout or a
	// dropped connection the server may have made the snapshot, and a
	// retry would leave a second one filling its disk.
	create := *q
	create.http = q.createHTTP
	if err := create.call(ctx, http.MethodPost, base+"?wait=true", nil, &desc); err != nil {
		return artifact.Result{}, "", fmt.Errorf("snapshot of %s: %w", what, err)
	}
	if desc.Name == "" {
		return artifact.Result{}, "", fmt.Errorf("snapshot of %s: server returned no snapshot name", what)
	}
	q.env.Log.Info("qdrant snapshot created", "of", what, "name", desc.Name, "size", desc.Size)
	filePath := base + "/" + url.PathEscape(desc.Name)
	counts, err := q.countsAfter(ctx, coll)
	if err != nil {
		if p.DeleteAfter { // nothing was downloaded: do not leave it filling the server's disk
			if derr := q.call(ctx, http.MethodDelete, filePath+"?wait=true", nil, nil); derr != nil {
				q.env.Log.Warn("deleting the server-side snapshot failed", "name", desc.Name, "error", derr.Error())
			}
		}
		return artifact.Result{}, desc.Name, fmt.Errorf("snapshot %s of %s: %w", desc.Name, what, err)
	}
	changed := ""
	for k, n := range before {
		if counts[k] != n {
			changed = fmt.Sprintf("%d before the snapshot, %d after", n, counts[k])
			q.env.Log.Warn("qdrant collection changed while the snapshot was made; the recorded count may differ from the snapshot's",
				"collection", coll, "points_before", n, "points_after", counts[k])
		}
	}

	var res artifact.Result
	for attempt := 0; ; attempt++ {
		res, err = q.download(ctx, filePath, desc, p.outputFor(coll))
		if err == nil || ctx.Err() != nil || attempt >= p.Retries || !retryableDownload(err) {
			break
		}
		q.env.Log.Warn("qdrant snapshot download failed, retrying", "name", desc.Name, "error", err)
	}
	if err != nil {
		// Keep the server-side snapshot: it may be fetched by hand.
		return artifact.Result{}, desc.Name, fmt.Errorf("snapshot %s of %s: %w", desc.Name, what, err)
	}
	src := p.QdrantConn.source()
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
		if err := q.call(ctx, http.MethodDelete, filePath+"?wait=true", nil, nil); err != nil {
			return artifact.Result{}, desc.Name, fmt.Errorf("artifact %s written, but deleting the server-side snapshot failed: %w", res.Path, err)
		}
	}
	return res, desc.Name, nil
}

// countsAfter counts the points of the snapshotted collection, or of every
// collection for a full-storage snapshot.
func (q *qdrantClient) countsAfter(ctx context.Context, coll string) (map[string]int64, error) {
	colls := []string{coll}
	if coll == "" {
		var err error
		if colls, err = q.listCollections(ctx); err != nil {
			return nil, err
		}
	}
	counts := make(map[string]int64, len(colls))
	for _, c := range colls {
		n, err := q.countPoints(ctx, c)
		if err != nil {
			return nil, err
		}
		counts[pointsKey(c)] = n
	}
	return counts, nil
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
	if t.IdentityFile != "" {
		with["identity_file"] = t.IdentityFile
	}
	if t.PassphraseFile != "" {
		with["passphrase_file"] = t.PassphraseFile
	}
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

func (q *qdrantClient) download(ctx context.Context, path string, desc qdrantSnapshot, opts artifact.WriteOptions) (artifact.Result, error) {
	req, err := q.request(ctx, http.MethodGet, path, nil)
	if err != nil {
		return artifact.Result{}, err
	}
	resp, err := q.http.Do(req)
	if err != nil {
		return artifact.Result{}, fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return artifact.Result{}, fmt.Errorf("download: %w", httpx.NewStatusError(resp, q.base+path))
	}
	w, err := artifact.Create(ctx, q.env, opts)
	if err != nil {
		return artifact.Result{}, err
	}
	defer w.Abort()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), progressReader(resp.Body, q.env))
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

// progressReader reports bytes read to env.Progress (if any).
func progressReader(r io.Reader, env *engine.Env) io.Reader {
	if env == nil || env.Progress == nil {
		return r
	}
	return &progressR{r: r, fn: env.Progress}
}

type progressR struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (p *progressR) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if n > 0 {
		p.fn(p.n)
	}
	return n, err
}
