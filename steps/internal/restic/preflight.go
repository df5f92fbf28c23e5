package restic

import (
	"context"
	"strings"

	"github.com/planrun/planrun/engine"
)

// Preflight opens the repository with its password, reading only its
// config (no lock, no cache): a wrong password or a missing repository
// shows now, not at 3 a.m.
func (r *Repo) Preflight(ctx context.Context, env *engine.PreflightEnv) []engine.PreflightCheck {
	c := engine.PreflightCheck{Check: "restic", Target: r.Repository}
	call, err := New(env.Env, *r)
	if err != nil {
		c.Status, c.Reason = engine.CheckFail, err.Error()
		return []engine.PreflightCheck{c}
	}
	c.Target = Location(call.Repo)
	if bin := env.Tool("restic"); bin != "" {
		call.Bin = bin
	}
	_, _, err = call.Output(ctx, "--no-cache", "--no-lock", "cat", "config")
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch {
	case err == nil:
		c.Status, c.Reason = engine.CheckOK, "repository opens with its password"
	case strings.Contains(msg, "wrong password"):
		c.Status, c.Reason = engine.CheckFail, "wrong password: restic cannot open the repository with it ("+msg+")"
	case strings.Contains(msg, "Is there a repository") || strings.Contains(msg, "repository does not exist"):
		// restic-init's job, on a first run: worth a look, not a failure.
		c.Status, c.Reason = engine.CheckWarn, "no repository there yet (a restic-init step creates it): "+msg
	default:
		c.Status, c.Reason = engine.CheckFail, msg
	}
	return []engine.PreflightCheck{c}
}
