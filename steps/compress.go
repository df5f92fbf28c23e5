package steps

import (
	"context"
	"fmt"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// CompressParams are the params of the compress step.
type CompressParams struct {
	Rewrite `yaml:",inline"`
}

// Validate checks the write options.
func (p *CompressParams) Validate() error { return p.WriteOptions.Validate() }

// Compress compresses (and optionally encrypts) an existing file.
var Compress = engine.Def[CompressParams]{
	Name:    "compress",
	Summary: "compress an existing file (zstd or gzip, optionally age-encrypted) into a new artifact",
	Kind:    engine.KindBackup,
	Inverse: &engine.Inverse{Type: "decompress", Targets: []string{"output", "overwrite"}, With: func(a engine.ArtifactRecord, t engine.RestoreTarget) (map[string]any, error) {
		if a.Compression == "none" {
			// decompress would also unpack an input that was compressed itself.
			return nil, fmt.Errorf("%s is not compressed (compress: none): restore it with decrypt", a.Path)
		}
		return fileInverse(a, t)
	}},
	Outputs: artifact.StandardOutputs,
	Example: "input: /backups/legacy/db.sql\noutput: /backups/legacy/db.sql.zst\nremove_input: true",
	Preview: func(env *engine.Env, p *CompressParams) []string { return p.preview() },
	Run: func(ctx context.Context, env *engine.Env, p *CompressParams) (engine.Outputs, error) {
		return p.run(ctx, env)
	},
}
