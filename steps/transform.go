package steps

// What the whole-file steps share: encrypt and compress read a file and
// write it anew (Rewrite), decrypt and decompress write a plain file
// (PlainOutput), and the inverse of encrypt and compress (fileInverse).

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
	res, err := artifact.Transform(ctx, env, p.Input, artifact.ReadOptions{}, artifact.Raw, p.WriteOptions, nil)
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
		if err := artifact.RemoveInput(env.Log, p.Input); err != nil {
			return res.Outputs(), err
		}
	}
	return res.Outputs(), nil
}

// PlainOutput is where decrypt and decompress write their result.
type PlainOutput struct {
	Output    string `yaml:"output" required:"true" doc:"file to write (temporary name, then renamed; + <output>.sha256)"`
	Overwrite bool   `yaml:"overwrite" doc:"replace an existing file of the same name"`
}

func (o PlainOutput) writeOptions() artifact.WriteOptions {
	return artifact.WriteOptions{Output: o.Output, Compress: "none", Overwrite: o.Overwrite}
}

var plainOutputs = append(append([]engine.Output(nil), artifact.StandardOutputs...),
	engine.Output{Name: "counts", Doc: "bytes: the size of the plain file, as encrypt and compress count their input"})

func plainResult(res artifact.Result) engine.Outputs {
	out := res.Outputs()
	out["counts"] = map[string]int64{"bytes": res.Size}
	return out
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
	artifact.AddReadKeys(w, t)
	return w, nil
}
