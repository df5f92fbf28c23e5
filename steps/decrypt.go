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
		res, err := transformChecked(ctx, env, p.Input, p.ReadOptions, mode, p.writeOptions(),
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
		res, err := transform(ctx, env, p.Input, p.ReadOptions, artifact.Plain, p.writeOptions())
		if err != nil {
			return nil, err
		}
		return plainResult(res), nil
	},
}

var plainOutputs = append(append([]engine.Output(nil), artifact.StandardOutputs...),
	engine.Output{Name: "counts", Doc: "bytes: the size of the plain file, as encrypt and compress count their input"})

func plainResult(res artifact.Result) engine.Outputs {
	out := res.Outputs()
	out["counts"] = map[string]int64{"bytes": res.Size}
	return out
}
