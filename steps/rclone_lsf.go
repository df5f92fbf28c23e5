package steps

import (
	"context"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/rclone"
)

// RcloneLsfParams are the params of rclone-lsf.
type RcloneLsfParams struct {
	rclone.Options `yaml:",inline"`
	Source         string `yaml:"source" required:"true" doc:"path or remote:path listed"`
	Recursive      bool   `yaml:"recursive" default:"true" doc:"list recursively"`
}

// Validate keeps credentials out of argv.
func (p *RcloneLsfParams) Validate() error {
	return p.Options.Validate([2]string{"source", p.Source})
}

// RcloneLsf lists file names.
var RcloneLsf = engine.Def[RcloneLsfParams]{
	Name:    "rclone-lsf",
	Summary: "rclone lsf: the file names under a path (outputs for later steps)",
	Kind:    engine.KindOther,
	Outputs: []engine.Output{
		{Name: "count", Doc: "number of files"},
		{Name: "list", Doc: "file names (first 10000)"},
	},
	Example: "source: offsite:backups/db\ninclude: [\"*.manifest.json\"]",
	Preview: func(env *engine.Env, p *RcloneLsfParams) []string {
		return []string{"run: " + p.CommandLine(env.Secrets, p.args())}
	},
	Run: func(ctx context.Context, env *engine.Env, p *RcloneLsfParams) (engine.Outputs, error) {
		c := rclone.New(env, p.Options)
		var count int64
		list := []string{}
		log, _, err := c.Run(ctx, p.args(), func(l []byte) {
			if len(l) == 0 {
				return
			}
			count++
			if len(list) < 10000 {
				list = append(list, string(l))
			}
		})
		if err != nil {
			return nil, c.Fail("lsf", log, err)
		}
		return engine.Outputs{"count": count, "list": list}, nil
	},
}

func (p *RcloneLsfParams) args() []string {
	extra := []string{"--files-only"}
	if p.Recursive {
		extra = append(extra, "-R")
	}
	return p.Args("lsf", extra, p.Source)
}
