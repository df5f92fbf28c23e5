package steps

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/ping"
)

// HealthcheckPingParams are the params of the healthcheck-ping step (also
// what the engine sets for a plan-level monitor:).
type HealthcheckPingParams struct {
	URL         string          `yaml:"url" required:"true" secret:"true" doc:"ping URL (https://hc-ping.com/<uuid> or .../<ping-key>/<slug>); a credential, so keep it in an env file: ${{ env.HC_URL }}"`
	Signal      string          `yaml:"signal" enum:"start|success|fail|log|exit-code" default:"success" doc:"what to signal; exit-code sends <url>/<exit_code>"`
	ExitCode    int             `yaml:"exit_code" doc:"exit status 0-255: with signal exit-code it is the signal (0 means success); with fail, a non-zero code is sent as /<code> so the service records it"`
	Body        string          `yaml:"body" doc:"text sent with the ping (POST), e.g. the log tail; redacted, and cut to its last body_limit bytes"`
	BodyLimit   engine.Size     `yaml:"body_limit" default:"100kB" doc:"largest body sent (Healthchecks.io stores 100 kB)"`
	Timeout     engine.Duration `yaml:"timeout" default:"10s" doc:"timeout of each attempt"`
	Retries     int             `yaml:"retries" default:"3" doc:"retries after a connection error, 429 or 5xx (never after other 4xx)"`
	FailOnError bool            `yaml:"fail_on_error" doc:"fail the step when the ping cannot be delivered (default: warn, outputs ok=false)"`
}

// Validate checks the exit status range and the retry count.
func (p *HealthcheckPingParams) Validate() error {
	if p.ExitCode < 0 || p.ExitCode > 255 {
		return fmt.Errorf("exit_code must be 0-255, got %d", p.ExitCode)
	}
	if p.Signal != "exit-code" && p.Signal != "fail" && p.ExitCode != 0 {
		return errors.New("exit_code needs signal: exit-code (or fail)")
	}
	if p.Retries < 0 || p.Retries > 20 {
		return fmt.Errorf("retries must be 0-20, got %d", p.Retries)
	}
	if p.Timeout < 0 {
		return errors.New("timeout must be positive")
	}
	return nil
}

// suffix is the URL signal for the ping package.
func (p *HealthcheckPingParams) suffix() string {
	if p.Signal == "exit-code" || p.Signal == "fail" && p.ExitCode != 0 {
		return strconv.Itoa(p.ExitCode)
	}
	return p.Signal
}

// HealthcheckPing signals a Healthchecks.io (or self-hosted Healthchecks) check.
var HealthcheckPing = engine.Def[HealthcheckPingParams]{
	Name:    "healthcheck-ping",
	Summary: "ping a Healthchecks.io check: start, success, fail, log or exit status, with the run id",
	Doc: "Sends <url>[/start|/fail|/log|/<exit_code>]?rid=<uuid>, where rid is the run id as a UUID " +
		"(a non-UUID run id maps to a stable name-based UUID), so the service pairs start and end " +
		"and measures the duration. A ping that cannot be delivered logs a warning and sets ok=false; " +
		"it fails the step only with fail_on_error: true.",
	Outputs: []engine.Output{
		{Name: "ok", Doc: "whether the service answered 2xx"},
		{Name: "status", Doc: "last HTTP status (0: no answer)"},
		{Name: "attempts", Doc: "requests made"},
		{Name: "rid", Doc: "the run id sent (UUID)"},
		{Name: "error", Doc: "why the ping failed (redacted), empty when ok"},
	},
	Example: "url: ${{ env.HC_PING_URL }}\nsignal: fail\nbody: ${{ run.log_tail }}",
	Monitor: true,
	Preview: func(env *engine.Env, p *HealthcheckPingParams) []string {
		line := "ping: " + ping.Display(p.URL, p.suffix())
		if rid := ping.RunUUID(env.RunID); rid != "" {
			line += "?rid=" + rid
		}
		if p.Body != "" {
			line += fmt.Sprintf(" (body %d bytes)", min(len(p.Body), int(p.BodyLimit)))
		}
		return []string{line}
	},
	Run: runHealthcheckPing,
}

func runHealthcheckPing(ctx context.Context, env *engine.Env, p *HealthcheckPingParams) (engine.Outputs, error) {
	env.Secrets.Add(ping.SecretForms(p.URL)...)
	rid := ping.RunUUID(env.RunID)
	out := engine.Outputs{"ok": false, "status": 0, "attempts": 0, "rid": rid, "error": ""}
	shown := ping.Display(p.URL, p.suffix())

	fail := func(err error) (engine.Outputs, error) {
		msg := env.Secrets.Redact(err.Error())
		out["error"] = msg
		if p.FailOnError {
			return out, fmt.Errorf("healthcheck ping %s: %s", shown, msg)
		}
		env.Log.Warn("healthcheck ping failed (a warning only; fail_on_error: true fails the step)", "url", shown, "error", msg)
		return out, nil
	}

	u, err := ping.URL(p.URL, p.suffix(), rid)
	if err != nil {
		return fail(err)
	}
	// Redact first, then cut: cutting first could leave half a secret.
	body := ping.TailBody(env.Secrets.Redact(p.Body), int(p.BodyLimit))

	timeout := time.Duration(p.Timeout)
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	client := ping.NewClient(timeout, p.Retries, func(attempt int, resp *http.Response, err error) {
		why := "no answer"
		if resp != nil {
			why = resp.Status
		} else if err != nil {
			why = env.Secrets.Redact(err.Error())
		}
		env.Log.Info("healthcheck ping attempt failed, retrying", "url", shown, "attempt", attempt, "reason", why)
	})
	res, err := ping.Send(ctx, client, u, body)
	out["status"], out["attempts"] = res.Status, res.Attempts
	if err != nil {
		return fail(err)
	}
	out["ok"] = true
	if env.Stats != nil {
		env.Stats.BytesOut.Add(int64(len(body)))
	}
	env.Log.Info("healthcheck pinged", "url", shown, "status", res.Status)
	return out, nil
}
