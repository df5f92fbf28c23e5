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
	"reflect"
	"strings"
	"testing"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

// rabbitAPI calls the management API as the test's own tooling.
type rabbitAPI struct {
	t               *testing.T
	mgmt, user, pwd string
}

func (a rabbitAPI) do(method, path, body string) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.mgmt+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	req.SetBasicAuth(a.user, a.pwd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (a rabbitAPI) must(method, path, body string) {
	a.t.Helper()
	if c, b := a.do(method, path, body); c/100 != 2 {
		a.t.Fatalf("%s %s: HTTP %d %s", method, path, c, b)
	}
}

// listed counts what the management API lists, the way a definitions
// export holds it: without the built-in exchanges ("" and amq.*), the
// default exchange's implicit bindings and exclusive queues.
func (a rabbitAPI) listed() map[string]int64 {
	a.t.Helper()
	get := func(what string) []map[string]any {
		c, b := a.do(http.MethodGet, "/api/"+what, "")
		var l []map[string]any
		if c != 200 || json.Unmarshal(b, &l) != nil {
			a.t.Fatalf("GET /api/%s: HTTP %d %s", what, c, b)
		}
		return l
	}
	out := map[string]int64{}
	for _, q := range get("queues") {
		if ex, _ := q["exclusive"].(bool); !ex {
			out["queues"]++
		}
	}
	out["exchanges"] = 0
	for _, e := range get("exchanges") {
		if n := e["name"].(string); n != "" && !strings.HasPrefix(n, "amq.") {
			out["exchanges"]++
		}
	}
	out["bindings"] = 0
	for _, b := range get("bindings") {
		if b["source"] != "" {
			out["bindings"]++
		}
	}
	for _, k := range []string{"users", "vhosts", "policies"} {
		out[k] = int64(len(get(k)))
	}
	return out
}

// A real definitions export is counted as it streams; the counts equal
// what the management API lists; verify with inspect (the drill's inverse)
// gets the same counts from the artifact; the DR inverse POSTs it back.
func TestHTTPRabbitMQDefinitionsCountsAndInverse(t *testing.T) {
	v := testenv.Require(t, "RabbitMQ management (scripts/testenv.sh)", "RABBITMQ_MGMT_URL", "RABBITMQ_USER", "RABBITMQ_PASS")
	api := rabbitAPI{t: t, mgmt: v["RABBITMQ_MGMT_URL"], user: v["RABBITMQ_USER"], pwd: v["RABBITMQ_PASS"]}
	n := uniqueName("planrun")
	q1, q2, ex, pol, user := n+"_q1", n+"_q2", n+"_ex", n+"_pol", n+"_user"
	esc := url.PathEscape
	api.must(http.MethodPut, "/api/queues/%2F/"+esc(q1), `{"durable":true}`)
	t.Cleanup(func() { api.do(http.MethodDelete, "/api/queues/%2F/"+esc(q1), "") })
	api.must(http.MethodPut, "/api/queues/%2F/"+esc(q2), `{"durable":true,"arguments":{"x-max-length":10}}`)
	t.Cleanup(func() { api.do(http.MethodDelete, "/api/queues/%2F/"+esc(q2), "") })
	api.must(http.MethodPut, "/api/exchanges/%2F/"+esc(ex), `{"type":"topic","durable":true}`)
	t.Cleanup(func() { api.do(http.MethodDelete, "/api/exchanges/%2F/"+esc(ex), "") })
	api.must(http.MethodPost, "/api/bindings/%2F/e/"+esc(ex)+"/q/"+esc(q1), `{"routing_key":"a.#"}`)
	api.must(http.MethodPost, "/api/bindings/%2F/e/"+esc(ex)+"/q/"+esc(q2), `{"routing_key":"b.#"}`)
	api.must(http.MethodPut, "/api/policies/%2F/"+esc(pol), `{"pattern":"^`+n+`","definition":{"max-length":100},"apply-to":"queues"}`)
	t.Cleanup(func() { api.do(http.MethodDelete, "/api/policies/%2F/"+esc(pol), "") })
	api.must(http.MethodPut, "/api/users/"+esc(user), `{"password":"`+n+`-pw","tags":""}`)
	t.Cleanup(func() { api.do(http.MethodDelete, "/api/users/"+esc(user), "") })

	idFile, recip := dbAgeKeys(t)
	out := filepath.Join(t.TempDir(), "rabbitmq-definitions.json.zst.age")
	var rec engine.ArtifactRecord
	var want map[string]int64
	// Other test packages may use the broker meanwhile: take the export
	// between two equal listings (a few tries, no sleeping).
	for try := 0; ; try++ {
		before := api.listed()
		env := dbEnv(t, "RMQ_TEST_PASS="+api.pwd)
		if _, err := dbRun(t, HTTPGet, env, fmt.Sprintf(`url: %s/api/definitions
basic_auth: {user: %s, password_env: RMQ_TEST_PASS}
expect_json: true
save: {output: %s, overwrite: true, encrypt: {recipients: [%s]}}`, api.mgmt, api.user, out, recip)); err != nil {
			t.Fatal(err)
		}
		recs := recorded(t, env)
		if len(recs) != 1 {
			t.Fatalf("records %+v", recs)
		}
		rec = *recs[0]
		if after := api.listed(); reflect.DeepEqual(before, after) {
			want = after
			break
		} else if try == 2 {
			t.Fatalf("broker kept changing during the export: %v then %v", before, after)
		}
	}
	if !reflect.DeepEqual(rec.Counts, want) {
		t.Fatalf("recorded counts %v, management API lists %v", rec.Counts, want)
	}
	if want["queues"] < 2 || want["exchanges"] < 1 || want["bindings"] < 2 || want["policies"] < 1 || want["users"] < 2 {
		t.Fatalf("test objects missing from the listing: %v", want)
	}
	wantSrc := map[string]string{"kind": "http", "url": api.mgmt + "/api/definitions", "user": api.user,
		"password_env": "RMQ_TEST_PASS", "format": "rabbitmq-definitions"}
	for k, v := range wantSrc {
		if rec.Source[k] != v {
			t.Errorf("source[%s] = %q, want %q", k, rec.Source[k], v)
		}
	}
	if rec.Tools["rabbitmq"] == "" {
		t.Errorf("tools %v: no broker version", rec.Tools)
	}
	if b, _ := json.Marshal(rec); strings.Contains(string(b), api.pwd) {
		t.Fatalf("password in the record: %s", b)
	}

	// verify inspect reads the same counts from the artifact.
	vout := mustRun(t, "verify", fmt.Sprintf("{path: %s, identity_file: %s, inspect: rabbitmq-definitions, sha256: %s}", out, idFile, rec.SHA256))
	if got, _ := engine.CountsOf(vout["counts"]); !reflect.DeepEqual(got, rec.Counts) {
		t.Fatalf("verify inspect counts %v, recorded %v", got, rec.Counts)
	}

	// Drill: the scratch inverse is a verify step with the same counts.
	name, p := inverseDecode(t, HTTPGet.Type(), rec, engine.RestoreTarget{Input: out, Scratch: true, ScratchSuffix: "_drill_x", IdentityFile: idFile})
	vp := p.(*VerifyParams)
	if name != "verify" || vp.Path != out || vp.Inspect != "rabbitmq-definitions" || vp.SHA256 != rec.SHA256 {
		t.Fatalf("scratch inverse: %s %+v", name, vp)
	}
	vres, err := Verify.Run(context.Background(), dbEnv(t), vp)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := engine.CountsOf(vres["counts"])
	if diffs := engine.CompareCounts(rec.Counts, got); len(diffs) > 0 {
		t.Fatalf("drill counts differ: %v", diffs)
	}

	// DR restore: the inverse POSTs the definitions back; a deleted queue returns.
	name, p = inverseDecode(t, HTTPGet.Type(), rec, engine.RestoreTarget{Input: out, IdentityFile: idFile})
	pp := p.(*HTTPPostParams)
	if name != "http-post" || pp.URL != api.mgmt+"/api/definitions" || pp.Method != "POST" || pp.Input != out ||
		pp.ContentType != "application/json" || pp.VerifyImport != "rabbitmq-definitions" || pp.BasicAuth == nil || pp.BasicAuth.User != api.user || pp.BasicAuth.PasswordEnv != "RMQ_TEST_PASS" {
		t.Fatalf("inverse: %s %+v", name, pp)
	}
	api.must(http.MethodDelete, "/api/queues/%2F/"+esc(q2), "")
	pout, err := HTTPPost.Run(context.Background(), dbEnv(t, "RMQ_TEST_PASS="+api.pwd), pp)
	if err != nil {
		t.Fatal(err)
	}
	if c, b := api.do(http.MethodGet, "/api/queues/%2F/"+esc(q2), ""); c != 200 || !strings.Contains(string(b), `"x-max-length":10`) {
		t.Fatalf("queue %s not back after the inverse import: HTTP %d %s", q2, c, b)
	}
	// The import is measured on the broker: every backed-up object found.
	got, _ = engine.CountsOf(pout["counts"])
	if diffs := engine.CompareCounts(rec.Counts, got); len(diffs) > 0 {
		t.Fatalf("restore counts differ: %v", diffs)
	}

	// A broker that does not keep what was imported (here: a vhost export
	// POSTed to a server that answers 2xx but keeps nothing) fails the check.
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			io.WriteString(w, `{"rabbit_version":"3.13.1","queues":[],"exchanges":[],"bindings":[],"users":[],"vhosts":[],"policies":[]}`)
		}
	}))
	defer fake.Close()
	pp.URL = fake.URL + "/api/definitions"
	pout, err = HTTPPost.Run(context.Background(), dbEnv(t, "RMQ_TEST_PASS="+api.pwd), pp)
	if err == nil || !strings.Contains(err.Error(), "the broker lacks part of") || !strings.Contains(err.Error(), fmt.Sprintf("queues 0 of %d", want["queues"])) {
		t.Fatalf("err = %v", err)
	}
	if got, _ := engine.CountsOf(pout["counts"]); got["queues"] != 0 || len(engine.CompareCounts(rec.Counts, got)) == 0 {
		t.Fatalf("counts after a lost import: %v", got)
	}
}

// Credentials in the URL stay out of the record; a saved body that is not
// a definitions export records no counts and has no derived restore.
func TestHTTPGetRecordSourceAndForeignBody(t *testing.T) {
	body := `{"rabbit_version":"3.13.1","users":[{"name":"a"}],"queues":[{"name":"q"},{"name":"r"}],"exchanges":[],"bindings":[]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); u != "bob" || p != "url-pa55word" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/other" {
			io.WriteString(w, `{"status":"ok","queues":[1,2,3]}`)
			return
		}
		io.WriteString(w, body)
	}))
	defer srv.Close()
	withCreds := strings.Replace(srv.URL, "http://", "http://bob:url-pa55word@", 1)
	dir := t.TempDir()
	env := dbEnv(t)
	if _, err := dbRun(t, HTTPGet, env, fmt.Sprintf("url: %s/api/definitions\nsave: {output: %s/defs.json.gz, compress: gzip}", withCreds, dir)); err != nil {
		t.Fatal(err)
	}
	rec := *recorded(t, env)[0]
	if rec.Source["url"] != srv.URL+"/api/definitions" || rec.Source["format"] != "rabbitmq-definitions" ||
		!reflect.DeepEqual(rec.Counts, map[string]int64{"users": 1, "queues": 2, "exchanges": 0, "bindings": 0}) ||
		rec.Tools["rabbitmq"] != "3.13.1" {
		t.Fatalf("record %+v", rec)
	}
	if b, _ := json.Marshal(rec); strings.Contains(string(b), "url-pa55word") {
		t.Fatalf("password in the record: %s", b)
	}

	env = dbEnv(t)
	if _, err := dbRun(t, HTTPGet, env, fmt.Sprintf("url: %s/other\nsave: {output: %s/other.json.zst}", withCreds, dir)); err != nil {
		t.Fatal(err)
	}
	rec = *recorded(t, env)[0]
	if rec.Counts != nil || rec.Source["format"] != "" || rec.Source["kind"] != "http" {
		t.Fatalf("foreign body record %+v", rec)
	}
	if _, err := HTTPGet.Inverse.With(rec, engine.RestoreTarget{Input: rec.Path}); err == nil || !strings.Contains(err.Error(), "not a RabbitMQ definitions export") {
		t.Fatalf("inverse of a foreign body: %v", err)
	}
}
