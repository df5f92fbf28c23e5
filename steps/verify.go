package steps

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/tarball"
)

// VerifyParams are the params of the verify step.
type VerifyParams struct {
	Path    string `yaml:"path" required:"true" doc:"artifact file or glob (\"/backups/pg/*.dump.zst\"); .sha256 sidecars and temporary files are skipped"`
	Sidecar string `yaml:"sidecar" enum:"required|optional" default:"required" doc:"whether a missing <file>.sha256 is a failure"`

	artifact.ReadOptions `yaml:",inline"`
}

// Verify checks artifacts end to end without restoring them.
var Verify = engine.Def[VerifyParams]{
	Name:    "verify",
	Summary: "check artifacts: sha256 sidecar, decryption, decompression to the end, tar listing",
	Doc: "Reads each file once: the sha256 is computed while the stream is decrypted (given " +
		"identity_file or passphrase_file), decompressed to the end and, for tar archives, listed " +
		"entry by entry. Without a key an encrypted file is checked against its sidecar only.",
	Kind: engine.KindOther,
	Outputs: []engine.Output{
		{Name: "files", Doc: "number of files checked"},
		{Name: "failed", Doc: "number of files that failed"},
		{Name: "bytes", Doc: "bytes read from disk"},
		{Name: "summary", Doc: "one line per file: OK/FAILED, layers, details"},
	},
	Example: "path: /backups/configs/configs-*.tar.zst\nidentity_file: /etc/planrun/age.key",
	Preview: func(env *engine.Env, p *VerifyParams) []string {
		return []string{"read: " + p.Path + " (verify)"}
	},
	Run: func(ctx context.Context, env *engine.Env, p *VerifyParams) (engine.Outputs, error) {
		files, err := artifactGlob(p.Path)
		if err != nil {
			return nil, err
		}
		var lines []string
		var failed int
		var total int64
		for _, f := range files {
			line, n, err := verifyOne(ctx, env, f, p)
			total += n
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err != nil {
				failed++
				line = fmt.Sprintf("FAILED %s: %s", f, strings.TrimPrefix(err.Error(), f+": "))
				env.Log.Error("verify failed", "file", f, "error", err.Error())
			} else {
				env.Log.Info("verified", "file", f, "detail", line)
				line = "OK " + f + ": " + line
			}
			lines = append(lines, line)
		}
		out := engine.Outputs{"files": len(files), "failed": failed, "bytes": total, "summary": strings.Join(lines, "\n")}
		if failed > 0 {
			return out, fmt.Errorf("verify: %d of %d file(s) failed:\n%s", failed, len(files), strings.Join(lines, "\n"))
		}
		return out, nil
	},
}

// artifactGlob expands a file or glob to artifacts, leaving out sidecars
// and temporary files.
func artifactGlob(pattern string) ([]string, error) {
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", pattern, err)
	}
	var out []string
	for _, m := range matches {
		base := filepath.Base(m)
		if strings.HasSuffix(base, ".sha256") || strings.HasPrefix(base, ".") && strings.Contains(base, ".tmp-") {
			continue
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("path %q matches no artifact", pattern)
	}
	sort.Strings(out)
	return out, nil
}

func verifyOne(ctx context.Context, env *engine.Env, path string, p *VerifyParams) (string, int64, error) {
	want, serr := artifact.ReadSidecar(path)
	if serr != nil && !(isNotExist(serr) && p.Sidecar == "optional") {
		return "", 0, fmt.Errorf("sidecar: %w", serr)
	}
	enc, err := artifact.Encrypted(path)
	if err != nil {
		return "", 0, err
	}
	haveKey := p.IdentityFile != "" || p.PassphraseFile != ""
	mode := artifact.Plain
	if enc && !haveKey {
		mode = artifact.Raw
	}
	r, err := artifact.OpenWith(ctx, env, path, p.ReadOptions, mode|artifact.HashRaw)
	if err != nil {
		return "", 0, err
	}
	defer r.Close()
	var details []string
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(512)
	switch {
	case mode == artifact.Raw:
		if _, err := io.Copy(io.Discard, br); err != nil {
			return "", r.RawBytes(), err
		}
		details = append(details, "encrypted, not decrypted (no identity_file/passphrase_file)")
	case isTar(head):
		st, err := tarball.List(ctx, br)
		if err != nil {
			return "", r.RawBytes(), err
		}
		// The rest of the stream (padding, checksums, the final MAC) must decode too.
		if _, err := io.Copy(io.Discard, br); err != nil {
			return "", r.RawBytes(), err
		}
		details = append(details, fmt.Sprintf("tar lists cleanly: %d files, %d dirs, %d links, %s",
			st.Files, st.Dirs, st.Symlinks+st.Hardlinks, artifact.HumanBytes(st.Bytes)))
	default:
		n, err := io.Copy(io.Discard, br)
		if err != nil {
			return "", r.RawBytes(), err
		}
		details = append(details, fmt.Sprintf("decoded to the end: %s", artifact.HumanBytes(n)))
	}
	if _, err := r.Drain(); err != nil {
		return "", r.RawBytes(), err
	}
	got := r.SHA256()
	switch {
	case serr == nil && got != want:
		return "", r.RawBytes(), fmt.Errorf("sha256 mismatch: file %s, sidecar %s", got, want)
	case serr == nil:
		details = append([]string{"sha256 matches"}, details...)
	default:
		details = append([]string{"no sidecar"}, details...)
	}
	details = append([]string{r.Layers.String()}, details...)
	return strings.Join(details, "; "), r.RawBytes(), nil
}

func isTar(head []byte) bool {
	return len(head) >= 263 && bytes.Equal(head[257:262], []byte("ustar"))
}
