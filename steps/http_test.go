package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/internal/artifact"
)

func TestHTTPGetRetries5xxThenSavesEncrypted(t *testing.T) {
	var calls atomic.Int32
	body := `{"queues":[{"name":"jobs"}],"pad":"` + strings.Repeat("x", 1<<20) + `"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		if u, p, _ := r.BasicAuth(); u != "admin" || p != "pa55-word" || r.Header.Get("X-Token") != "tok-123456" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	defer srv.Close()
	idFile, recip := dbAgeKeys(t)
	out := filepath.Join(t.TempDir(), "defs.json.zst.age")
	env := dbEnv(t, "RMQ_PW=pa55-word", "TOKEN_ENV=tok-123456")
	res, err := dbRun(t, HTTPGet, env, fmt.Sprintf(`url: %s/api/definitions
basic_auth: {user: admin, password_env: RMQ_PW}
headers_from_env: {X-Token: TOKEN_ENV}
expect_json: true
expect_body_contains: '"name":"jobs"'
retries: 3
save: {output: %s, encrypt: {recipients: [%s]}}`, srv.URL, out, recip))
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 || res["status"] != 200 || res["path"] != out {
		t.Errorf("calls=%d outputs=%v", calls.Load(), res)
	}
	assertCountedOnce(t, env, res)
	if got := string(dbReadArtifact(t, out, idFile)); got != body {
		t.Errorf("artifact content differs (%d bytes, want %d)", len(got), len(body))
	}
}

func TestHTTPGet4xxNotRetriedNoArtifact(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, `{"error":"not_authorized","reason":"token tok-secret-999 invalid"}`, http.StatusUnauthorized)
	}))
	defer srv.Close()
	dir := t.TempDir()
	_, err := dbRun(t, HTTPGet, dbEnv(t), fmt.Sprintf("url: %s/x\nsecret_headers: {Authorization: tok-secret-999}\nsave: {output: %s/x.zst}", srv.URL, dir))
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "tok-secret-999") {
		t.Errorf("secret header value in error: %v", err)
	}
	if calls.Load() != 1 {
		t.Errorf("%d calls for a 401, want 1", calls.Load())
	}
	dbNoArtifact(t, dir)
}

func TestHTTPGetChecksFailDiscardArtifact(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ok": true} trailing`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	_, err := dbRun(t, HTTPGet, dbEnv(t), fmt.Sprintf("url: %s\nexpect_json: true\nsave: {output: %s/x.json.zst}", srv.URL, dir))
	if err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Fatalf("err = %v", err)
	}
	dbNoArtifact(t, dir)

	// Health check without save: status, body and contains checks.
	res, err := dbRun(t, HTTPGet, dbEnv(t), fmt.Sprintf("url: %s\nexpect_status: 200\nexpect_body_contains: '\"ok\": true'", srv.URL))
	if err != nil || res["body"] != `{"ok": true} trailing` {
		t.Fatalf("health check: %v %v", res, err)
	}
	if _, err := dbRun(t, HTTPGet, dbEnv(t), fmt.Sprintf("url: %s\nexpect_body_contains: healthy", srv.URL)); err == nil {
		t.Fatal("missing body text accepted")
	}
	if _, err := dbRun(t, HTTPGet, dbEnv(t), fmt.Sprintf("url: %s\nexpect_status: 204", srv.URL)); err == nil || !strings.Contains(err.Error(), "expected 204") {
		t.Fatalf("wrong status accepted: %v", err)
	}
}

func TestHTTPPostRetriesResendWholeBody(t *testing.T) {
	var calls atomic.Int32
	var last []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			http.Error(w, "oops", http.StatusBadGateway)
			return
		}
		last = b
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	payload := `{"users":[],"queues":[{"name":"q1"}]}` + strings.Repeat(" ", 200000)
	// The input is an encrypted, compressed artifact: each attempt re-opens it.
	idFile, recip := dbAgeKeys(t)
	in := filepath.Join(t.TempDir(), "defs.json.zst.age")
	w, err := artifact.Create(context.Background(), nil, artifact.WriteOptions{Output: in, Compress: "zstd",
		Encrypt: &artifact.EncryptSpec{Recipients: []string{recip}}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, payload)
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	res, err := dbRun(t, HTTPPost, dbEnv(t), fmt.Sprintf("url: %s/api/definitions\ninput: %s\nidentity_file: %s\nexpect_status: 204", srv.URL, in, idFile))
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || string(last) != payload || res["status"] != 204 {
		t.Errorf("calls=%d body %d bytes (want %d) outputs=%v", calls.Load(), len(last), len(payload), res)
	}
}

// RabbitMQ definitions: export, delete a queue, import, queue back.
func TestHTTPRabbitMQDefinitionsRoundTrip(t *testing.T) {
	v := testenv.Require(t, "RabbitMQ management (scripts/testenv.sh)", "RABBITMQ_MGMT_URL", "RABBITMQ_USER", "RABBITMQ_PASS")
	mgmt, user, pass := v["RABBITMQ_MGMT_URL"], v["RABBITMQ_USER"], v["RABBITMQ_PASS"]
	queue := uniqueName("planrun_q")
	qURL := mgmt + "/api/queues/%2F/" + url.PathEscape(queue)
	api := func(method, u string, body string) int {
		req, _ := http.NewRequest(method, u, strings.NewReader(body))
		req.SetBasicAuth(user, pass)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := api(http.MethodPut, qURL, `{"durable":true,"arguments":{"x-max-length":1000}}`); c != 201 && c != 204 {
		t.Fatalf("create queue: HTTP %d", c)
	}
	t.Cleanup(func() { api(http.MethodDelete, qURL, "") })

	idFile, recip := dbAgeKeys(t)
	out := filepath.Join(t.TempDir(), "rabbitmq-definitions.json.zst.age")
	env := dbEnv(t, "RMQ_TEST_PASS="+pass)
	res, err := dbRun(t, HTTPGet, env, fmt.Sprintf(`url: %s/api/definitions
basic_auth: {user: %s, password_env: RMQ_TEST_PASS}
expect_json: true
expect_body_contains: %s
save: {output: %s, encrypt: {recipients: [%s]}}`, mgmt, user, queue, out, recip))
	if err != nil {
		t.Fatal(err)
	}
	var defs struct {
		Queues []struct{ Name string } `json:"queues"`
	}
	if err := json.Unmarshal(dbReadArtifact(t, out, idFile), &defs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, q := range defs.Queues {
		found = found || q.Name == queue
	}
	if !found || res["size"].(int64) == 0 {
		t.Fatalf("queue %s not in exported definitions", queue)
	}

	if c := api(http.MethodDelete, qURL, ""); c != 204 {
		t.Fatalf("delete queue: HTTP %d", c)
	}
	if c := api(http.MethodGet, qURL, ""); c != 404 {
		t.Fatalf("queue still there: HTTP %d", c)
	}
	_, err = dbRun(t, HTTPPost, dbEnv(t, "RMQ_TEST_PASS="+pass), fmt.Sprintf(`url: %s/api/definitions
basic_auth: {user: %s, password_env: RMQ_TEST_PASS}
input: %s
identity_file: %s`, mgmt, user, out, idFile))
	if err != nil {
		t.Fatal(err)
	}
	if c := api(http.MethodGet, qURL, ""); c != 200 {
		t.Fatalf("queue not back after import: HTTP %d", c)
	}
}

func TestHTTPValidate(t *testing.T) {
	for with, want := range map[string]string{
		"url: ftp://x/":                     "not an http(s) URL",
		"url: http://x/\nexpect_status: 42": "not an HTTP status",
		"url: http://x/\nbasic_auth: {user: u, password: p, password_env: E}": "not both",
		"url: http://x/\nsave: {compress: zstd}":                              "output",
	} {
		if _, probs := dbTryDecode(HTTPGet, with); len(probs) == 0 || !strings.Contains(fmt.Sprint(probs), want) {
			t.Errorf("%q: problems %v, want %q", with, probs, want)
		}
	}
	if _, probs := dbTryDecode(HTTPPost, "url: http://x/\ninput: a\nbody: b"); len(probs) == 0 {
		t.Error("input and body both accepted")
	}
}
