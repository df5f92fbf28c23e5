package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
)

// The receivers below are TEST DOUBLES that follow each service's
// documented API (Slack/Mattermost incoming webhooks, ntfy publish, Uptime
// Kuma push): they check what the real service checks and answer as it
// does. They are not the services.

// gotRequest is one request a double received.
type gotRequest struct {
	Method, Path, ContentType string
	Query                     map[string]string
	Header                    http.Header
	Body                      string
}

type receiver struct {
	mu   sync.Mutex
	reqs []gotRequest
}

func (rc *receiver) got() []gotRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]gotRequest(nil), rc.reqs...)
}

// serve starts a double; check answers the status and text the service
// would, given the request.
func serve(t *testing.T, check func(g gotRequest) (int, string)) (*receiver, string) {
	rc := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		g := gotRequest{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"),
			Query: map[string]string{}, Header: r.Header.Clone(), Body: string(b)}
		for k := range r.URL.Query() {
			g.Query[k] = r.URL.Query().Get(k)
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, g)
		rc.mu.Unlock()
		code, text := check(g)
		w.WriteHeader(code)
		_, _ = io.WriteString(w, text)
	}))
	t.Cleanup(srv.Close)
	return rc, srv.URL
}

// chatDouble follows the Slack incoming-webhook API (also Mattermost's):
// POST application/json with a non-empty "text"; 200 "ok", else 400
// invalid_payload / no_text.
func chatDouble(g gotRequest) (int, string) {
	var m map[string]any
	if g.Method != http.MethodPost || !strings.HasPrefix(g.ContentType, "application/json") || json.Unmarshal([]byte(g.Body), &m) != nil {
		return 400, "invalid_payload"
	}
	if s, _ := m["text"].(string); s == "" {
		return 400, "no_text"
	}
	return 200, "ok"
}

// The documented examples (README, "Notifications"): the README test
// checks each appears there verbatim.
var webhookExamples = map[string]string{
	"slack": `monitor:
  - type: webhook
    with:
      url: ${{ env.SLACK_WEBHOOK_URL }}
      on: [fail]
      body: '${{ toJSON({"text": "planrun " + run.plan + " on " + run.host + ": " + run.status + " (exit " + string(run.exit_code) + "): " + run.error}) }}'
`,
	"ntfy": `monitor:
  - type: webhook
    with:
      url: ${{ env.NTFY_URL }}
      on: [fail]
      content_type: text/plain
      headers: {Title: "planrun ${{ run.plan }} ${{ run.status }} on ${{ run.host }}", Priority: high, Tags: warning}
      headers_from_env: {Authorization: NTFY_AUTH}
      body: "${{ run.error }}"
`,
	"kuma": `monitor:
  - type: webhook
    with:
      url: ${{ env.KUMA_PUSH_URL }}
      method: GET
      query:
        status: '${{ run.signal == "success" ? "up" : "down" }}'
        msg: '${{ run.status + (run.error == "" ? "" : ": " + run.error) }}'
`,
	"json": `monitor:
  - type: webhook
    with:
      url: ${{ env.HOOK_URL }}
      on: [start, success, fail, log]
      headers_from_env: {Authorization: HOOK_AUTH}
      body: '${{ toJSON({"plan": run.plan, "host": run.host, "run_id": run.id, "signal": run.signal, "status": run.status, "exit_code": run.exit_code, "duration_seconds": run.duration, "error": run.error, "log_tail": run.log_tail}) }}'
`,
}

// applyWithMonitor runs a plan of one exec step (failing with exit 7 when
// fail) under the example monitor; it returns the exit code and stderr.
func applyWithMonitor(t *testing.T, example string, fail bool, environ ...string) (int, string) {
	t.Helper()
	shell := "echo all good"
	if fail {
		shell = "echo boom $DB_PASSWORD >&2; exit 7"
	}
	src := "version: 1\nname: nightly\n" + example + "steps:\n  - id: dump\n    type: exec\n    with: {shell: '" + shell + "'}\n"
	p, err := engine.Load("nightly.yaml", []byte(src), All())
	require.NoError(t, err)
	scope, err := engine.Prepare(p, engine.Invocation{Environ: append(environ, "PATH="+os.Getenv("PATH"))})
	require.NoError(t, err)
	var stderr bytes.Buffer
	res := engine.Apply(context.Background(), p, scope, engine.Options{StateDir: t.TempDir(), Stderr: &stderr})
	return res.ExitCode, stderr.String()
}

func TestWebhookSlackExample(t *testing.T) {
	for _, fail := range []bool{false, true} {
		rc, base := serve(t, chatDouble)
		const token = "/services/T000/B000/XXXXsecretXXXX"
		code, logs := applyWithMonitor(t, webhookExamples["slack"], fail, "SLACK_WEBHOOK_URL="+base+token)
		if !fail {
			assert.Equal(t, 0, code)
			assert.Empty(t, rc.got(), "on: [fail] sends nothing for start and success")
			continue
		}
		assert.Equal(t, 1, code)
		got := rc.got()
		require.Len(t, got, 1)
		host, _ := os.Hostname()
		assert.Equal(t, http.MethodPost, got[0].Method)
		assert.Equal(t, token, got[0].Path)
		assert.Equal(t, "application/json", got[0].ContentType)
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(got[0].Body), &m))
		assert.Len(t, m, 1)
		assert.Regexp(t, `^planrun nightly on `+regexp.QuoteMeta(host)+`: failed \(exit 1\): step dump: .*exit status 7: boom$`, m["text"])
		assert.NotContains(t, logs, "XXXXsecretXXXX", "the URL token is masked in logs")
		assert.Contains(t, logs, "webhook sent")
	}
}

func TestWebhookMattermostRejectsWhatSlackRejects(t *testing.T) {
	// Mattermost's incoming webhooks take the same {"text": ...} payload;
	// a body that is not that JSON is refused, and the run's outcome is
	// unchanged (a monitor never fails the run).
	rc, base := serve(t, chatDouble)
	bad := strings.Replace(webhookExamples["slack"], `toJSON({"text": `, `toJSON({"txt": `, 1)
	code, logs := applyWithMonitor(t, bad, true, "SLACK_WEBHOOK_URL="+base+"/hooks/abc123token")
	assert.Equal(t, 1, code, "exit code of the failed step, not of the monitor")
	require.Len(t, rc.got(), 1, "4xx is not retried")
	assert.Contains(t, logs, "webhook failed (a warning only")
	assert.Contains(t, logs, "no_text")
	assert.NotContains(t, logs, "abc123token")
}

func TestWebhookNtfyExample(t *testing.T) {
	// ntfy publish: POST the message as the body to /<topic>; Title,
	// Priority, Tags headers; Authorization: Bearer <token> on protected
	// topics (401 otherwise).
	rc, base := serve(t, func(g gotRequest) (int, string) {
		if g.Header.Get("Authorization") != "Bearer tk_secrettoken" {
			return 401, `{"code":40101,"http":401,"error":"unauthorized"}`
		}
		if g.Method != http.MethodPost && g.Method != http.MethodPut {
			return 405, ""
		}
		return 200, `{"id":"x","event":"message"}`
	})
	code, logs := applyWithMonitor(t, webhookExamples["ntfy"], true,
		"NTFY_URL="+base+"/backups-7f3a", "NTFY_AUTH=Bearer tk_secrettoken")
	assert.Equal(t, 1, code)
	got := rc.got()
	require.Len(t, got, 1)
	host, _ := os.Hostname()
	assert.Equal(t, "/backups-7f3a", got[0].Path)
	assert.Equal(t, "text/plain", got[0].ContentType)
	assert.Equal(t, "planrun nightly failed on "+host, got[0].Header.Get("Title"))
	assert.Equal(t, "high", got[0].Header.Get("Priority"))
	assert.Equal(t, "warning", got[0].Header.Get("Tags"))
	assert.Contains(t, got[0].Body, "exit status 7: boom")
	assert.NotContains(t, logs, "tk_secrettoken")
	assert.NotContains(t, logs, "backups-7f3a")
}

func TestWebhookUptimeKumaExample(t *testing.T) {
	// Uptime Kuma push monitor: GET /api/push/<token>?status=up|down&msg=...
	// answers {"ok":true}; an unknown token {"ok":false,"msg":"Monitor not found or not active."} with 404.
	const token = "Zq4kKuMaT0ken"
	rc, base := serve(t, func(g gotRequest) (int, string) {
		if g.Path != "/api/push/"+token {
			return 404, `{"ok":false,"msg":"Monitor not found or not active."}`
		}
		return 200, `{"ok":true}`
	})
	for _, fail := range []bool{false, true} {
		_, logs := applyWithMonitor(t, webhookExamples["kuma"], fail, "KUMA_PUSH_URL="+base+"/api/push/"+token)
		assert.NotContains(t, logs, token)
	}
	got := rc.got()
	require.Len(t, got, 2, "default on: success and fail, one push per run")
	assert.Equal(t, http.MethodGet, got[0].Method)
	assert.Empty(t, got[0].Body)
	assert.Equal(t, map[string]string{"status": "up", "msg": "success"}, got[0].Query)
	assert.Equal(t, "down", got[1].Query["status"])
	assert.Regexp(t, `^failed: step dump: .*exit status 7: boom$`, got[1].Query["msg"])
}

func TestWebhookJSONExample(t *testing.T) {
	rc, base := serve(t, func(g gotRequest) (int, string) {
		if g.Header.Get("Authorization") != "Bearer hook-s3cret" {
			return 403, "forbidden"
		}
		return 204, ""
	})
	code, logs := applyWithMonitor(t, webhookExamples["json"], true,
		"HOOK_URL="+base+"/planrun", "HOOK_AUTH=Bearer hook-s3cret", "DB_PASSWORD=hunter2")
	assert.Equal(t, 1, code)
	got := rc.got()
	require.Len(t, got, 2)
	var start, end map[string]any
	require.NoError(t, json.Unmarshal([]byte(got[0].Body), &start))
	require.NoError(t, json.Unmarshal([]byte(got[1].Body), &end))
	assert.Equal(t, "start", start["signal"])
	assert.Equal(t, "running", start["status"])
	assert.Equal(t, "fail", end["signal"])
	assert.Equal(t, "failed", end["status"])
	assert.Equal(t, float64(1), end["exit_code"])
	assert.Equal(t, "nightly", end["plan"])
	assert.Equal(t, start["run_id"], end["run_id"])
	assert.Contains(t, end["error"], "exit status 7: boom")
	assert.Contains(t, end["log_tail"], "step failed")
	assert.Contains(t, end, "duration_seconds")
	assert.NotContains(t, logs, "hook-s3cret")
	// A secret the failing step printed is masked in what leaves the host.
	assert.Contains(t, end["error"], "boom ***")
	for _, g := range got {
		assert.NotContains(t, g.Body, "hunter2")
	}
}

func TestWebhookDryRunMasksURL(t *testing.T) {
	src := "version: 1\nname: nightly\n" + webhookExamples["slack"] + "steps:\n  - id: a\n    type: exec\n    with: {command: [\"true\"]}\n"
	p, err := engine.Load("nightly.yaml", []byte(src), All())
	require.NoError(t, err)
	scope, err := engine.Prepare(p, engine.Invocation{Environ: []string{"SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T0/B0/s3cr3tT0k3n"}})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, engine.DryRun(&out, p, scope))
	assert.NotContains(t, out.String(), "s3cr3tT0k3n")
}

func TestWebhookREADMEHasTheTestedExamples(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	for name, ex := range webhookExamples {
		assert.True(t, strings.Contains(string(b), ex), "README must show the %s example exactly as tested:\n%s", name, ex)
	}
}

func TestWebhookValidate(t *testing.T) {
	_, probs := decodeWithProblems(t, Webhook, "url: https://x.example/a\non: [sucess]")
	require.NotEmpty(t, probs)
	assert.Contains(t, probs[0].Msg, `unknown signal "sucess"`)
	_, probs = decodeWithProblems(t, Webhook, "url: ftp://x.example/a")
	require.NotEmpty(t, probs)
	assert.Contains(t, probs[0].Msg, "http(s)")
}
