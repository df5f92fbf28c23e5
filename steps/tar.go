package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/tarball"
)

// TarParams are the params of the tar step.
type TarParams struct {
	Paths          []string `yaml:"paths" required:"true" doc:"files and directories to archive (stored without the leading /, like GNU tar)"`
	Exclude        []string `yaml:"exclude" doc:"globs to leave out, GNU tar style: * crosses /, matched against the path and every trailing part of it (\"*.sock\", \"*/cache/*\")"`
	FollowSymlinks bool     `yaml:"follow_symlinks" doc:"archive what symlinks point to instead of the links; a link back to an enclosing directory is a file system loop, handled like an unreadable file"`
	OnUnreadable   string   `yaml:"on_unreadable" enum:"error|warn" default:"error" doc:"a file or directory that cannot be read fails the step (error) or is skipped with a warning (warn)"`

	artifact.WriteOptions `yaml:",inline"`
}

// Validate checks the write options and the paths.
func (p *TarParams) Validate() error {
	for _, path := range p.Paths {
		if strings.TrimSpace(path) == "" {
			return errors.New("paths: empty path")
		}
	}
	if _, err := tarball.NewMatcher(p.Exclude); err != nil {
		return err
	}
	return p.WriteOptions.Validate()
}

// Tar archives paths into one artifact (compressed and optionally encrypted).
var Tar = engine.Def[TarParams]{
	Name:    "tar",
	Summary: "archive files and directories into a (zstd/gzip, optionally age-encrypted) tar artifact",
	Doc: "Keeps modes, owners, mtimes, symlinks, hard links and empty directories; the archive " +
		"extracts with GNU tar (tar -xf, or tar -xzf / zstd -d | tar -x). Sockets are skipped like GNU tar does.",
	Kind:    engine.KindBackup,
	Inverse: &engine.Inverse{Type: "untar", Targets: []string{"target", "overwrite", "create_special"}, With: untarInverse},
	Outputs: append(append([]engine.Output(nil), artifact.StandardOutputs...),
		engine.Output{Name: "files", Doc: "regular files archived"},
		engine.Output{Name: "dirs", Doc: "directories archived"},
		engine.Output{Name: "special", Doc: "FIFOs and device nodes archived"},
		engine.Output{Name: "skipped", Doc: "unreadable files skipped (on_unreadable: warn)"},
	),
	Example: "paths: [/etc/nginx, /etc/cron.d]\nexclude: [\"*.sock\", \"*/cache/*\"]\n" +
		"output: /backups/configs/configs-20240101T000000Z.tar.zst\nencrypt: {recipients_file: /etc/planrun/backup.agepub}",
	Preview: func(env *engine.Env, p *TarParams) []string {
		line := "read: " + strings.Join(p.Paths, ", ")
		if len(p.Exclude) > 0 {
			line += " (exclude " + strings.Join(p.Exclude, ", ") + ")"
		}
		return []string{line, "write: " + p.WriteOptions.Describe()}
	},
	Run: func(ctx context.Context, env *engine.Env, p *TarParams) (engine.Outputs, error) {
		w, err := artifact.Create(ctx, env, p.WriteOptions)
		if err != nil {
			return nil, err
		}
		defer w.Abort()
		opts := tarball.CreateOptions{Paths: p.Paths, Exclude: p.Exclude, FollowSymlinks: p.FollowSymlinks,
			Skip: []string{w.TempPath()}}
		if p.OnUnreadable == "warn" {
			opts.Unreadable = func(path string, err error) error {
				env.Log.Warn("skipping unreadable file", "path", path, "error", err.Error())
				return nil
			}
		}
		st, err := tarball.Create(ctx, w, opts)
		if err != nil {
			return nil, fmt.Errorf("tar %s: %w", p.Output, err)
		}
		res, err := w.Commit()
		if err != nil {
			return nil, err
		}
		res.Record.Source = map[string]string{"kind": "files", "paths": strings.Join(p.Paths, ",")}
		if len(p.Exclude) > 0 {
			res.Record.Source["exclude"] = strings.Join(p.Exclude, ",")
		}
		if p.FollowSymlinks {
			res.Record.Source["follow_symlinks"] = "true"
		}
		res.Record.Counts = tarCounts(st)
		out := res.Outputs()
		out["files"], out["dirs"], out["special"], out["skipped"] = st.Files, st.Dirs, st.Other, st.Skipped
		if st.Skipped > 0 {
			env.Log.Warn("archive is incomplete: unreadable files were skipped", "count", st.Skipped)
		}
		return out, nil
	},
}

// untarInverse restores a tar artifact: into the scratch directory for a
// drill, else where it came from. Members are stored relative to "/" (the
// paths without their leading "/"), so the original location is "/" with
// overwrite, unless the operator named a directory.
func untarInverse(a engine.ArtifactRecord, t engine.RestoreTarget) (map[string]any, error) {
	w := map[string]any{"input": t.Input}
	if t.Scratch {
		if t.Dir == "" {
			return nil, errors.New("scratch restore of a tar artifact needs a directory")
		}
		w["target"] = t.Dir
	} else {
		w["target"] = "/"
		if t.Dir != "" {
			w["target"] = t.Dir
		}
		for _, p := range strings.Split(a.Source["paths"], ",") {
			if t.Dir == "" && p != "" && !strings.HasPrefix(p, "/") {
				// Archived from a relative path: "/" would be a guess. The
				// operator names the directory (the plan's
				// restore.steps.<id>.target); without it the derived plan
				// fails validation with "missing required param target".
				delete(w, "target")
				break
			}
		}
		w["overwrite"] = true
		w["create_special"] = true
	}
	artifact.AddReadKeys(w, t)
	return w, nil
}

// tarCounts maps a tar listing to the manifest's count keys, as the tar
// step records them: files are regular files (hard links are extra
// names, not counted), bytes their content, special fifos and devices.
func tarCounts(st tarball.Stats) map[string]int64 {
	return map[string]int64{"files": int64(st.Files), "dirs": int64(st.Dirs),
		"symlinks": int64(st.Symlinks), "bytes": st.Bytes, "special": int64(st.Other)}
}
