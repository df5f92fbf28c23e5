package steps

import (
	"context"
	"fmt"
	"io"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/httpx"
)

// The monitors' hosts must resolve: a run whose failure ping cannot leave
// is a failure nobody hears of. Nothing is sent to them.

// Preflight reaches the Healthchecks host.
func (p *HealthcheckPingParams) Preflight(ctx context.Context, env *engine.PreflightEnv) []engine.PreflightCheck {
	return []engine.PreflightCheck{httpx.Reach(ctx, p.URL)}
}

// Preflight reaches the webhook receiver.
func (p *WebhookParams) Preflight(ctx context.Context, env *engine.PreflightEnv) []engine.PreflightCheck {
	return []engine.PreflightCheck{httpx.Reach(ctx, p.URL)}
}

// Preflight sends the GET with the step's credentials, once, and reads
// no body: the status says whether the service answers and accepts them
// (RabbitMQ's API with a wrong password: 401).
func (p *HTTPGetParams) Preflight(ctx context.Context, env *engine.PreflightEnv) []engine.PreflightCheck {
	reach := httpx.Reach(ctx, p.URL)
	if reach.Status != engine.CheckOK || reach.Target == "" {
		return []engine.PreflightCheck{reach}
	}
	c := engine.PreflightCheck{Check: "http", Target: httpx.WithoutUserinfo(p.URL)}
	once := p.Request
	once.Retries, once.ExpectJSON, once.ExpectBodyContains = 0, false, ""
	hdr, err := once.ResolveHeaders(env.Env)
	var status int
	if err == nil {
		status, _, err = once.Do(ctx, env.Env, "GET", nil, hdr, func(io.Reader) error { return nil })
	}
	if err != nil {
		c.Status, c.Reason = engine.CheckFail, err.Error()
		return []engine.PreflightCheck{c}
	}
	c.Status, c.Reason = engine.CheckOK, fmt.Sprintf("GET answered %d with the step's credentials", status)
	return []engine.PreflightCheck{c}
}
