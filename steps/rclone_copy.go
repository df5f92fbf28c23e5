package steps

import (
	"context"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/rclone"
)

// RcloneCopyParams are the params of rclone-copy.
type RcloneCopyParams struct {
	rclone.Options `yaml:",inline"`
	Source         string `yaml:"source" required:"true" doc:"source path or remote:path"`
	Dest           string `yaml:"dest" required:"true" doc:"destination path or remote:path (nothing there is deleted)"`
	Checksum       bool   `yaml:"checksum" doc:"compare by checksum, not size and time"`
}

// Validate keeps credentials out of argv.
func (p *RcloneCopyParams) Validate() error {
	return p.Options.Validate([2]string{"source", p.Source}, [2]string{"dest", p.Dest})
}

// RcloneCopy copies new and changed files; it never deletes.
var RcloneCopy = engine.Def[RcloneCopyParams]{
	Name:    "rclone-copy",
	Summary: "rclone copy of new and changed files (never deletes); outputs bytes, files, errors",
	Doc: "Runs rclone with JSON logs and turns its final stats into outputs. AWS_CA_BUNDLE is " +
		"removed from rclone's environment (rclone 1.60's S3 client fails on it).",
	Kind:    engine.KindBackup,
	Outputs: rclone.StatsDocs,
	Example: "source: /backups/db\ndest: offsite:backups/db\ninclude: [\"*.dump.zst.age\"]\nconfig: /etc/planrun/rclone.conf",
	Preview: func(env *engine.Env, p *RcloneCopyParams) []string {
		return []string{"run: " + p.CommandLine(env.Secrets, p.args())}
	},
	Run: func(ctx context.Context, env *engine.Env, p *RcloneCopyParams) (engine.Outputs, error) {
		c := rclone.New(env, p.Options)
		log, _, err := c.Run(ctx, p.args(), nil)
		out := c.StatsOutputs(log)
		if err != nil {
			return out, c.Fail("copy", log, err)
		}
		return out, nil
	},
}

func (p *RcloneCopyParams) args() []string {
	extra := append([]string(nil), rclone.JSONLogFlags...)
	if p.Checksum {
		extra = append(extra, "--checksum")
	}
	return p.Args("copy", extra, p.Source, p.Dest)
}
