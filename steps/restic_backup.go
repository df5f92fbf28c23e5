package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/argv"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/lines"
	"github.com/planrun/planrun/steps/internal/proc"
	"github.com/planrun/planrun/steps/internal/restic"
)

// ResticBackupParams are the params of restic-backup.
type ResticBackupParams struct {
	restic.Repo     `yaml:",inline"`
	Paths           []string `yaml:"paths" doc:"files and directories to back up"`
	Exclude         []string `yaml:"exclude" doc:"exclude patterns (backup of paths)"`
	ExcludeFile     []string `yaml:"exclude_file" doc:"files of exclude patterns (backup of paths)"`
	Tags            []string `yaml:"tags" doc:"tags added to the snapshot"`
	Host            string   `yaml:"host" doc:"host name recorded in the snapshot (default: this host's)"`
	StdinFile       string   `yaml:"stdin_file" doc:"back up this artifact's content (decrypted and decompressed) as one file"`
	StdinCommand    []string `yaml:"stdin_command" doc:"back up this command's standard output as one file (argv, no shell)"`
	StdinFilename   string   `yaml:"stdin_filename" doc:"file name of a stdin backup in the snapshot (default: stdin_file's name without .zst/.gz/.age, or \"stdin\")"`
	AllowIncomplete bool     `yaml:"allow_incomplete" doc:"succeed although some files could not be read (restic exit 3)"`

	artifact.ReadOptions `yaml:",inline"`
}

// Validate checks that exactly one source is given.
func (p *ResticBackupParams) Validate() error {
	n := 0
	for _, set := range []bool{len(p.Paths) > 0, p.StdinFile != "", len(p.StdinCommand) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("give exactly one of paths, stdin_file and stdin_command")
	}
	if len(p.Paths) == 0 && (len(p.Exclude) > 0 || len(p.ExcludeFile) > 0) {
		return errors.New("exclude and exclude_file apply to a backup of paths")
	}
	if len(p.Paths) > 0 && p.StdinFilename != "" {
		return errors.New("stdin_filename applies to stdin_file and stdin_command")
	}
	return nil
}

// ResticBackup saves a snapshot.
var ResticBackup = engine.Def[ResticBackupParams]{
	Name:    "restic-backup",
	Summary: "restic backup of paths, an artifact or a command's output; records the snapshot (restored by restic-restore)",
	Doc: "Runs `restic backup --json` and turns its summary into outputs. The repository (which may " +
		"embed credentials) and the password are passed in restic's environment (RESTIC_REPOSITORY, " +
		"RESTIC_PASSWORD_FILE); s3: repositories use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the " +
		"environment, rclone: repositories the rclone config or RCLONE_CONFIG_* variables. A stdin " +
		"backup (stdin_file, stdin_command) whose source fails stops restic before it can save a " +
		"snapshot of the partial stream. The snapshot is recorded in the run's manifest (repository " +
		"without credentials, snapshot id, host, paths, tags; counts files, dirs and bytes as restic's " +
		"summary reports them), so planrun restore and drill restore it with restic-restore.",
	Kind:    engine.KindBackup,
	Inverse: &engine.Inverse{Type: "restic-restore", NotAFile: true, Targets: []string{"target"}, With: resticRestoreInverse},
	Outputs: []engine.Output{
		{Name: "snapshot_id", Doc: "the new snapshot's id as restic reports it (8-hex short id in restic 0.14, full id in newer)"},
		{Name: "snapshot_short_id", Doc: "the first 8 hex digits of the id"},
		{Name: "files_new", Doc: "new files"},
		{Name: "files_changed", Doc: "changed files"},
		{Name: "files_unmodified", Doc: "unchanged files"},
		{Name: "data_added", Doc: "bytes added to the repository"},
		{Name: "total_files", Doc: "files processed"},
		{Name: "total_bytes", Doc: "bytes processed"},
		{Name: "counts", Doc: "files, dirs and bytes of the snapshot (as recorded in the manifest)"},
		{Name: "errors", Doc: "files that could not be read (list)"},
	},
	Example: "repository: ${{ env.RESTIC_REPOSITORY }}\npassword_file: /etc/planrun/restic.pass\n" +
		"paths: [/backups/mongo]\ntags: [daily]",
	Preview: func(env *engine.Env, p *ResticBackupParams) []string {
		cl := func(args ...string) string { return p.CommandLine(env.Secrets, args...) }
		switch {
		case p.StdinFile != "":
			return []string{"read: " + p.StdinFile + " (decrypted, decompressed) | " + cl(p.args("stdin")...)}
		case len(p.StdinCommand) > 0:
			return []string{"run: " + proc.CommandLine(env.Secrets, p.StdinCommand[0], p.StdinCommand[1:]...) +
				" | " + cl(p.args("stdin")...)}
		}
		return []string{"run: " + cl(p.args("paths")...)}
	},
	Run: runResticBackup,
}

// stdinName is the file name of a stdin backup inside the snapshot.
func (p *ResticBackupParams) stdinName() string {
	if p.StdinFilename != "" {
		return p.StdinFilename
	}
	if p.StdinFile != "" {
		name := filepath.Base(p.StdinFile)
		for _, ext := range []string{".age", ".zst", ".gz"} {
			name = strings.TrimSuffix(name, ext)
		}
		return name
	}
	return "stdin"
}

// args builds `backup`; mode is "paths", "stdin" (we feed stdin) or
// "from-command" (restic >= 0.17 runs stdin_command itself).
func (p *ResticBackupParams) args(mode string) []string {
	args := []string{"backup", "--json"}
	args = argv.AppendEach(args, "--tag", p.Tags)
	if p.Host != "" {
		args = append(args, "--host", p.Host)
	}
	switch mode {
	case "stdin":
		return append(args, "--stdin", "--stdin-filename", p.stdinName())
	case "from-command":
		args = append(args, "--stdin-from-command", "--stdin-filename", p.stdinName(), "--")
		return append(args, p.StdinCommand...)
	}
	args = argv.AppendEach(args, "--exclude", p.Exclude)
	args = argv.AppendEach(args, "--exclude-file", p.ExcludeFile)
	return argv.Operands(args, p.Paths...)
}

func runResticBackup(ctx context.Context, env *engine.Env, p *ResticBackupParams) (engine.Outputs, error) {
	c, err := restic.New(env, p.Repo)
	if err != nil {
		return nil, err
	}
	parser := &restic.BackupParser{Progress: env.Progress.Set}
	lw := lines.New(parser.Line)
	major, minor, verr := c.Version(ctx)
	switch {
	case p.StdinFile != "":
		_, err = c.RunWithStdin(ctx, p.args("stdin"), lw, func(w *os.File) error {
			r, err := artifact.OpenWith(ctx, env, p.StdinFile, p.ReadOptions, artifact.Plain|artifact.VerifySidecar)
			if err != nil {
				return fmt.Errorf("stdin_file: %w", err)
			}
			defer r.Close()
			if _, err := io.Copy(w, r); err != nil {
				return fmt.Errorf("stdin_file %s: %w", p.StdinFile, err)
			}
			return nil
		})
	case len(p.StdinCommand) > 0:
		if verr == nil && restic.HasStdinFromCommand(major, minor) {
			_, err = c.Run(ctx, p.args("from-command"), nil, lw)
			break
		}
		_, err = c.RunWithStdin(ctx, p.args("stdin"), lw, func(w *os.File) error {
			_, err := proc.Run(ctx, proc.Cmd{ // the child writes straight into the pipe
				Name: p.StdinCommand[0], Args: p.StdinCommand[1:], Env: env.Environ, Stdout: w, Secrets: env.Secrets,
			})
			return err
		})
	default:
		_, err = c.Run(ctx, p.args("paths"), nil, lw)
	}
	lw.Flush()

	out := engine.Outputs{"errors": parser.Errors}
	if parser.Errors == nil {
		out["errors"] = []string{}
	}
	s := parser.Summary
	if s != nil && s.SnapshotID != "" {
		out["snapshot_id"] = s.SnapshotID
		out["snapshot_short_id"] = s.SnapshotID[:min(8, len(s.SnapshotID))]
		out["files_new"] = s.FilesNew
		out["files_changed"] = s.FilesChanged
		out["files_unmodified"] = s.FilesUnmodified
		out["data_added"] = s.DataAdded
		out["total_files"] = s.TotalFilesProcessed
		out["total_bytes"] = s.TotalBytesProcessed
		out["counts"] = s.Counts()
		if env.Stats != nil {
			env.Stats.BytesIn.Add(s.TotalBytesProcessed)
			env.Stats.BytesOut.Add(s.DataAdded)
		}
	}
	if err != nil {
		var xe *proc.ExitError
		if errors.As(err, &xe) && xe.ExitCode == 3 && s != nil && s.SnapshotID != "" {
			msg := fmt.Sprintf("restic backup: snapshot %s is incomplete: %d file(s) could not be read: %s",
				s.SnapshotID, len(parser.Errors), strings.Join(parser.Errors[:min(5, len(parser.Errors))], "; "))
			if !p.AllowIncomplete {
				return out, errors.New(env.Secrets.Redact(msg))
			}
			env.Log.Warn(msg)
		} else {
			return out, fmt.Errorf("restic backup: %w", err)
		}
	}
	if s == nil || s.SnapshotID == "" {
		return out, errors.New("restic backup: no summary with a snapshot id in restic's output")
	}
	env.Log.Info("restic snapshot saved", "snapshot", s.SnapshotID, "data_added", s.DataAdded)
	rec, err := recordSnapshot(ctx, c, p, s)
	if err != nil {
		return out, err
	}
	if verr == nil {
		rec.Tools = map[string]string{"restic": fmt.Sprintf("%d.%d", major, minor)}
	}
	env.RecordArtifact(rec)
	return out, nil
}

// recordSnapshot describes the new snapshot for the manifest, as restic
// lists it (full id, absolute paths, host).
func recordSnapshot(ctx context.Context, c *restic.Call, p *ResticBackupParams, s *restic.BackupSummary) (*engine.ArtifactRecord, error) {
	snap, err := c.Snapshot(ctx, s.SnapshotID)
	if err != nil {
		return nil, err
	}
	src := map[string]string{
		"kind": "restic", "repository": restic.Location(c.Repo), "snapshot": snap.ID,
		"host": snap.Hostname, "paths": strings.Join(snap.Paths, ","), "tags": strings.Join(snap.Tags, ","),
	}
	if p.PasswordFile != "" {
		src["password_file"] = p.PasswordFile // a path: the password itself is never recorded
	}
	return &engine.ArtifactRecord{
		Path: restic.Location(c.Repo), Compression: "restic", Encryption: &engine.Encryption{Method: "restic"},
		BytesIn: s.TotalBytesProcessed, Source: src, Counts: s.Counts(),
	}, nil
}

// resticRestoreInverse restores a recorded snapshot: into the scratch
// directory for a drill, else only into a target the operator names (the
// plan's restore.steps.<id>.target; "/" puts the files back where they
// were): restic restores absolute paths under the target, so a default
// would either overwrite the live tree or scatter it somewhere unexpected.
func resticRestoreInverse(a engine.ArtifactRecord, t engine.RestoreTarget) (map[string]any, error) {
	w := map[string]any{"snapshot": a.Source["snapshot"]}
	if repo := a.Source["repository"]; repo != "" && !strings.Contains(repo, "***") {
		w["repository"] = repo // else RESTIC_REPOSITORY or the operator's override
	}
	if pf := a.Source["password_file"]; pf != "" {
		w["password_file"] = pf
	}
	if t.Scratch {
		if t.Dir == "" {
			return nil, errors.New("scratch restore of a restic snapshot needs a directory")
		}
		w["target"] = t.Dir
		w["verify"] = true
	} else if t.Dir != "" {
		w["target"] = t.Dir
	}
	return w, nil
}
