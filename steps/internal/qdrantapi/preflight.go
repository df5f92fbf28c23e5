package qdrantapi

import (
	"context"
	"fmt"

	"github.com/planrun/planrun/engine"
)

// Preflight lists the collections with the step's API key: the server
// answers and the key is accepted. No retries: a check reports, it does
// not wait out an outage.
func (c *Conn) Preflight(ctx context.Context, env *engine.PreflightEnv) []engine.PreflightCheck {
	ck := engine.PreflightCheck{Check: "qdrant", Target: c.URL}
	once := *c
	once.Retries = 0
	q, err := once.Client(env.Env)
	if err == nil {
		var names []string
		if names, err = q.ListCollections(ctx); err == nil {
			ck.Status, ck.Reason = engine.CheckOK, fmt.Sprintf("answers with the API key (%d collections)", len(names))
			return []engine.PreflightCheck{ck}
		}
	}
	ck.Status, ck.Reason = engine.CheckFail, err.Error()
	return []engine.PreflightCheck{ck}
}
