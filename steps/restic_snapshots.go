package steps

import (
	"context"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/restic"
)

// ResticSnapshotsParams are the params of restic-snapshots.
type ResticSnapshotsParams struct {
	restic.Repo   `yaml:",inline"`
	restic.Filter `yaml:",inline"`
}

// ResticSnapshots lists snapshots.
var ResticSnapshots = engine.Def[ResticSnapshotsParams]{
	Name:    "restic-snapshots",
	Summary: "list a restic repository's snapshots (outputs for later steps and assertions)",
	Kind:    engine.KindOther,
	Outputs: []engine.Output{
		{Name: "snapshots", Doc: "list of {id, short_id, time, host, paths, tags}"},
		{Name: "count", Doc: "number of snapshots"},
		{Name: "latest_id", Doc: "id of the newest snapshot"},
	},
	Example: "repository: /backups/restic\npassword_file: /etc/planrun/restic.pass\ntags: [daily]",
	Preview: func(env *engine.Env, p *ResticSnapshotsParams) []string {
		return []string{"run: " + p.CommandLine(env.Secrets, p.Filter.Args([]string{"snapshots", "--json"})...)}
	},
	Run: func(ctx context.Context, env *engine.Env, p *ResticSnapshotsParams) (engine.Outputs, error) {
		c, err := restic.New(env, p.Repo)
		if err != nil {
			return nil, err
		}
		snaps, err := c.Snapshots(ctx, p.Filter.Args(nil)...)
		if err != nil {
			return nil, err
		}
		list := make([]any, 0, len(snaps))
		for _, s := range snaps {
			list = append(list, s.Output())
		}
		return engine.Outputs{"snapshots": list, "count": len(snaps), "latest_id": restic.Newest(snaps).ID}, nil
	},
}
