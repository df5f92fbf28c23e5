package steps

import (
	"context"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/restic"
)

// ResticInitParams are the params of restic-init.
type ResticInitParams struct {
	restic.Repo `yaml:",inline"`
}

// ResticInit creates a repository unless it exists.
var ResticInit = engine.Def[ResticInitParams]{
	Name:    "restic-init",
	Summary: "create a restic repository unless it exists (safe to run before every backup)",
	Doc:     "Looks for the repository's config first and runs `restic init` only when there is none.",
	Kind:    engine.KindOther,
	Outputs: []engine.Output{
		{Name: "created", Doc: "whether a repository was created"},
		{Name: "repository_id", Doc: "id of the created repository"},
	},
	Example: "repository: /backups/restic\npassword_file: /etc/planrun/restic.pass",
	Preview: func(env *engine.Env, p *ResticInitParams) []string {
		return []string{"run: " + p.CommandLine(env.Secrets, "init") + " (only if the repository does not exist)"}
	},
	Run: func(ctx context.Context, env *engine.Env, p *ResticInitParams) (engine.Outputs, error) {
		c, err := restic.New(env, p.Repo)
		if err != nil {
			return nil, err
		}
		created, id, err := c.Init(ctx)
		out := engine.Outputs{"created": created}
		if created {
			out["repository_id"] = id
		}
		return out, err
	},
}
