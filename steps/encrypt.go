package steps

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// Rewrite is what encrypt and compress share: read an existing file,
// write it anew through the artifact writer, optionally remove the input.
type Rewrite struct {
	Input       string `yaml:"input" required:"true" doc:"existing file to read (e.g. a legacy plaintext dump)"`
	RemoveInput bool   `yaml:"remove_input" doc:"delete the input (and its .sha256) once the new artifact is committed"`

	artifact.WriteOptions `yaml:",inline"`
}

func (p *Rewrite) preview() []string {
	lines := []string{"read: " + p.Input, "write: " + p.WriteOptions.Describe()}
	if p.RemoveInput {
		lines = append(lines, "delete: "+p.Input+" (+ .sha256) after the write")
	}
	return lines
}

func (p *Rewrite) run(ctx context.Context, env *engine.Env) (engine.Outputs, error) {
	res, err := transform(ctx, env, p.Input, artifact.ReadOptions{}, artifact.Raw, p.WriteOptions)
	if err != nil {
		return nil, err
	}
	if res.Record != nil {
		input := p.Input
		if abs, err := filepath.Abs(input); err == nil {
			input = abs
		}
		res.Record.Source = map[string]string{"kind": "file", "input": input}
		res.Record.Counts = map[string]int64{"bytes": res.BytesIn}
	}
	if p.RemoveInput {
		if err := removeInput(env, p.Input); err != nil {
			return res.Outputs(), err
		}
	}
	return res.Outputs(), nil
}

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

// fileInverse restores the file encrypt or compress read: into the scratch
// directory under its own name for a drill, else to its original path
// (or the operator's directory). An existing file is not replaced unless
// the operator says overwrite.
func fileInverse(a engine.ArtifactRecord, t engine.RestoreTarget) (map[string]any, error) {
	input := a.Source["input"]
	name := filepath.Base(input)
	if input == "" {
		// Recorded before sources were: name it after the artifact.
		name = filepath.Base(a.Path)
		for _, ext := range []string{".age", ".zst", ".gz"} {
			name = strings.TrimSuffix(name, ext)
		}
	}
	w := map[string]any{"input": t.Input}
	switch {
	case t.Scratch && t.Dir == "":
		return nil, errors.New("scratch restore of a file needs a directory")
	case t.Scratch || t.Dir != "":
		w["output"] = filepath.Join(t.Dir, name)
	case input == "":
		return nil, fmt.Errorf("%s: the manifest does not record the input path; name a target directory", a.Path)
	default:
		w["output"] = input
	}
	readKeys(w, t)
	return w, nil
}
