package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// DiskCheckParams are the params of the disk-check step.
type DiskCheckParams struct {
	Path           string      `yaml:"path" required:"true" doc:"any path on the filesystem to check"`
	MinFreePercent float64     `yaml:"min_free_percent" doc:"fail when less than this percentage is free (as df computes it: avail / (used + avail))"`
	MinFree        engine.Size `yaml:"min_free" doc:"fail when less than this is available (e.g. 10GiB)"`
	WarnOnly       bool        `yaml:"warn_only" doc:"log a warning instead of failing"`
}

// Validate requires a threshold.
func (p *DiskCheckParams) Validate() error {
	if p.MinFreePercent < 0 || p.MinFreePercent > 100 {
		return fmt.Errorf("min_free_percent: must be between 0 and 100, got %g", p.MinFreePercent)
	}
	if p.MinFreePercent == 0 && p.MinFree <= 0 {
		return errors.New("give min_free_percent and/or min_free")
	}
	return nil
}

// DiskCheck fails (or warns) when a filesystem is low on space.
var DiskCheck = engine.Def[DiskCheckParams]{
	Name:    "disk-check",
	Summary: "fail (or warn) when free space on a filesystem is below a threshold",
	Kind:    engine.KindOther,
	Outputs: []engine.Output{
		{Name: "free_bytes", Doc: "bytes available to unprivileged users"},
		{Name: "total_bytes", Doc: "filesystem size in bytes"},
		{Name: "free_percent", Doc: "available percentage, as 100 - df's Use%"},
		{Name: "ok", Doc: "whether the thresholds are met"},
	},
	Example: "path: /backups\nmin_free_percent: 20\nmin_free: 10GiB",
	Preview: func(env *engine.Env, p *DiskCheckParams) []string {
		return []string{"read: free space of " + p.Path}
	},
	Run: func(ctx context.Context, env *engine.Env, p *DiskCheckParams) (engine.Outputs, error) {
		// A backup root that does not exist yet (first run) will be created
		// on the filesystem of its nearest existing ancestor: measure that.
		at := filepath.Clean(p.Path)
		for {
			if _, err := os.Stat(at); err == nil || filepath.Dir(at) == at {
				break
			}
			at = filepath.Dir(at)
		}
		var fs syscall.Statfs_t
		if err := syscall.Statfs(at, &fs); err != nil {
			return nil, fmt.Errorf("disk-check %s: %w", p.Path, err)
		}
		bs := uint64(fs.Bsize)
		avail, total := fs.Bavail*bs, fs.Blocks*bs
		used := (fs.Blocks - fs.Bfree) * bs
		pct := 100.0
		if used+avail > 0 {
			pct = 100 * float64(avail) / float64(used+avail)
		}
		out := engine.Outputs{"free_bytes": int64(avail), "total_bytes": int64(total), "free_percent": pct}
		var problems []string
		if p.MinFreePercent > 0 && pct < p.MinFreePercent {
			problems = append(problems, fmt.Sprintf("%.1f%% free, below min_free_percent %g%%", pct, p.MinFreePercent))
		}
		if p.MinFree > 0 && int64(avail) < int64(p.MinFree) {
			problems = append(problems, fmt.Sprintf("%s free, below min_free %s", artifact.HumanBytes(int64(avail)), artifact.HumanBytes(int64(p.MinFree))))
		}
		out["ok"] = len(problems) == 0
		if len(problems) == 0 {
			env.Log.Info("disk space ok", "path", p.Path, "free", artifact.HumanBytes(int64(avail)), "free_percent", fmt.Sprintf("%.1f", pct))
			return out, nil
		}
		msg := fmt.Sprintf("disk-check %s: %s", p.Path, joinAnd(problems))
		if p.WarnOnly {
			env.Log.Warn(msg)
			return out, nil
		}
		return out, errors.New(msg)
	},
}

func joinAnd(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " and "
		}
		out += x
	}
	return out
}
