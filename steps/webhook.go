package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/httpx"
	"github.com/planrun/planrun/steps/internal/ping"
)

// WebhookParams are the params of the webhook monitor (and step).
type WebhookParams struct {
	URL            string            `yaml:"url" required:"true" secret:"true" doc:"receiver URL; its path and query usually hold a token (Slack, Mattermost, ntfy topic, Uptime Kuma push), so it is masked in logs, dry runs and records: keep it in an env file, ${{ env.SLACK_WEBHOOK_URL }}"`
	Method         string            `yaml:"method" enum:"POST|PUT|GET" default:"POST" doc:"request method; GET sends no body"`
	Query          map[string]string `yaml:"query" doc:"query parameters added to the URL, encoded for you; values may be templates (Uptime Kuma: {status: ..., msg: ...})"`
	Headers        map[string]string `yaml:"headers" doc:"request headers that are not secret (ntfy: Title, Priority, Tags)"`
	HeadersFromEnv map[string]string `yaml:"headers_from_env" doc:"header name → environment variable holding its secret value, e.g. {Authorization: NTFY_AUTH} (the value is masked everywhere)"`
	ContentType    string            `yaml:"content_type" default:"application/json" doc:"Content-Type of the body"`
	On             []string          `yaml:"on" doc:"signals that send a request: start, success, fail, log (a run skipped because the plan was running); default [success, fail]"`
	Signal         string            `yaml:"signal" enum:"start|success|fail|log" default:"success" doc:"set by the engine on a monitor (also run.signal in templates)"`
	ExitCode       int               `yaml:"exit_code" doc:"set by the engine on a monitor (also run.exit_code in templates)"`
	Body           string            `yaml:"body" doc:"request body, usually a template over run.* (plan, host, status, signal, exit_code, duration, error, log_tail); build JSON with toJSON({...}) so values are escaped; when not given, a monitor sends the redacted log tail"`
	Timeout        engine.Duration   `yaml:"timeout" default:"10s" doc:"limit of each attempt"`
	Retries        int               `yaml:"retries" default:"2" doc:"retries on connection errors, 429 and 5xx (never on other 4xx)"`
	FailOnError    bool              `yaml:"fail_on_error" doc:"fail the step when the request fails (default: warn, outputs ok=false); a monitor never fails the run either way"`
}

// webhookSignals are the values of on.
var webhookSignals = []string{"start", "success", "fail", "log"}

// Validate checks on, the retry count and the URL when it is literal.
func (p *WebhookParams) Validate() error {
	for _, s := range p.On {
		if !slices.Contains(webhookSignals, s) {
			return fmt.Errorf("on: unknown signal %q (start, success, fail, log)", s)
		}
	}
	if p.Retries < 0 || p.Retries > 10 {
		return fmt.Errorf("retries must be 0-10, got %d", p.Retries)
	}
	if p.ExitCode < 0 || p.ExitCode > 255 {
		return fmt.Errorf("exit_code must be 0-255, got %d", p.ExitCode)
	}
	if !strings.Contains(p.URL, "${{") {
		if _, err := webhookURL(p.URL, nil); err != nil {
			return err
		}
	}
	return nil
}

// sends reports whether the current signal is one of on.
func (p *WebhookParams) sends() bool {
	on := p.On
	if len(on) == 0 {
		on = []string{"success", "fail"}
	}
	return slices.Contains(on, p.Signal)
}

// webhookURL adds query to raw. Its errors never echo the URL (a secret).
func webhookURL(raw string, query map[string]string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("url: not an http(s) URL with a host")
	}
	if len(query) > 0 {
		q := u.Query()
		keys := make([]string, 0, len(query))
		for k := range query {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			q.Set(k, query[k])
		}
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// Webhook sends a run's outcome to any HTTP receiver: chat incoming
// webhooks, ntfy, Uptime Kuma push, a JSON endpoint.
var Webhook = engine.Def[WebhookParams]{
	Name:    "webhook",
	Summary: "send the run's outcome to an HTTP receiver (Slack/Mattermost, ntfy, Uptime Kuma push, JSON)",
	Doc: "As a monitor, the engine calls it with signal start, success, fail or log (a skipped run); " +
		"it sends a request only for the signals in on. url, query, headers and body are templates over " +
		"run.* (plan, host, status, signal, exit_code, duration, error, log_tail: redacted). The URL's path " +
		"and query are masked in logs and dry runs. A request that cannot be delivered logs a warning and " +
		"sets ok=false; it never fails the run. README \"Notifications\" has examples for each receiver.",
	Outputs: []engine.Output{
		{Name: "ok", Doc: "whether the receiver answered 2xx (true also when on skipped the signal)"},
		{Name: "sent", Doc: "whether a request was sent (on lists the signal)"},
		{Name: "status", Doc: "HTTP status (0: no answer)"},
		{Name: "error", Doc: "why the request failed (redacted), empty when ok"},
	},
	Example: "url: ${{ env.SLACK_WEBHOOK_URL }}\non: [fail]\nbody: '${{ toJSON({\"text\": run.plan + \" on \" + run.host + \": \" + run.status}) }}'",
	Monitor: true,
	Preview: func(env *engine.Env, p *WebhookParams) []string {
		if !p.sends() {
			return []string{fmt.Sprintf("webhook: nothing sent for signal %s (on: %s)", p.Signal, strings.Join(p.On, ", "))}
		}
		line := fmt.Sprintf("webhook: %s %s", p.Method, ping.Display(p.URL, ""))
		if p.Method != http.MethodGet && p.Body != "" {
			line += fmt.Sprintf(" (%s, body %d bytes)", p.ContentType, len(p.Body))
		}
		return []string{line}
	},
	Run: runWebhook,
}

func runWebhook(ctx context.Context, env *engine.Env, p *WebhookParams) (engine.Outputs, error) {
	env.Secrets.Add(ping.SecretForms(p.URL)...)
	out := engine.Outputs{"ok": true, "sent": false, "status": 0, "error": ""}
	if !p.sends() {
		return out, nil
	}
	out["sent"] = true
	shown := ping.Display(p.URL, "")
	fail := func(err error) (engine.Outputs, error) {
		msg := env.Secrets.Redact(err.Error())
		out["ok"], out["error"] = false, msg
		if p.FailOnError {
			return out, fmt.Errorf("webhook %s: %s", shown, msg)
		}
		env.Log.Warn("webhook failed (a warning only; fail_on_error: true fails the step)", "url", shown, "error", msg)
		return out, nil
	}
	u, err := webhookURL(p.URL, p.Query)
	if err != nil {
		return fail(err)
	}
	// The full URL (with the query) is a secret form too: errors quote it.
	env.Secrets.Add(u)
	req := httpx.Request{URL: u, Headers: p.Headers, HeadersFromEnv: p.HeadersFromEnv,
		Timeout: p.Timeout, Retries: p.Retries}
	hdr, err := req.ResolveHeaders(env)
	if err != nil {
		return fail(err)
	}
	hdr.Set("User-Agent", "planrun")
	var body func() (io.Reader, error)
	if p.Method != http.MethodGet {
		text := env.Secrets.Redact(p.Body)
		hdr.Set("Content-Type", p.ContentType)
		body = func() (io.Reader, error) { return strings.NewReader(text), nil }
		if env.Stats != nil {
			env.Stats.BytesOut.Add(int64(len(text)))
		}
	}
	if req.Timeout <= 0 {
		req.Timeout = engine.Duration(10 * time.Second)
	}
	status, _, err := req.Do(ctx, env, p.Method, body, hdr, func(r io.Reader) error {
		_, err := io.Copy(io.Discard, io.LimitReader(r, 64<<10))
		return err
	})
	out["status"] = status
	if err != nil {
		return fail(err)
	}
	env.Log.Info("webhook sent", "url", shown, "status", status)
	return out, nil
}
