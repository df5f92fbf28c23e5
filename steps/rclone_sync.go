package steps

import (
	"context"
	"fmt"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/rclone"
)

// RcloneSyncParams are the params of rclone-sync.
type RcloneSyncParams struct {
	rclone.Options   `yaml:",inline"`
	Source           string `yaml:"source" required:"true" doc:"source path or remote:path"`
	Dest             string `yaml:"dest" required:"true" doc:"destination path or remote:path, made identical to source"`
	MaxDeletePercent int    `yaml:"max_delete_percent" default:"50" doc:"refuse when it would delete more than this percentage of the destination's files (dry run first, then --max-delete as a second guard); 100 disables the guard"`
	Checksum         bool   `yaml:"checksum" doc:"compare by checksum, not size and time"`
}

// Validate checks the guard and keeps credentials out of argv.
func (p *RcloneSyncParams) Validate() error {
	if p.MaxDeletePercent < 0 || p.MaxDeletePercent > 100 {
		return fmt.Errorf("max_delete_percent must be 0-100, got %d", p.MaxDeletePercent)
	}
	return p.Options.Validate([2]string{"source", p.Source}, [2]string{"dest", p.Dest})
}

// RcloneSync makes dest identical to source, with a delete guard.
var RcloneSync = engine.Def[RcloneSyncParams]{
	Name:    "rclone-sync",
	Summary: "rclone sync with a delete guard (refuses to delete more than max_delete_percent of dest)",
	Doc: "Runs rclone with JSON logs and turns its final stats into outputs. It first does a dry " +
		"run and refuses when it would delete more than max_delete_percent of the destination's " +
		"files, then syncs with --max-delete as a second guard. AWS_CA_BUNDLE is removed from " +
		"rclone's environment (rclone 1.60's S3 client fails on it).",
	Kind:    engine.KindDestructive,
	Outputs: append(append([]engine.Output(nil), rclone.StatsDocs...), rclone.GuardDocs...),
	Example: "source: /backups\ndest: offsite:backups/db1\nconfig: /etc/planrun/rclone.conf\nmax_delete_percent: 20",
	Preview: func(env *engine.Env, p *RcloneSyncParams) []string {
		return p.GuardedPreview(env.Secrets, p.args, p.Dest, p.MaxDeletePercent)
	},
	Run: func(ctx context.Context, env *engine.Env, p *RcloneSyncParams) (engine.Outputs, error) {
		return rclone.New(env, p.Options).GuardedRun(ctx, p.Options, "sync", p.args, p.Dest, p.MaxDeletePercent)
	},
}

func (p *RcloneSyncParams) args(dryRun bool, maxDelete int64) []string {
	extra := append([]string(nil), rclone.JSONLogFlags...)
	if p.Checksum {
		extra = append(extra, "--checksum")
	}
	if dryRun {
		extra = append(extra, "--dry-run")
	}
	if maxDelete >= 0 {
		extra = append(extra, "--max-delete", fmt.Sprint(maxDelete))
	}
	return p.Args("sync", extra, p.Source, p.Dest)
}
