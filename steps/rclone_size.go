package steps

import (
	"context"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/rclone"
)

// RcloneSizeParams are the params of rclone-size.
type RcloneSizeParams struct {
	rclone.Options `yaml:",inline"`
	Source         string `yaml:"source" required:"true" doc:"path or remote:path measured"`
}

// Validate keeps credentials out of argv.
func (p *RcloneSizeParams) Validate() error {
	return p.Options.Validate([2]string{"source", p.Source})
}

// RcloneSize counts files and bytes.
var RcloneSize = engine.Def[RcloneSizeParams]{
	Name:    "rclone-size",
	Summary: "rclone size: number of files and bytes under a path",
	Kind:    engine.KindOther,
	Outputs: []engine.Output{
		{Name: "count", Doc: "number of files"},
		{Name: "bytes", Doc: "total bytes"},
	},
	Example: "source: offsite:backups/db",
	Preview: func(env *engine.Env, p *RcloneSizeParams) []string {
		return []string{"run: " + p.CommandLine(env.Secrets, p.SizeArgs(p.Source))}
	},
	Run: func(ctx context.Context, env *engine.Env, p *RcloneSizeParams) (engine.Outputs, error) {
		size, err := rclone.New(env, p.Options).Size(ctx, p.Options, p.Source, false)
		if err != nil {
			return nil, err
		}
		return engine.Outputs{"count": size.Count, "bytes": size.Bytes}, nil
	},
}
