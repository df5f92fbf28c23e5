// Package qdrantdouble is a TEST DOUBLE of Qdrant's HTTP API — not Qdrant.
// There is no Qdrant server in the test environment, so the qdrant steps are
// tested against this in-process (or `cmd/qdrant-double`) server, which
// follows the documented API (api.qdrant.tech, openapi.json) exactly — paths,
// methods, request and response shapes, status codes — for the endpoints the
// steps use and the ones tests need to set up data, and answers 404 for
// anything else rather than guessing:
//
//	GET    /                                          VersionInfo {"title","version","commit"} (no envelope)
//	GET    /collections                               {"collections":[{"name":...}]}
//	PUT    /collections/{c}                           create ({"vectors":{"size":n,"distance":"Cosine"}})
//	GET    /collections/{c}                           info (status, points_count, config)
//	DELETE /collections/{c}                           result true (false when it did not exist)
//	PUT    /collections/{c}/points                    upsert {"points":[{"id","vector","payload"}]}
//	POST   /collections/{c}/points/count              CountRequest {"exact":bool (default true)} → {"count":n};
//	                                                  a "filter" is not implemented (400, never a wrong count)
//	POST   /collections/{c}/points/scroll             all points ordered by id
//	POST   /collections/{c}/snapshots?wait=           create (202 {"status":"accepted"} when wait=false)
//	GET    /collections/{c}/snapshots                 list of SnapshotDescription
//	GET    /collections/{c}/snapshots/{name}          download the snapshot file
//	DELETE /collections/{c}/snapshots/{name}
//	POST   /collections/{c}/snapshots/upload?priority=&checksum=   multipart field "snapshot"
//	PUT    /collections/{c}/snapshots/recover         {"location","priority","checksum"}
//	POST|GET /snapshots, GET|DELETE /snapshots/{name} full-storage snapshots
//
// Every JSON answer uses Qdrant's envelope: {"result":..., "status":"ok",
// "time":s}; errors are {"status":{"error":"..."},"time":s} with Qdrant's
// HTTP codes (404 for a missing collection or snapshot, 400 for bad input,
// 401 without the api key). A SnapshotDescription has name, creation_time,
// size and checksum (sha256 of the file), as in Qdrant >= 1.6.
//
// Snapshots are tar archives (like Qdrant's) holding the collection config
// and its points as JSON, plus optional incompressible padding so tests can
// move large bodies. Snapshot creation is asynchronous (SnapshotDelay), and
// faults can be injected (FailNext, TruncateNext) to exercise retries.
package qdrantdouble

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options configure the double.
type Options struct {
	// APIKey, if set, is required in the `api-key` header (or as a Bearer token).
	APIKey string
	// SnapshotDelay is how long creating a snapshot takes.
	SnapshotDelay time.Duration
	// SnapshotPadding adds this many incompressible bytes to each snapshot.
	SnapshotPadding int
	// PeerID appears in collection snapshot names, like Qdrant's.
	PeerID uint64
	// AfterSnapshotCopy, if set, runs after a snapshot has copied the
	// data and before the create request answers (no lock held): tests
	// use it to write to a collection while a snapshot is being made.
	AfterSnapshotCopy func(collection string)
}

// Point is a Qdrant point (numeric ids only in the double).
type Point struct {
	ID      uint64         `json:"id"`
	Vector  []float64      `json:"vector"`
	Payload map[string]any `json:"payload,omitempty"`
}

// VectorParams is a collection's single unnamed vector config.
type VectorParams struct {
	Size     int    `json:"size"`
	Distance string `json:"distance"`
}

// SnapshotDescription is Qdrant's schema of the same name.
type SnapshotDescription struct {
	Name         string `json:"name"`
	CreationTime string `json:"creation_time,omitempty"`
	Size         int64  `json:"size"`
	Checksum     string `json:"checksum,omitempty"`
}

type collection struct {
	vectors VectorParams
	points  map[uint64]Point
}

type snapshot struct {
	desc SnapshotDescription
	data []byte
}

type fault struct {
	method, prefix string
	n, status      int
	truncate       bool
}

// Server is the double; use Handler with httptest.NewServer or http.Serve.
type Server struct {
	opts Options

	mu          sync.Mutex
	collections map[string]*collection
	snapshots   map[string]map[string]*snapshot // collection ("" = full storage) → name → snapshot
	faults      []*fault
	requests    []string
}

// New returns an empty double.
func New(o Options) *Server {
	if o.PeerID == 0 {
		o.PeerID = 4212578532118183
	}
	return &Server{opts: o, collections: map[string]*collection{}, snapshots: map[string]map[string]*snapshot{}}
}

// FailNext makes the next n requests whose method matches (or "" for any)
// and whose path starts with prefix fail with status.
func (s *Server) FailNext(method, prefix string, n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{method: method, prefix: prefix, n: n, status: status})
}

// TruncateNext makes the next n matching snapshot downloads announce the
// full Content-Length but close the connection half-way.
func (s *Server) TruncateNext(prefix string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{method: http.MethodGet, prefix: prefix, n: n, truncate: true})
}

// Requests returns "METHOD /path" for every request served so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// SnapshotNames lists the stored snapshots of a collection ("" = full storage).
func (s *Server) SnapshotNames(coll string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.snapshots[coll] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// CreateCollection adds (or replaces) a collection directly, for test setup.
func (s *Server) CreateCollection(name string, v VectorParams, points []Point) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &collection{vectors: v, points: map[uint64]Point{}}
	for _, p := range points {
		c.points[p.ID] = p
	}
	s.collections[name] = c
}

// AddPoints upserts points into an existing collection, for test setup.
func (s *Server) AddPoints(name string, points []Point) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.collections[name]
	if !ok {
		return false
	}
	for _, p := range points {
		c.points[p.ID] = p
	}
	return true
}

// Points returns a collection's points ordered by id (nil, false if missing).
func (s *Server) Points(name string) ([]Point, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.collections[name]
	if !ok {
		return nil, false
	}
	return c.sorted(), true
}

// DropAll deletes every collection, as a lost server would have none.
func (s *Server) DropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.collections = map[string]*collection{}
}

// LoadStorageSnapshot replaces all collections with a full-storage
// snapshot's content: what `qdrant --storage-snapshot FILE` does at start-up.
func (s *Server) LoadStorageSnapshot(r io.Reader) error {
	colls, err := readSnapshot(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.collections = colls
	return nil
}

func (c *collection) sorted() []Point {
	out := make([]Point, 0, len(c.points))
	for _, p := range c.points {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ---------------------------------------------------------------- HTTP

type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errf(status int, format string, args ...any) error {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

func notFoundColl(name string) error {
	return errf(http.StatusNotFound, "Not found: Collection `%s` doesn't exist!", name)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func reply(w http.ResponseWriter, start time.Time, result any, err error) {
	took := time.Since(start).Seconds()
	if err != nil {
		code := http.StatusInternalServerError
		var ae *apiError
		if errors.As(err, &ae) {
			code = ae.status
		}
		writeJSON(w, code, map[string]any{"status": map[string]string{"error": err.Error()}, "time": took})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": result, "status": "ok", "time": took})
}

func accepted(w http.ResponseWriter, start time.Time) {
	writeJSON(w, http.StatusAccepted, map[string]any{"status": "accepted", "time": time.Since(start).Seconds()})
}

// Version is what GET / reports: a Qdrant version with a suffix that
// says it is the double.
const Version = "1.12.0-test-double"

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serve)
}

func (s *Server) takeFault(r *http.Request) *fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	for i, f := range s.faults {
		if (f.method == "" || f.method == r.Method) && strings.HasPrefix(r.URL.Path, f.prefix) {
			f.n--
			if f.n <= 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
			return f
		}
	}
	return nil
}

func (s *Server) authorized(r *http.Request) bool {
	if s.opts.APIKey == "" {
		return true
	}
	if r.Header.Get("api-key") == s.opts.APIKey {
		return true
	}
	return r.Header.Get("Authorization") == "Bearer "+s.opts.APIKey
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	f := s.takeFault(r)
	if f != nil && !f.truncate {
		reply(w, start, nil, errf(f.status, "Service internal error: injected fault (test double)"))
		return
	}
	if !s.authorized(r) {
		reply(w, start, nil, errf(http.StatusUnauthorized, "Must provide an API key or an Authorization bearer token"))
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	for i, p := range parts {
		if u, err := url.PathUnescape(p); err == nil {
			parts[i] = u
		}
	}
	wait := r.URL.Query().Get("wait") != "false" // Qdrant's default is wait=true
	m := r.Method
	switch {
	case len(parts) == 1 && parts[0] == "" && m == http.MethodGet:
		writeJSON(w, 200, map[string]any{"title": "qdrant - vector search engine", "version": Version, "commit": nil})
	case len(parts) == 1 && parts[0] == "collections" && m == http.MethodGet:
		reply(w, start, s.listCollections(), nil)
	case len(parts) == 2 && parts[0] == "collections":
		s.serveCollection(w, r, start, parts[1])
	case len(parts) == 4 && parts[0] == "collections" && parts[2] == "points":
		s.servePoints(w, r, start, parts[1], parts[3])
	case len(parts) == 3 && parts[0] == "collections" && parts[2] == "points" && m == http.MethodPut:
		s.servePoints(w, r, start, parts[1], "")
	case len(parts) == 3 && parts[0] == "collections" && parts[2] == "snapshots":
		switch m {
		case http.MethodPost:
			s.createSnapshot(w, start, parts[1], wait)
		case http.MethodGet:
			res, err := s.listSnapshots(parts[1])
			reply(w, start, res, err)
		default:
			reply(w, start, nil, errf(http.StatusMethodNotAllowed, "method not allowed"))
		}
	case len(parts) == 4 && parts[0] == "collections" && parts[2] == "snapshots" && parts[3] == "upload" && m == http.MethodPost:
		reply(w, start, true, s.upload(r, parts[1]))
	case len(parts) == 4 && parts[0] == "collections" && parts[2] == "snapshots" && parts[3] == "recover" && m == http.MethodPut:
		reply(w, start, true, s.recoverFrom(r, parts[1]))
	case len(parts) == 4 && parts[0] == "collections" && parts[2] == "snapshots":
		s.serveSnapshotFile(w, r, start, parts[1], parts[3], f)
	case len(parts) == 1 && parts[0] == "snapshots":
		switch m {
		case http.MethodPost:
			s.createSnapshot(w, start, "", wait)
		case http.MethodGet:
			res, err := s.listSnapshots("")
			reply(w, start, res, err)
		default:
			reply(w, start, nil, errf(http.StatusMethodNotAllowed, "method not allowed"))
		}
	case len(parts) == 2 && parts[0] == "snapshots":
		s.serveSnapshotFile(w, r, start, "", parts[1], f)
	default:
		reply(w, start, nil, errf(http.StatusNotFound, "Not found: %s %s (not implemented by the test double)", m, r.URL.Path))
	}
}

func (s *Server) listCollections() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.collections))
	for n := range s.collections {
		names = append(names, n)
	}
	sort.Strings(names)
	list := make([]map[string]string, len(names))
	for i, n := range names {
		list[i] = map[string]string{"name": n}
	}
	return map[string]any{"collections": list}
}

func (s *Server) serveCollection(w http.ResponseWriter, r *http.Request, start time.Time, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.collections[name]
	switch r.Method {
	case http.MethodGet:
		if !ok {
			reply(w, start, nil, notFoundColl(name))
			return
		}
		reply(w, start, map[string]any{
			"status": "green", "optimizer_status": "ok", "points_count": len(c.points),
			"segments_count": 1, "config": map[string]any{"params": map[string]any{"vectors": c.vectors}},
		}, nil)
	case http.MethodPut:
		if ok {
			reply(w, start, nil, errf(http.StatusBadRequest, "Wrong input: Collection `%s` already exists!", name))
			return
		}
		var body struct {
			Vectors VectorParams `json:"vectors"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Vectors.Size <= 0 {
			reply(w, start, nil, errf(http.StatusBadRequest, "Format error in JSON body: vectors.size is required"))
			return
		}
		s.collections[name] = &collection{vectors: body.Vectors, points: map[uint64]Point{}}
		reply(w, start, true, nil)
	case http.MethodDelete:
		delete(s.collections, name)
		reply(w, start, ok, nil)
	default:
		reply(w, start, nil, errf(http.StatusMethodNotAllowed, "method not allowed"))
	}
}

func (s *Server) servePoints(w http.ResponseWriter, r *http.Request, start time.Time, name, op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.collections[name]
	if !ok {
		reply(w, start, nil, notFoundColl(name))
		return
	}
	switch {
	case op == "" && r.Method == http.MethodPut:
		var body struct {
			Points []Point `json:"points"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			reply(w, start, nil, errf(http.StatusBadRequest, "Format error in JSON body: %v", err))
			return
		}
		for _, p := range body.Points {
			if len(p.Vector) != c.vectors.Size {
				reply(w, start, nil, errf(http.StatusBadRequest, "Wrong input: Vector dimension error: expected dim: %d, got %d", c.vectors.Size, len(p.Vector)))
				return
			}
			c.points[p.ID] = p
		}
		reply(w, start, map[string]any{"operation_id": len(c.points), "status": "completed"}, nil)
	case op == "count" && r.Method == http.MethodPost:
		var body struct {
			Exact  *bool           `json:"exact"`
			Filter json.RawMessage `json:"filter"`
		}
		if r.ContentLength != 0 {
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil && err != io.EOF {
				reply(w, start, nil, errf(http.StatusBadRequest, "Format error in JSON body: %v", err))
				return
			}
		}
		if len(body.Filter) > 0 && string(body.Filter) != "null" {
			reply(w, start, nil, errf(http.StatusBadRequest, "Bad request: count with a filter is not implemented by the test double"))
			return
		}
		// Exact or not, the double's count is exact (an approximate count
		// may equal the exact one).
		reply(w, start, map[string]int{"count": len(c.points)}, nil)
	case op == "scroll" && r.Method == http.MethodPost:
		reply(w, start, map[string]any{"points": c.sorted(), "next_page_offset": nil}, nil)
	default:
		reply(w, start, nil, errf(http.StatusNotFound, "Not found: %s %s (not implemented by the test double)", r.Method, r.URL.Path))
	}
}

func (s *Server) createSnapshot(w http.ResponseWriter, start time.Time, coll string, wait bool) {
	s.mu.Lock()
	var colls map[string]*collection
	if coll == "" {
		colls = make(map[string]*collection, len(s.collections))
		for n, c := range s.collections {
			colls[n] = c.clone()
		}
	} else {
		c, ok := s.collections[coll]
		if !ok {
			s.mu.Unlock()
			reply(w, start, nil, notFoundColl(coll))
			return
		}
		colls = map[string]*collection{coll: c.clone()}
	}
	s.mu.Unlock()
	if s.opts.AfterSnapshotCopy != nil {
		s.opts.AfterSnapshotCopy(coll)
	}

	done := make(chan *snapshot, 1)
	go func() { // creation runs in the background, like Qdrant's task
		time.Sleep(s.opts.SnapshotDelay)
		now := time.Now().UTC()
		name := "full-snapshot-" + now.Format("2006-01-02-15-04-05") + ".snapshot"
		if coll != "" {
			name = fmt.Sprintf("%s-%d-%s.snapshot", coll, s.opts.PeerID, now.Format("2006-01-02-15-04-05"))
		}
		data := writeSnapshot(colls, s.opts.SnapshotPadding)
		sum := sha256.Sum256(data)
		snap := &snapshot{data: data, desc: SnapshotDescription{
			Name: name, CreationTime: now.Format("2006-01-02T15:04:05"),
			Size: int64(len(data)), Checksum: hex.EncodeToString(sum[:]),
		}}
		s.mu.Lock()
		if s.snapshots[coll] == nil {
			s.snapshots[coll] = map[string]*snapshot{}
		}
		s.snapshots[coll][name] = snap
		s.mu.Unlock()
		done <- snap
	}()
	if !wait {
		accepted(w, start)
		return
	}
	snap := <-done
	reply(w, start, snap.desc, nil)
}

func (s *Server) listSnapshots(coll string) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.collections[coll]; coll != "" && !ok {
		return nil, notFoundColl(coll)
	}
	out := []SnapshotDescription{}
	for _, sn := range s.snapshots[coll] {
		out = append(out, sn.desc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *Server) serveSnapshotFile(w http.ResponseWriter, r *http.Request, start time.Time, coll, name string, f *fault) {
	s.mu.Lock()
	snap := s.snapshots[coll][name]
	_, collOK := s.collections[coll]
	if snap == nil || r.Method == http.MethodDelete {
		delete(s.snapshots[coll], name)
	}
	s.mu.Unlock()
	if coll != "" && !collOK && snap == nil {
		reply(w, start, nil, notFoundColl(coll))
		return
	}
	if snap == nil {
		reply(w, start, nil, errf(http.StatusNotFound, "Not found: Snapshot %s not found", name))
		return
	}
	switch r.Method {
	case http.MethodDelete:
		reply(w, start, true, nil)
	case http.MethodGet:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(snap.data)))
		w.WriteHeader(http.StatusOK)
		if f != nil && f.truncate {
			_, _ = w.Write(snap.data[:len(snap.data)/2])
			panic(http.ErrAbortHandler) // drop the connection mid-body
		}
		_, _ = w.Write(snap.data)
	default:
		reply(w, start, nil, errf(http.StatusMethodNotAllowed, "method not allowed"))
	}
}

// upload recovers a collection from a multipart "snapshot" field.
func (s *Server) upload(r *http.Request, coll string) error {
	if err := checkPriority(r.URL.Query().Get("priority")); err != nil {
		return err
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return errf(http.StatusBadRequest, "Bad request: expected multipart/form-data: %v", err)
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return errf(http.StatusBadRequest, "Bad request: missing multipart field \"snapshot\"")
		}
		if err != nil {
			return errf(http.StatusBadRequest, "Bad request: %v", err)
		}
		if part.FormName() != "snapshot" {
			continue
		}
		data, err := io.ReadAll(part)
		if err != nil {
			return errf(http.StatusBadRequest, "Bad request: reading upload: %v", err)
		}
		return s.recoverData(coll, data, r.URL.Query().Get("checksum"))
	}
}

func (s *Server) recoverFrom(r *http.Request, coll string) error {
	var body struct {
		Location string `json:"location"`
		Priority string `json:"priority"`
		Checksum string `json:"checksum"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Location == "" {
		return errf(http.StatusBadRequest, "Format error in JSON body: location is required")
	}
	if err := checkPriority(body.Priority); err != nil {
		return err
	}
	u, err := url.Parse(body.Location)
	if err != nil {
		return errf(http.StatusBadRequest, "Bad request: invalid location: %v", err)
	}
	var data []byte
	switch u.Scheme {
	case "file":
		data, err = os.ReadFile(u.Path)
		if err != nil {
			return errf(http.StatusNotFound, "Not found: Snapshot file %s does not exist", u.Path)
		}
	case "http", "https":
		resp, err := http.Get(body.Location)
		if err != nil {
			return errf(http.StatusInternalServerError, "Service internal error: download failed: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errf(http.StatusBadRequest, "Bad request: download of %s failed: HTTP %d", body.Location, resp.StatusCode)
		}
		if data, err = io.ReadAll(resp.Body); err != nil {
			return errf(http.StatusInternalServerError, "Service internal error: download failed: %v", err)
		}
	default:
		return errf(http.StatusBadRequest, "Bad request: unsupported location scheme %q", u.Scheme)
	}
	return s.recoverData(coll, data, body.Checksum)
}

func checkPriority(p string) error {
	switch p {
	case "", "replica", "snapshot", "no_sync":
		return nil
	}
	return errf(http.StatusBadRequest, "Bad request: unknown variant `%s`, expected one of `no_sync`, `snapshot`, `replica`", p)
}

func (s *Server) recoverData(coll string, data []byte, checksum string) error {
	if checksum != "" {
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != strings.ToLower(checksum) {
			return errf(http.StatusBadRequest, "Bad request: Snapshot checksum mismatch: expected %s, got %s", checksum, got)
		}
	}
	colls, err := readSnapshot(bytes.NewReader(data))
	if err != nil {
		return errf(http.StatusBadRequest, "Bad request: invalid snapshot: %v", err)
	}
	if len(colls) != 1 {
		return errf(http.StatusBadRequest, "Bad request: not a collection snapshot (%d collections)", len(colls))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range colls {
		s.collections[coll] = c
	}
	return nil
}

// ---------------------------------------------------------------- snapshot files

func (c *collection) clone() *collection {
	n := &collection{vectors: c.vectors, points: make(map[uint64]Point, len(c.points))}
	for k, v := range c.points {
		n.points[k] = v
	}
	return n
}

type snapshotConfig struct {
	Vectors VectorParams `json:"vectors"`
}

// writeSnapshot renders collections as a tar: <name>/config.json,
// <name>/points.json and an optional padding file.
func writeSnapshot(colls map[string]*collection, padding int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(colls))
	for n := range colls {
		names = append(names, n)
	}
	sort.Strings(names)
	add := func(name string, data []byte) {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0)})
		_, _ = tw.Write(data)
	}
	for _, n := range names {
		cfg, _ := json.Marshal(snapshotConfig{Vectors: colls[n].vectors})
		pts, _ := json.Marshal(colls[n].sorted())
		add(n+"/config.json", cfg)
		add(n+"/points.json", pts)
	}
	if padding > 0 {
		pad := make([]byte, padding)
		rand.New(rand.NewSource(time.Now().UnixNano())).Read(pad)
		add("padding.bin", pad)
	}
	_ = tw.Close()
	return buf.Bytes()
}

func readSnapshot(r io.Reader) (map[string]*collection, error) {
	tr := tar.NewReader(r)
	out := map[string]*collection{}
	get := func(n string) *collection {
		if out[n] == nil {
			out[n] = &collection{points: map[uint64]Point{}}
		}
		return out[n]
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		dir, file, ok := strings.Cut(h.Name, "/")
		if !ok {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		switch file {
		case "config.json":
			var cfg snapshotConfig
			if err := json.Unmarshal(data, &cfg); err != nil {
				return nil, fmt.Errorf("%s: %w", h.Name, err)
			}
			get(dir).vectors = cfg.Vectors
		case "points.json":
			var pts []Point
			if err := json.Unmarshal(data, &pts); err != nil {
				return nil, fmt.Errorf("%s: %w", h.Name, err)
			}
			c := get(dir)
			for _, p := range pts {
				c.points[p.ID] = p
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no collection in snapshot")
	}
	return out, nil
}
