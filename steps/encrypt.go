package steps

import (
	"context"
	"errors"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// EncryptParams are the params of the encrypt step.
type EncryptParams struct {
	Rewrite `yaml:",inline"`
}

// Validate requires the encrypt block: this step exists to encrypt.
func (p *EncryptParams) Validate() error {
	if p.Encrypt == nil {
		return errors.New("missing required param \"encrypt\" (recipients, recipients_file or passphrase_file)")
	}
	return p.WriteOptions.Validate()
}

// Encrypt age-encrypts an existing file (compressing it first unless compress: none).
var Encrypt = engine.Def[EncryptParams]{
	Name:    "encrypt",
	Summary: "age-encrypt an existing file into a new artifact (compressing first unless compress: none)",
	Doc: "The output decrypts with `age -d -i KEY` (piped to `zstd -d` / `gzip -d` when compressed). " +
		"Use compress: none for input that is already compressed.",
	Kind: engine.KindBackup,
	Inverse: &engine.Inverse{Type: "decrypt", Targets: []string{"output", "overwrite"}, With: func(a engine.ArtifactRecord, t engine.RestoreTarget) (map[string]any, error) {
		w, err := fileInverse(a, t)
		if err == nil && a.Compression != "" && a.Compression != "none" {
			w["decompress"] = true // the layer encrypt added, not the input's own
		}
		return w, err
	}},
	Outputs: artifact.StandardOutputs,
	Example: "input: /backups/legacy/db.sql.gz\noutput: /backups/legacy/db.sql.gz.age\ncompress: none\n" +
		"encrypt: {recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]}\nremove_input: true",
	Preview: func(env *engine.Env, p *EncryptParams) []string { return p.preview() },
	Run: func(ctx context.Context, env *engine.Env, p *EncryptParams) (engine.Outputs, error) {
		return p.run(ctx, env)
	},
}
