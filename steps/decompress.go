package steps

import (
	"context"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// DecompressParams are the params of the decompress step.
type DecompressParams struct {
	Input       string `yaml:"input" required:"true" doc:"zstd or gzip file, possibly age-encrypted (detected by content)"`
	PlainOutput `yaml:",inline"`

	artifact.ReadOptions `yaml:",inline"`
}

// Decompress turns an artifact back into its plain content.
var Decompress = engine.Def[DecompressParams]{
	Name:    "decompress",
	Summary: "decrypt (if encrypted) and decompress an artifact into a plain file",
	Kind:    engine.KindOther,
	Outputs: plainOutputs,
	Example: "input: /backups/pg/app.sql.zst\noutput: /tmp/restore/app.sql",
	Preview: func(env *engine.Env, p *DecompressParams) []string {
		return []string{"read: " + p.Input + " (decrypt + decompress)", "write: " + p.writeOptions().Describe()}
	},
	Run: func(ctx context.Context, env *engine.Env, p *DecompressParams) (engine.Outputs, error) {
		res, err := artifact.Transform(ctx, env, p.Input, p.ReadOptions, artifact.Plain, p.writeOptions(), nil)
		if err != nil {
			return nil, err
		}
		return plainResult(res), nil
	},
}
