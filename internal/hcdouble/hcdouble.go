// Package hcdouble is a TEST DOUBLE of the Healthchecks.io Pinging API
// (https://healthchecks.io/docs/http_api/): it accepts HEAD/GET/POST on
// /<uuid>[/start|/fail|/log|/<exit-status>] (and the slug form
// /<ping-key>/<slug>[/...]), validates the rid query parameter and the
// exit status like the real service, answers "OK" with a Ping-Body-Limit
// header, and records every ping for tests to inspect. It is not a
// Healthchecks implementation: no checks, no alerting.
package hcdouble

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultBodyLimit is Healthchecks.io's stored body limit (100 kB).
const DefaultBodyLimit = 100_000

// Ping is one request the double received.
type Ping struct {
	Method   string    `json:"method"`
	Path     string    `json:"path"`      // full request path
	Check    string    `json:"check"`     // uuid, or "<ping-key>/<slug>"
	Signal   string    `json:"signal"`    // success, start, fail, log or exit
	ExitCode *int      `json:"exit_code"` // set when Signal is "exit"
	RID      string    `json:"rid"`
	Body     string    `json:"body"`
	BodySize int       `json:"body_size"` // bytes received (Body is the whole body)
	Status   int       `json:"status"`    // what the double answered
	Time     time.Time `json:"time"`
}

// Handler is an http.Handler recording pings. Its zero value is not
// usable: call New.
type Handler struct {
	mu        sync.Mutex
	pings     []Ping
	statuses  []int // scripted answers, consumed one per ping
	bodyLimit int
}

// New returns an empty handler answering 200 OK to valid pings.
func New() *Handler { return &Handler{bodyLimit: DefaultBodyLimit} }

// Script makes the next pings get these status codes, in order (e.g.
// 503, 503 then the default 200). Scripted pings are recorded too.
func (h *Handler) Script(statuses ...int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.statuses = append(h.statuses, statuses...)
}

// SetBodyLimit sets the Ping-Body-Limit the double advertises.
func (h *Handler) SetBodyLimit(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bodyLimit = n
}

// Pings returns a copy of what was received so far, oldest first.
func (h *Handler) Pings() []Ping {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Ping(nil), h.pings...)
}

// Reset forgets recorded pings and scripted answers.
func (h *Handler) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pings, h.statuses = nil, nil
}

// uuidRe is the canonical textual UUID form the service requires for rid.
var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Admin paths of the double itself (never valid check identifiers).
const (
	PingsPath = "/_hcdouble/pings"
	ResetPath = "/_hcdouble/reset"
)

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PingsPath:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h.Pings())
		return
	case ResetPath:
		h.Reset()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	switch r.Method {
	case http.MethodHead, http.MethodGet, http.MethodPost:
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, _ := io.ReadAll(r.Body)
	p := Ping{
		Method: r.Method, Path: r.URL.Path, RID: r.URL.Query().Get("rid"),
		Body: string(body), BodySize: len(body), Time: time.Now().UTC(),
	}
	status, msg := parsePath(&p)
	if status == http.StatusOK && p.RID != "" && !uuidRe.MatchString(p.RID) {
		status, msg = http.StatusBadRequest, "invalid uuid format"
	}

	h.mu.Lock()
	if status == http.StatusOK && len(h.statuses) > 0 {
		status, msg = h.statuses[0], http.StatusText(h.statuses[0])
		h.statuses = h.statuses[1:]
	}
	p.Status = status
	h.pings = append(h.pings, p)
	limit := h.bodyLimit
	h.mu.Unlock()

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Ping-Body-Limit", strconv.Itoa(limit))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

// parsePath fills Check, Signal and ExitCode from the path and returns the
// status the service would answer for its shape.
func parsePath(p *Ping) (int, string) {
	parts := strings.Split(strings.Trim(p.Path, "/"), "/")
	if parts[0] == "" {
		return http.StatusNotFound, "not found"
	}
	// The check is a UUID (one segment) or a ping key plus slug (two).
	n := 1
	if !uuidRe.MatchString(parts[0]) {
		n = 2
	}
	if len(parts) < n || len(parts) > n+1 {
		return http.StatusNotFound, "not found"
	}
	p.Check = strings.Join(parts[:n], "/")
	p.Signal = "success"
	if len(parts) == n {
		return http.StatusOK, "OK"
	}
	switch s := parts[n]; s {
	case "start", "fail", "log":
		p.Signal = s
	default:
		code, err := strconv.Atoi(s)
		if err != nil || code < 0 || code > 255 || strconv.Itoa(code) != s {
			p.Signal = ""
			return http.StatusBadRequest, "invalid url format"
		}
		p.Signal, p.ExitCode = "exit", &code
	}
	return http.StatusOK, "OK"
}
