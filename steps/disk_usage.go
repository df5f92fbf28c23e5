package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// DiskUsageParams are the params of the disk-usage step.
type DiskUsageParams struct {
	Path     string      `yaml:"path" required:"true" doc:"the directory to measure (a backup root)"`
	MaxTotal engine.Size `yaml:"max_total" required:"true" doc:"fail when the directory uses more than this (e.g. 10GiB)"`
	WarnOnly bool        `yaml:"warn_only" doc:"log a warning instead of failing"`
}

// Validate requires a positive limit.
func (p *DiskUsageParams) Validate() error {
	if p.MaxTotal <= 0 {
		return errors.New("max_total: must be positive")
	}
	return nil
}

// DiskUsage is du for a backup root: the ChitLaq "alert when the backup
// directory passes 10 GB", with the total in the run store and metrics.
var DiskUsage = engine.Def[DiskUsageParams]{
	Name:    "disk-usage",
	Summary: "measure a directory like du (space used, hard links once) and fail (or warn) above max_total",
	Doc: `The total is the space the files occupy on disk (allocated blocks, as du
counts them; a hard-linked file once), so sparse files count what they use.
Subdirectories on other filesystems are measured too. An unreadable
subdirectory fails the step (the total would be too low to trust). The
total is exported by planrun metrics as planrun_disk_usage_bytes.`,
	Kind: engine.KindOther,
	Outputs: []engine.Output{
		{Name: "total_bytes", Doc: "space used on disk (du)"},
		{Name: "apparent_bytes", Doc: "sum of the file sizes (du --apparent-size)"},
		{Name: "files", Doc: "regular files counted"},
		{Name: "max_total_bytes", Doc: "the limit, in bytes"},
		{Name: "ok", Doc: "whether the total is within max_total"},
	},
	Example: "path: /backups\nmax_total: 10GiB\nwarn_only: true",
	Preview: func(env *engine.Env, p *DiskUsageParams) []string {
		return []string{"read: disk usage of " + p.Path}
	},
	Run: func(ctx context.Context, env *engine.Env, p *DiskUsageParams) (engine.Outputs, error) {
		u, err := diskUsage(ctx, p.Path)
		if err != nil {
			return nil, fmt.Errorf("disk-usage %s: %w", p.Path, err)
		}
		ok := u.used <= int64(p.MaxTotal)
		out := engine.Outputs{"total_bytes": u.used, "apparent_bytes": u.apparent, "files": u.files,
			"max_total_bytes": int64(p.MaxTotal), "ok": ok}
		if ok {
			env.Log.Info("disk usage ok", "path", p.Path, "total", artifact.HumanBytes(u.used), "max_total", artifact.HumanBytes(int64(p.MaxTotal)))
			return out, nil
		}
		msg := fmt.Sprintf("disk-usage %s: %s used, above max_total %s", p.Path, artifact.HumanBytes(u.used), artifact.HumanBytes(int64(p.MaxTotal)))
		if p.WarnOnly {
			env.Log.Warn(msg)
			return out, nil
		}
		return out, errors.New(msg)
	},
}

type usage struct {
	used, apparent, files int64
}

// diskUsage walks root as du does: allocated blocks of every file and
// directory, each inode once.
func diskUsage(ctx context.Context, root string) (usage, error) {
	var u usage
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walk (a rotation in progress)
		}
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no inode information", path)
		}
		if st.Nlink > 1 && !fi.IsDir() {
			k := inode{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		u.used += st.Blocks * 512 // st_blocks counts 512-byte units (stat(2))
		if fi.Mode().IsRegular() {
			u.apparent += fi.Size()
			u.files++
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Lstat(root); serr != nil {
			return u, fmt.Errorf("no such directory")
		}
	}
	return u, err
}
