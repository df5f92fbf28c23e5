package mongoconn

import (
	"context"
	"fmt"

	"github.com/planrun/planrun/engine"
)

// Preflight reaches the server from where the tools run and pings it with
// the URI's credentials: the driver authenticates when it connects, so a
// wrong password fails here, not in tonight's mongodump.
func (c *Conn) Preflight(ctx context.Context, env *engine.PreflightEnv) []engine.PreflightCheck {
	ck := engine.PreflightCheck{Check: "mongodb"}
	fail := func(err error) []engine.PreflightCheck {
		ck.Status, ck.Reason = engine.CheckFail, err.Error()
		return []engine.PreflightCheck{ck}
	}
	s, err := c.resolve(env.Env)
	if err != nil {
		return fail(err)
	}
	ck.Target = Hosts(s.URI)
	if err := s.Probe(ctx); err != nil {
		return fail(err)
	}
	if err := s.Reachable(ctx); err != nil {
		return fail(err)
	}
	cl, err := s.Connect()
	if err != nil {
		return fail(err)
	}
	defer cl.Disconnect(context.Background())
	if err := cl.Ping(ctx, nil); err != nil {
		return fail(fmt.Errorf("ping: %w", err))
	}
	ck.Status, ck.Reason = engine.CheckOK, "reachable, ping with the URI's credentials answered"
	return []engine.PreflightCheck{ck}
}
