package steps

import (
	"context"
	"fmt"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// DecryptParams are the params of the decrypt step.
type DecryptParams struct {
	Input       string `yaml:"input" required:"true" doc:"age-encrypted file (binary or armored; made by planrun or the age CLI)"`
	Decompress  bool   `yaml:"decompress" doc:"also remove one zstd/gzip layer inside (what encrypt added unless compress: none)"`
	PlainOutput `yaml:",inline"`

	artifact.ReadOptions `yaml:",inline"`
}

// Decrypt removes the age layer of a file, keeping any compression inside.
var Decrypt = engine.Def[DecryptParams]{
	Name:    "decrypt",
	Summary: "decrypt an age-encrypted file (the compression inside, if any, is kept)",
	Kind:    engine.KindOther,
	Outputs: plainOutputs,
	Example: "input: /backups/pg/app.dump.zst.age\noutput: /tmp/restore/app.dump.zst\nidentity_file: /etc/planrun/age.key",
	Preview: func(env *engine.Env, p *DecryptParams) []string {
		return []string{"read: " + p.Input + " (decrypt)", "write: " + p.writeOptions().Describe()}
	},
	Run: func(ctx context.Context, env *engine.Env, p *DecryptParams) (engine.Outputs, error) {
		mode := artifact.DecryptOnly
		if p.Decompress {
			mode = artifact.Plain
		}
		res, err := artifact.Transform(ctx, env, p.Input, p.ReadOptions, mode, p.writeOptions(),
			func(r *artifact.Reader) error {
				if !r.Layers.Encrypted {
					return fmt.Errorf("%s is not age-encrypted", p.Input)
				}
				return nil
			})
		if err != nil {
			return nil, err
		}
		return plainResult(res), nil
	},
}
