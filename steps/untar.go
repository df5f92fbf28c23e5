package steps

import (
	"context"
	"fmt"
	"io"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/tarball"
)

// UntarParams are the params of the untar step.
type UntarParams struct {
	Input           string `yaml:"input" required:"true" doc:"tar artifact (plain, zstd, gzip, age-encrypted: detected by content)"`
	Target          string `yaml:"target" required:"true" doc:"directory to extract into (created 0700 if missing)"`
	StripComponents int    `yaml:"strip_components" doc:"drop this many leading path components from every entry"`
	Overwrite       bool   `yaml:"overwrite" doc:"replace files that already exist in target (directories are always merged)"`
	PreserveOwner   bool   `yaml:"preserve_owner" default:"true" doc:"restore owners (uid/gid) when running as root"`
	CreateSpecial   bool   `yaml:"create_special" doc:"create FIFOs and device nodes (devices need root); otherwise they are skipped with a warning and counted in special_skipped"`

	artifact.ReadOptions `yaml:",inline"`
}

// Untar extracts a tar artifact, decrypting and decompressing on the fly.
var Untar = engine.Def[UntarParams]{
	Name:    "untar",
	Summary: "extract a tar artifact (decrypting and decompressing on the fly) into a directory",
	Doc: "Entries that would land outside target (../ names, absolute names, writes through " +
		"symlinks) stop the step with an error; nothing is ever written outside target. Sparse " +
		"files (GNU tar --sparse, old GNU and PAX formats) are extracted with their holes; FIFOs and " +
		"device nodes are created with create_special: true, else skipped with a warning and " +
		"counted; an entry of any other unknown type fails the step. Files are written in place " +
		"(a failed step can leave a partial tree behind) and flushed with one syncfs at the end.",
	Kind: engine.KindOther,
	Outputs: []engine.Output{
		{Name: "target", Doc: "the directory extracted into"},
		{Name: "files", Doc: "regular files extracted"},
		{Name: "bytes", Doc: "file content bytes extracted"},
		{Name: "special_skipped", Doc: "FIFOs and device nodes not created (create_special: false)"},
		{Name: "counts", Doc: "files, dirs, symlinks, bytes, special (FIFOs and devices, created or skipped) extracted: the tar step's counts"},
	},
	Example: "input: /backups/configs/configs-20240101T000000Z.tar.zst\ntarget: /tmp/restore\nidentity_file: /etc/planrun/age.key",
	Preview: func(env *engine.Env, p *UntarParams) []string {
		return []string{"read: " + p.Input, "write: files under " + p.Target}
	},
	Run: func(ctx context.Context, env *engine.Env, p *UntarParams) (engine.Outputs, error) {
		r, err := artifact.OpenWith(ctx, env, p.Input, p.ReadOptions, artifact.Plain|artifact.VerifySidecar)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		st, err := tarball.Extract(ctx, r, p.Target, tarball.ExtractOptions{
			StripComponents: p.StripComponents, PreserveOwner: p.PreserveOwner,
			Overwrite: p.Overwrite, CreateSpecial: p.CreateSpecial, Log: env.Log,
		})
		if err != nil {
			return nil, fmt.Errorf("untar %s: %w", p.Input, err)
		}
		// Read to the end so a damaged compressed or encrypted tail
		// (checksums, the final age MAC) cannot pass unnoticed.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return nil, fmt.Errorf("untar %s: after the archive: %w", p.Input, err)
		}
		if env.Stats != nil {
			env.Stats.BytesOut.Add(st.Bytes)
		}
		if st.Skipped > 0 {
			env.Log.Warn("special files were not created", "count", st.Skipped, "hint", "create_special: true")
		}
		return engine.Outputs{"target": p.Target, "files": st.Files, "bytes": st.Bytes,
			"special_skipped": st.Skipped, "counts": tarCounts(st)}, nil
	},
}
