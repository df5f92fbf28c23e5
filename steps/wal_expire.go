package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/walarchive"
)

// WALExpireParams are the params of wal-expire.
type WALExpireParams struct {
	ArchiveConfig string          `yaml:"archive_config" required:"true" doc:"WAL archive config file (the one archive_command's planrun wal-push --config names)"`
	Keep          int             `yaml:"keep" min:"0" doc:"keep the newest n complete base backups"`
	KeepFor       engine.Duration `yaml:"keep_for" doc:"also keep base backups started within this long (e.g. 14d)"`
	DryRun        bool            `yaml:"dry_run" doc:"only report what would be removed"`
}

// Validate rejects an empty policy given literally; ${{ }} values are
// checked again in Run.
func (p *WALExpireParams) Validate() error {
	if p.Keep < 0 || p.KeepFor < 0 {
		return errors.New("keep and keep_for must not be negative")
	}
	return nil
}

// WALExpire applies base backup retention to the WAL archive.
var WALExpire = engine.Def[WALExpireParams]{
	Name:    "wal-expire",
	Summary: "remove old base backups and the WAL only they need; never WAL a kept backup needs",
	Doc: "Keeps the newest keep base backups and those started within keep_for (at least one rule " +
		"must be set; with keep_for alone the newest backup always stays), removes the other " +
		"complete backups and every WAL file before the oldest kept backup's first segment. " +
		"History files and incomplete backups (no backup.json: perhaps still being written) stay. " +
		"It does not run after a failed backup step of the same run.",
	Kind: engine.KindDestructive,
	Outputs: []engine.Output{
		{Name: "removed_backups", Doc: "labels of the removed base backups (list)"},
		{Name: "removed_wal", Doc: "archive-relative paths of the removed WAL files (list)"},
		{Name: "removed_wal_count", Doc: "number of removed WAL files"},
		{Name: "kept", Doc: "labels of the kept base backups (list)"},
	},
	Example: "archive_config: /etc/planrun/wal.yaml\nkeep: 7\nkeep_for: 14d",
	Preview: func(env *engine.Env, p *WALExpireParams) []string {
		rule := []string{}
		if p.Keep > 0 {
			rule = append(rule, fmt.Sprintf("the newest %d", p.Keep))
		}
		if p.KeepFor > 0 {
			rule = append(rule, "those within "+time.Duration(p.KeepFor).String())
		}
		if len(rule) == 0 {
			return []string{"refuse: no keep rule (keep, keep_for)"}
		}
		return []string{"delete: base backups of " + p.ArchiveConfig + " except " + strings.Join(rule, " and ") +
			", and the WAL before the oldest kept one"}
	},
	Run: func(ctx context.Context, env *engine.Env, p *WALExpireParams) (engine.Outputs, error) {
		cfg, err := walarchive.LoadConfig(p.ArchiveConfig)
		if err != nil {
			return nil, fmt.Errorf("archive_config: %w", err)
		}
		res, err := walarchive.Expire(ctx, cfg, p.Keep, time.Duration(p.KeepFor), p.DryRun)
		out := engine.Outputs{}
		if res != nil {
			out = engine.Outputs{"removed_backups": nonNil(res.Backups), "removed_wal": nonNil(res.WALFiles),
				"removed_wal_count": len(res.WALFiles), "kept": nonNil(res.Kept)}
			verb := "removed"
			if p.DryRun {
				verb = "would remove"
			}
			env.Log.Info("wal-expire "+verb, "backups", len(res.Backups), "wal_files", len(res.WALFiles), "kept", strings.Join(res.Kept, ","))
		}
		return out, err
	},
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
