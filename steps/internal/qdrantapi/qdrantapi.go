// Package qdrantapi is the client of Qdrant's HTTP API the qdrant steps
// use: the connection params they share, snapshots (create, download,
// delete, upload, recover), exact point counts and collections.
package qdrantapi

import (
	"context"
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
	"github.com/planrun/planrun/steps/internal/httpx"
)

// Conn is embedded (inline) in the params of the qdrant steps.
type Conn struct {
	URL       string          `yaml:"url" required:"true" doc:"Qdrant HTTP API base URL, e.g. http://localhost:6333"`
	APIKey    string          `yaml:"api_key" secret:"true" doc:"API key sent in the api-key header; prefer api_key_env"`
	APIKeyEnv string          `yaml:"api_key_env" doc:"name of the environment variable holding the API key (e.g. QDRANT_API_KEY)"`
	Timeout   engine.Duration `yaml:"timeout" default:"30m" doc:"how long one request may wait for response headers (snapshot creation answers only when done)"`
	Retries   int             `yaml:"retries" default:"3" doc:"retries on connection errors and 5xx (never on 4xx)"`
}

// Client talks to one Qdrant server through its HTTP API, retrying
// connection errors and 5xx.
type Client struct {
	base string
	key  string
	http *retryablehttp.Client
	// createHTTP retries snapshot creation only on error answers.
	createHTTP *retryablehttp.Client
	env        *engine.Env
	header     http.Header
}

// Client resolves the API key (registering it as a secret) and builds a client.
func (c *Conn) Client(env *engine.Env) (*Client, error) {
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
	return &Client{
		base: strings.TrimRight(c.URL, "/"), key: key, env: env,
		http: httpx.New(opts), createHTTP: createHTTP,
	}, nil
}

// envelope is Qdrant's response wrapper: {"result", "status", "time"};
// errors carry {"status": {"error": "..."}}.
type envelope struct {
	Result json.RawMessage `json:"result"`
	Status json.RawMessage `json:"status"`
	Time   float64         `json:"time"`
}

// Snapshot is a snapshot's description as the server returns it.
type Snapshot struct {
	Name         string `json:"name"`
	CreationTime string `json:"creation_time"`
	Size         int64  `json:"size"`
	Checksum     string `json:"checksum"`
}

func (q *Client) request(ctx context.Context, method, path string, body any) (*retryablehttp.Request, error) {
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
func (q *Client) call(ctx context.Context, method, path string, in, out any) error {
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

func (q *Client) do(req *retryablehttp.Request, out any) error {
	return q.doWith(q.http, req, out)
}

func (q *Client) doWith(hc *retryablehttp.Client, req *retryablehttp.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("qdrant %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("qdrant %s %s: %w", req.Method, req.URL.Path, err)
	}
	var env envelope
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

// Version returns the server's version from GET / (which, unlike the
// other endpoints, answers without the result envelope).
func (q *Client) Version(ctx context.Context) (string, error) {
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

// CountPoints is the exact number of points in a collection (POST
// /collections/{name}/points/count {"exact": true}). Qdrant documents the
// points_count of GET /collections/{name} as approximate, so it is not used.
func (q *Client) CountPoints(ctx context.Context, collection string) (int64, error) {
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

// ListCollections returns the collection names the server lists.
func (q *Client) ListCollections(ctx context.Context) ([]string, error) {
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

// PointsKey is the manifest's count key for a collection's points.
func PointsKey(collection string) string { return "points:" + collection }

// Source describes the server for a manifest: the URL without userinfo and
// the name (never the value) of the API key's variable.
func (c *Conn) Source() map[string]string {
	src := map[string]string{"kind": "qdrant", "url": httpx.WithoutUserinfo(c.URL)}
	if c.APIKeyEnv != "" {
		src["api_key_env"] = c.APIKeyEnv
	}
	return src
}

// SnapshotsPath is the API path of a collection's snapshots ("": the
// full-storage snapshots).
func SnapshotsPath(collection string) string {
	if collection == "" {
		return "/snapshots"
	}
	return "/collections/" + url.PathEscape(collection) + "/snapshots"
}

// Counts counts the points of the snapshotted collection, or of every
// collection for a full-storage snapshot.
func (q *Client) Counts(ctx context.Context, coll string) (map[string]int64, error) {
	colls := []string{coll}
	if coll == "" {
		var err error
		if colls, err = q.ListCollections(ctx); err != nil {
			return nil, err
		}
	}
	counts := make(map[string]int64, len(colls))
	for _, c := range colls {
		n, err := q.CountPoints(ctx, c)
		if err != nil {
			return nil, err
		}
		counts[PointsKey(c)] = n
	}
	return counts, nil
}

// DeleteCollection deletes a collection; one that is not there (a restore
// that failed before creating it) is not an error.
func (q *Client) DeleteCollection(ctx context.Context, name string) error {
	path := "/collections/" + url.PathEscape(name)
	req, err := q.request(ctx, http.MethodDelete, path, nil)
	if err != nil {
		return err
	}
	resp, err := q.http.Do(req)
	if err != nil {
		return fmt.Errorf("qdrant DELETE %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound {
		return nil
	}
	return fmt.Errorf("qdrant DELETE %s: %w", path, httpx.NewStatusError(resp, q.base+path))
}

// CollectionExists asks GET /collections/{name}: 200 exists, 404 does not.
func (q *Client) CollectionExists(ctx context.Context, name string) (bool, error) {
	req, err := q.request(ctx, http.MethodGet, "/collections/"+url.PathEscape(name), nil)
	if err != nil {
		return false, err
	}
	resp, err := q.http.Do(req)
	if err != nil {
		return false, fmt.Errorf("qdrant GET /collections/%s: %w", name, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("qdrant GET /collections/%s: %w", name, httpx.NewStatusError(resp, q.base+"/collections/"+name))
}

// CreateSnapshot makes a snapshot of collection ("": full storage) and
// waits for it. It is retried only on an error answer: after a timeout or
// a dropped connection the server may have made the snapshot, and a retry
// would leave a second one filling its disk.
func (q *Client) CreateSnapshot(ctx context.Context, collection string) (Snapshot, error) {
	var desc Snapshot
	req, err := q.request(ctx, http.MethodPost, SnapshotsPath(collection)+"?wait=true", nil)
	if err != nil {
		return desc, err
	}
	if err := q.doWith(q.createHTTP, req, &desc); err != nil {
		return desc, err
	}
	if desc.Name == "" {
		return desc, errors.New("server returned no snapshot name")
	}
	return desc, nil
}

func snapshotPath(collection, name string) string {
	return SnapshotsPath(collection) + "/" + url.PathEscape(name)
}

// DeleteSnapshot deletes a server-side snapshot.
func (q *Client) DeleteSnapshot(ctx context.Context, collection, name string) error {
	return q.call(ctx, http.MethodDelete, snapshotPath(collection, name)+"?wait=true", nil, nil)
}

// DownloadSnapshot starts the download of a snapshot: the caller reads and
// closes the body.
func (q *Client) DownloadSnapshot(ctx context.Context, collection, name string) (io.ReadCloser, error) {
	path := snapshotPath(collection, name)
	req, err := q.request(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := q.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("download: %w", httpx.NewStatusError(resp, q.base+path))
	}
	return resp.Body, nil
}

// Recover asks the server to fetch a snapshot into collection itself
// (PUT .../snapshots/recover): body holds location, priority, checksum.
func (q *Client) Recover(ctx context.Context, collection string, body map[string]string) error {
	return q.call(ctx, http.MethodPut, SnapshotsPath(collection)+"/recover?wait=true", body, nil)
}

// Upload sends a snapshot into collection as a multipart form (body, with
// contentType naming its boundary); each retry calls body again.
func (q *Client) Upload(ctx context.Context, collection string, query url.Values, body retryablehttp.ReaderFunc, contentType string) error {
	req, err := q.request(ctx, http.MethodPost, SnapshotsPath(collection)+"/upload?"+query.Encode(), body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	return q.do(req, nil)
}
