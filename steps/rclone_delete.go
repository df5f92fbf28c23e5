package steps

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/rclone"
)

// RcloneDeleteParams are the params of rclone-delete.
type RcloneDeleteParams struct {
	rclone.Options   `yaml:",inline"`
	Source           string          `yaml:"source" required:"true" doc:"path or remote:path whose old files are deleted"`
	MinAge           engine.Duration `yaml:"min_age" required:"true" doc:"delete only files older than this (rclone --min-age, by modification time: rclone copy keeps the local file's), e.g. 30d"`
	MaxDeletePercent int             `yaml:"max_delete_percent" default:"50" doc:"refuse when it would delete more than this percentage of the files (a dry run first, then --max-delete as a second guard): backups that stopped arriving must not let the last copies age out; 100 disables the guard"`
}

// Validate checks the age and the guard.
func (p *RcloneDeleteParams) Validate() error {
	if p.MinAge < engine.Duration(time.Hour) {
		return errors.New("min_age must be at least 1h (retention by age)")
	}
	if p.MaxDeletePercent < 0 || p.MaxDeletePercent > 100 {
		return fmt.Errorf("max_delete_percent must be 0-100, got %d", p.MaxDeletePercent)
	}
	return p.Options.Validate([2]string{"source", p.Source})
}

// RcloneDelete is retention by age for a remote (off-site copies).
var RcloneDelete = engine.Def[RcloneDeleteParams]{
	Name:    "rclone-delete",
	Summary: "rclone delete of files older than min_age (off-site retention), with a delete guard",
	Doc: "Retention for off-site copies made with rclone-copy: deletes the files under source (narrowed " +
		"by include/exclude) older than min_age. Unlike a sync from the local directory, an emptied or " +
		"lost local directory cannot delete the off-site copies, and the guard refuses to delete more " +
		"than max_delete_percent of them in one run.",
	Kind:    engine.KindDestructive,
	Outputs: append(append([]engine.Output(nil), rclone.StatsDocs...), rclone.GuardDocs...),
	Example: "source: offsite:backups/db\ninclude: [\"db_full_*\"]\nmin_age: 30d",
	Preview: func(env *engine.Env, p *RcloneDeleteParams) []string {
		return p.GuardedPreview(env.Secrets, p.args, p.Source, p.MaxDeletePercent)
	},
	Run: func(ctx context.Context, env *engine.Env, p *RcloneDeleteParams) (engine.Outputs, error) {
		return rclone.New(env, p.Options).GuardedRun(ctx, p.Options, "delete", p.args, p.Source, p.MaxDeletePercent)
	},
}

func (p *RcloneDeleteParams) args(dryRun bool, maxDelete int64) []string {
	extra := append(append([]string(nil), rclone.JSONLogFlags...), "--min-age", rcloneAge(p.MinAge))
	if dryRun {
		extra = append(extra, "--dry-run")
	}
	if maxDelete >= 0 {
		extra = append(extra, "--max-delete", fmt.Sprint(maxDelete))
	}
	return p.Args("delete", extra, p.Source)
}

// rcloneAge renders a duration as rclone reads it (seconds: exact).
func rcloneAge(d engine.Duration) string {
	return fmt.Sprintf("%ds", int64(time.Duration(d)/time.Second))
}
