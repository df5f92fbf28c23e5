package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/retention"
)

// PruneParams are the params of the prune step.
type PruneParams struct {
	Dir         string          `yaml:"dir" required:"true" doc:"directory holding the artifacts"`
	Pattern     string          `yaml:"pattern" required:"true" doc:"glob of artifact names inside dir (\"mongo-*.archive.gz\"); no / allowed"`
	KeepLast    int             `yaml:"keep_last" doc:"keep the n newest artifacts"`
	KeepHourly  int             `yaml:"keep_hourly" doc:"keep the newest artifact of each of the last n hours that have one"`
	KeepDaily   int             `yaml:"keep_daily" doc:"keep the newest artifact of each of the last n days that have one"`
	KeepWeekly  int             `yaml:"keep_weekly" doc:"keep the newest artifact of each of the last n ISO weeks that have one"`
	KeepMonthly int             `yaml:"keep_monthly" doc:"keep the newest artifact of each of the last n months that have one"`
	KeepYearly  int             `yaml:"keep_yearly" doc:"keep the newest artifact of each of the last n years that have one"`
	MaxAge      engine.Duration `yaml:"max_age" doc:"delete artifacts older than this (e.g. 30d), whatever the keep_* rules say; alone, keeps everything younger"`
	TimeFrom    string          `yaml:"time_from" enum:"auto|name|mtime" default:"auto" doc:"artifact time: the timestamp in the file name (20240102T030405Z, 2024-01-02_03-04 ...), the mtime, or auto (name, else mtime)"`
	DryRun      bool            `yaml:"dry_run" doc:"only list what would be kept and deleted, and why"`
}

// Validate checks the pattern stays inside dir and that some rule is set.
func (p *PruneParams) Validate() error {
	if strings.ContainsRune(p.Pattern, '/') || p.Pattern == ".." || p.Pattern == "." {
		return fmt.Errorf("pattern %q: must match names inside dir only (no /); put the directory in dir", p.Pattern)
	}
	if _, err := filepath.Match(p.Pattern, ""); err != nil {
		return fmt.Errorf("pattern %q: %w", p.Pattern, err)
	}
	for name, n := range map[string]int{"keep_last": p.KeepLast, "keep_hourly": p.KeepHourly, "keep_daily": p.KeepDaily,
		"keep_weekly": p.KeepWeekly, "keep_monthly": p.KeepMonthly, "keep_yearly": p.KeepYearly} {
		if n < -1 {
			return fmt.Errorf("%s: must be a count (or -1 for all), got %d", name, n)
		}
	}
	if p.MaxAge < 0 {
		return errors.New("max_age must be positive")
	}
	return nil
}

// errNoRule is checked when the values are known (counts may come from ${{ }}).
var errNoRule = errors.New("prune: give at least one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, max_age")

func (p *PruneParams) policy() retention.Policy {
	return retention.Policy{Last: p.KeepLast, Hourly: p.KeepHourly, Daily: p.KeepDaily, Weekly: p.KeepWeekly,
		Monthly: p.KeepMonthly, Yearly: p.KeepYearly, MaxAge: time.Duration(p.MaxAge)}
}

// pruneNow is the clock; tests replace it.
var pruneNow = time.Now

// plan lists the artifacts and decides; it only reads the directory.
func (p *PruneParams) plan() ([]retention.Decision, error) {
	if p.policy().Empty() {
		return nil, errNoRule
	}
	entries, err := os.ReadDir(p.Dir)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	var items []retention.Item
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".sha256") {
			continue // temporary files and sidecars go with their artifact
		}
		if ok, _ := filepath.Match(p.Pattern, name); !ok || !e.Type().IsRegular() {
			continue
		}
		var t time.Time
		stamp, found := retention.TimeFromName(name, time.Local)
		switch {
		case p.TimeFrom != "mtime" && found:
			t = stamp
		case p.TimeFrom == "name":
			return nil, fmt.Errorf("prune: %s has no timestamp in its name (time_from: name)", filepath.Join(p.Dir, name))
		default:
			fi, err := e.Info()
			if err != nil {
				return nil, fmt.Errorf("prune: %w", err)
			}
			t = fi.ModTime()
		}
		items = append(items, retention.Item{Name: name, Time: t})
	}
	return retention.Apply(items, p.policy(), pruneNow()), nil
}

func decisionLine(dir string, d retention.Decision) string {
	verb := "delete"
	if d.Keep {
		verb = "keep"
	}
	return fmt.Sprintf("%s: %s (%s; %s)", verb, filepath.Join(dir, d.Name), d.Time.Format(time.RFC3339), strings.Join(d.Reasons, ", "))
}

// Prune applies a GFS retention policy to local artifacts.
var Prune = engine.Def[PruneParams]{
	Name:    "prune",
	Summary: "delete old local artifacts by a keep_last/daily/weekly/monthly/yearly policy (restic forget semantics) and/or max_age",
	Doc: "Never deletes the newest matching artifact; removes <file>.sha256 with its file. " +
		"Dry-run (or dry_run: true) lists every file with keep/delete and the reason.",
	Kind: engine.KindDestructive,
	Outputs: []engine.Output{
		{Name: "kept", Doc: "number of artifacts kept"},
		{Name: "deleted", Doc: "number of artifacts deleted (or that would be, with dry_run)"},
		{Name: "deleted_files", Doc: "paths deleted (or that would be)"},
		{Name: "summary", Doc: "one keep/delete line per artifact with the reasons"},
	},
	Example: "dir: /backups/configs\npattern: \"configs-*.tar.zst\"\nkeep_daily: 7\nkeep_weekly: 4\nkeep_monthly: 6",
	Preview: func(env *engine.Env, p *PruneParams) []string {
		ds, err := p.plan()
		if err != nil {
			return []string{fmt.Sprintf("read: %s (%s): %v", p.Dir, p.Pattern, err)}
		}
		lines := []string{fmt.Sprintf("read: %s (%s)", p.Dir, p.Pattern)}
		for _, d := range ds {
			lines = append(lines, decisionLine(p.Dir, d))
		}
		return lines
	},
	Run: func(ctx context.Context, env *engine.Env, p *PruneParams) (engine.Outputs, error) {
		ds, err := p.plan()
		if err != nil {
			return nil, err
		}
		var lines, deleted []string
		kept := 0
		for _, d := range ds {
			lines = append(lines, decisionLine(p.Dir, d))
			if d.Keep {
				kept++
				continue
			}
			deleted = append(deleted, filepath.Join(p.Dir, d.Name))
		}
		out := engine.Outputs{"kept": kept, "deleted": len(deleted), "deleted_files": deleted, "summary": strings.Join(lines, "\n")}
		if p.DryRun {
			env.Log.Info("prune dry run", "dir", p.Dir, "keep", kept, "delete", len(deleted))
			return out, nil
		}
		for i, f := range deleted {
			if err := ctx.Err(); err != nil {
				out["deleted"], out["deleted_files"] = i, deleted[:i]
				return out, err
			}
			if err := os.Remove(f); err != nil {
				out["deleted"], out["deleted_files"] = i, deleted[:i]
				return out, fmt.Errorf("prune: %w", err)
			}
			if err := os.Remove(f + ".sha256"); err != nil && !errors.Is(err, os.ErrNotExist) {
				return out, fmt.Errorf("prune: %w", err)
			}
			env.Log.Info("deleted", "path", f)
		}
		if len(deleted) > 0 {
			if err := artifact.SyncDir(p.Dir); err != nil {
				return out, err
			}
		}
		return out, nil
	},
}
