package steps

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/restic"
)

// ResticDumpParams are the params of restic-dump.
type ResticDumpParams struct {
	restic.Repo           `yaml:",inline"`
	restic.Pick           `yaml:",inline"`
	File                  string `yaml:"file" required:"true" doc:"absolute path of the file in the snapshot (a stdin backup's is /<stdin_filename>)"`
	artifact.WriteOptions `yaml:",inline"`
}

// Validate checks the file path and the artifact options.
func (p *ResticDumpParams) Validate() error {
	if !strings.Contains(p.File, "${{") && !path.IsAbs(p.File) {
		return fmt.Errorf("file %q: give the absolute path in the snapshot (e.g. /chitlaq.sql)", p.File)
	}
	return p.WriteOptions.Validate()
}

// ResticDump writes one file of a snapshot as an artifact.
var ResticDump = engine.Def[ResticDumpParams]{
	Name:    "restic-dump",
	Summary: "stream one file of a restic snapshot into an artifact (compressed, encrypted), e.g. a dump for pg_restore",
	Doc: "Streams `restic dump` of one file through the artifact writer: compressed, encrypted when " +
		"encrypt is given, written under a temporary name and renamed when restic succeeded. With " +
		"encrypt the plaintext never touches the disk, and the artifact is then an input like any " +
		"other: pg_restore, mongorestore and untar decrypt and decompress it on the fly " +
		"(e.g. a plain SQL dump of a stdin backup replayed by pg_restore into psql). A failed or " +
		"cancelled dump leaves no artifact.",
	Kind: engine.KindOther,
	Outputs: append([]engine.Output{
		{Name: "snapshot", Doc: "the id of the snapshot read"},
	}, artifact.StandardOutputs...),
	Example: "repository: /backups/restic\npassword_file: /etc/planrun/restic.pass\ntags: [chitlaq]\nfile: /chitlaq.sql\n" +
		"output: /restore/chitlaq.sql.zst.age\nencrypt: {recipients_file: /etc/planrun/restore.agepub}",
	Preview: func(env *engine.Env, p *ResticDumpParams) []string {
		return []string{
			"run: " + p.CommandLine(env.Secrets, "snapshots", "--json") + " (resolve " + p.Snapshot + ")",
			"run: " + p.CommandLine(env.Secrets, "dump", p.Snapshot, p.File),
			"write: " + p.WriteOptions.Describe(),
		}
	},
	Run: func(ctx context.Context, env *engine.Env, p *ResticDumpParams) (engine.Outputs, error) {
		c, err := restic.New(env, p.Repo)
		if err != nil {
			return nil, err
		}
		snap, err := p.Resolve(ctx, c)
		if err != nil {
			return nil, err
		}
		w, err := artifact.Create(ctx, env, p.WriteOptions)
		if err != nil {
			return nil, err
		}
		defer w.Abort()
		if _, err := c.Run(ctx, []string{"dump", snap.ID, p.File}, nil, w); err != nil {
			return nil, fmt.Errorf("restic dump %s %s: %w", snap.ShortID, p.File, err)
		}
		res, err := w.Commit()
		if err != nil {
			return nil, err
		}
		if res.BytesIn == 0 {
			// restic dump of a directory prints a tar; of nothing, nothing.
			env.Log.Warn("restic dump wrote 0 bytes", "file", p.File)
		}
		res.Record.Source = map[string]string{"kind": "restic-dump", "repository": restic.Location(c.Repo),
			"snapshot": snap.ID, "file": p.File}
		out := res.Outputs()
		out["snapshot"] = snap.ID
		return out, nil
	},
}
