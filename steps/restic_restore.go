package steps

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/argv"
	"github.com/planrun/planrun/steps/internal/restic"
)

// ResticRestoreParams are the params of restic-restore.
type ResticRestoreParams struct {
	restic.Repo `yaml:",inline"`
	restic.Pick `yaml:",inline"`
	Target      string   `yaml:"target" required:"true" doc:"directory to restore into; restic recreates the snapshot's absolute paths under it (\"/\" restores in place)"`
	Include     []string `yaml:"include" doc:"include patterns"`
	Exclude     []string `yaml:"exclude" doc:"exclude patterns"`
	Verify      bool     `yaml:"verify" doc:"read the restored files back and compare them with the snapshot (restic restore --verify)"`
}

// Validate keeps a relative target from depending on the working
// directory (an expression is checked once interpolated, before Run).
func (p *ResticRestoreParams) Validate() error {
	if p.Target != "" && !strings.Contains(p.Target, "${{") && !filepath.IsAbs(p.Target) {
		return fmt.Errorf("target %q must be an absolute path", p.Target)
	}
	return nil
}

// ResticRestore restores a snapshot into a directory.
var ResticRestore = engine.Def[ResticRestoreParams]{
	Name:    "restic-restore",
	Summary: "restic restore of a snapshot into a directory; counts files, dirs and bytes of what it restored",
	Doc: "Restores a snapshot under target (restic recreates the snapshot's absolute paths there) " +
		"and measures the restored tree the way restic-backup records the snapshot (regular files, " +
		"directories including the parents of the backed-up paths, bytes), so a drill compares them " +
		"with the manifest. restic authenticates every blob it reads: a damaged repository fails the " +
		"restore. planrun restore uses it as the inverse of restic-backup: into the scratch directory " +
		"(with verify) for a drill, else only into the target the plan's restore section names.",
	Kind: engine.KindOther,
	Outputs: []engine.Output{
		{Name: "snapshot", Doc: "the id of the snapshot restored"},
		{Name: "target", Doc: "the directory restored into"},
		{Name: "counts", Doc: "files, dirs and bytes restored (of the whole snapshot unless include/exclude narrow it)"},
	},
	Example: "repository: /backups/restic\npassword_file: /etc/planrun/restic.pass\nsnapshot: latest\ntags: [daily]\ntarget: /restore",
	Preview: func(env *engine.Env, p *ResticRestoreParams) []string {
		return []string{"run: " + p.CommandLine(env.Secrets, p.args(p.Snapshot)...)}
	},
	Run: func(ctx context.Context, env *engine.Env, p *ResticRestoreParams) (engine.Outputs, error) {
		c, err := restic.New(env, p.Repo)
		if err != nil {
			return nil, err
		}
		// Resolve "latest" once, so what is restored is what is measured.
		snap, err := p.Resolve(ctx, c)
		if err != nil {
			return nil, err
		}
		if _, _, err := c.Output(ctx, p.args(snap.ID)...); err != nil {
			return nil, fmt.Errorf("restic restore %s: %w", snap.ShortID, err)
		}
		out := engine.Outputs{"snapshot": snap.ID, "target": p.Target}
		counts, err := restic.MeasureRestored(p.Target, snap.Paths)
		if err != nil {
			if len(p.Include)+len(p.Exclude) == 0 {
				return out, errors.New("restic restore: " + err.Error())
			}
			return out, nil // a narrowed restore need not hold every path
		}
		out["counts"] = counts
		env.Log.Info("restic snapshot restored", "snapshot", snap.ShortID, "target", p.Target,
			"files", counts["files"], "bytes", counts["bytes"])
		return out, nil
	},
}

func (p *ResticRestoreParams) args(snapshot string) []string {
	args := []string{"restore", snapshot, "--target", p.Target}
	if p.Verify {
		args = append(args, "--verify")
	}
	args = argv.AppendEach(args, "--include", p.Include)
	args = argv.AppendEach(args, "--exclude", p.Exclude)
	if snapshot == "latest" {
		args = p.Filter.Args(args)
	}
	return args
}
