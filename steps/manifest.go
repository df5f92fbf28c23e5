package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// ManifestParams are the params of the manifest step.
type ManifestParams struct {
	Output    string `yaml:"output" required:"true" doc:"path of the manifest (JSON); put it inside the directory the off-site steps copy, so it travels with the artifacts"`
	Overwrite bool   `yaml:"overwrite" doc:"replace an existing manifest of the same name"`
}

// Manifest writes the run's manifest so far as an artifact of its own.
var Manifest = engine.Def[ManifestParams]{
	Name:    "manifest",
	Summary: "write the run's manifest (every artifact so far: checksums, encryption, sources, counts) as a JSON artifact",
	Doc: `Lists every artifact the earlier steps of this run wrote: path (and the path
relative to the manifest, so a copy restored elsewhere still finds them), size,
sha256, compression, encryption recipients (public keys only), the source it came
from and the counts measured at backup time. Place it before the restic/rclone
steps so it travels off-site; 'planrun restore --manifest FILE' and 'planrun
drill --manifest FILE' start from it on a fresh host. The run store keeps the
same manifest ('planrun show RUN --json'). Written like any artifact: temporary
name, fsync, rename, .sha256 sidecar; never encrypted (it holds no secret) so a
fresh host can read it before it has any key.`,
	Kind:    engine.KindOther,
	Outputs: append([]engine.Output(nil), artifact.StandardOutputs[:3]...),
	Example: "output: /backups/manifests/kaleem-daily-${{ run.started.Format(\"20060102T150405Z\") }}.manifest.json",
	Preview: func(env *engine.Env, p *ManifestParams) []string {
		return []string{"write: " + p.Output + " (the run's manifest, JSON; + .sha256)"}
	},
	Run: func(ctx context.Context, env *engine.Env, p *ManifestParams) (engine.Outputs, error) {
		m := env.RunInfo()
		dir, err := filepath.Abs(filepath.Dir(p.Output))
		if err != nil {
			return nil, err
		}
		for i := range m.Artifacts {
			a := &m.Artifacts[i]
			if abs, err := filepath.Abs(a.Path); err == nil {
				if rel, err := filepath.Rel(dir, abs); err == nil {
					a.RelPath = rel
				}
			}
		}
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		w, err := artifact.Create(ctx, env, artifact.WriteOptions{Output: p.Output, Compress: "none", Overwrite: p.Overwrite})
		if err != nil {
			return nil, err
		}
		defer w.Abort()
		if _, err := w.Write(append(b, '\n')); err != nil {
			return nil, err
		}
		res, err := w.Commit()
		if err != nil {
			return nil, err
		}
		res.Record.Source = map[string]string{"kind": "manifest", "run_id": m.RunID}
		res.Record.Counts = map[string]int64{"artifacts": int64(len(m.Artifacts))}
		out := res.Outputs()
		delete(out, "bytes_in")
		return out, nil
	},
}
