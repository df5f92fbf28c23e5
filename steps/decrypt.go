package steps

import (
	"context"
	"fmt"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// PlainOutput is where decrypt and decompress write their result.
type PlainOutput struct {
	Output    string `yaml:"output" required:"true" doc:"file to write (temporary name, then renamed; + <output>.sha256)"`
	Overwrite bool   `yaml:"overwrite" doc:"replace an existing file of the same name"`
}

func (o PlainOutput) writeOptions() artifact.WriteOptions {
	return artifact.WriteOptions{Output: o.Output, Compress: "none", Overwrite: o.Overwrite}
}

// DecryptParams are the params of the decrypt step.
type DecryptParams struct {
	Input       string `yaml:"input" required:"true" doc:"age-encrypted file (binary or armored; made by planrun or the age CLI)"`
	PlainOutput `yaml:",inline"`

	artifact.ReadOptions `yaml:",inline"`
}

// Decrypt removes the age layer of a file, keeping any compression inside.
var Decrypt = engine.Def[DecryptParams]{
	Name:    "decrypt",
	Summary: "decrypt an age-encrypted file (the compression inside, if any, is kept)",
	Kind:    engine.KindOther,
	Outputs: artifact.StandardOutputs,
	Example: "input: /backups/pg/app.dump.zst.age\noutput: /tmp/restore/app.dump.zst\nidentity_file: /etc/planrun/age.key",
	Preview: func(env *engine.Env, p *DecryptParams) []string {
		return []string{"read: " + p.Input + " (decrypt)", "write: " + p.writeOptions().Describe()}
	},
	Run: func(ctx context.Context, env *engine.Env, p *DecryptParams) (engine.Outputs, error) {
		res, err := transformChecked(ctx, env, p.Input, p.ReadOptions, artifact.DecryptOnly, p.writeOptions(),
			func(r *artifact.Reader) error {
				if !r.Layers.Encrypted {
					return fmt.Errorf("%s is not age-encrypted", p.Input)
				}
				return nil
			})
		if err != nil {
			return nil, err
		}
		return res.Outputs(), nil
	},
}

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
	Outputs: artifact.StandardOutputs,
	Example: "input: /backups/pg/app.sql.zst\noutput: /tmp/restore/app.sql",
	Preview: func(env *engine.Env, p *DecompressParams) []string {
		return []string{"read: " + p.Input + " (decrypt + decompress)", "write: " + p.writeOptions().Describe()}
	},
	Run: func(ctx context.Context, env *engine.Env, p *DecompressParams) (engine.Outputs, error) {
		res, err := transform(ctx, env, p.Input, p.ReadOptions, artifact.Plain, p.writeOptions())
		if err != nil {
			return nil, err
		}
		return res.Outputs(), nil
	},
}
