package rclone

import (
	"context"
	"errors"
	"sort"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/proc"
)

// remoteParams are the params of the rclone-* types that name a remote
// path (remote:path, or a local path).
var remoteParams = []string{"source", "dest"}

// Preflight lists each remote path the step names (one level): the
// remote is configured and its credentials work. A path that does not
// exist yet (the first copy creates it) is fine.
func (o *Options) Preflight(ctx context.Context, env *engine.PreflightEnv) []engine.PreflightCheck {
	call := New(env.Env, *o)
	if bin := env.Tool("rclone"); bin != "" {
		call.Bin = bin
	}
	var checks []engine.PreflightCheck
	keys := append([]string(nil), remoteParams...)
	sort.Strings(keys)
	for _, k := range keys {
		path := env.Params[k]
		name, _, ok := strings.Cut(path, ":")
		if !ok || name == "" || strings.ContainsAny(name, "/${") {
			continue // a local path, or known only when the run gets there
		}
		c := engine.PreflightCheck{Check: "rclone", Target: path}
		log, _, err := call.Run(ctx, o.Args("lsf", []string{"--max-depth", "1"}, path), func([]byte) {})
		var xe *proc.ExitError
		switch {
		case err == nil:
			c.Status, c.Reason = engine.CheckOK, "the remote lists"
		case errors.As(err, &xe) && xe.ExitCode == 3:
			c.Status, c.Reason = engine.CheckOK, "the remote answers; the path does not exist yet"
		default:
			c.Status, c.Reason = engine.CheckFail, call.Fail("lsf "+path, log, err).Error()
		}
		checks = append(checks, c)
	}
	return checks
}
