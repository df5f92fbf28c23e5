package steps

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/restic"
)

// ResticCopyParams are the params of restic-copy: repository (and
// password_file, cache_dir) name the repository copied from.
type ResticCopyParams struct {
	restic.Repo      `yaml:",inline"`
	restic.Filter    `yaml:",inline"`
	Snapshots        []string `yaml:"snapshots" doc:"snapshot ids to copy (default: every snapshot matching tags/host; those already copied are skipped)"`
	DestRepository   string   `yaml:"dest_repository" required:"true" doc:"the repository copied to (passed as RESTIC_REPOSITORY, never argv; the source goes as RESTIC_FROM_REPOSITORY)"`
	DestPasswordFile string   `yaml:"dest_password_file" secret:"file" doc:"file holding the destination's password (default: the source's password)"`
	Init             bool     `yaml:"init" default:"true" doc:"create the destination when it does not exist, with the source's chunker parameters so deduplication carries over"`
}

// Validate keeps the copy from going nowhere.
func (p *ResticCopyParams) Validate() error {
	if p.DestRepository != "" && p.DestRepository == p.Repository {
		return errors.New("dest_repository is the source repository")
	}
	return nil
}

var (
	copiedRe  = regexp.MustCompile(`(?m)^snapshot [0-9a-f]+ saved`)
	skippedRe = regexp.MustCompile(`(?m)skipping source snapshot`)
)

// ResticCopy copies snapshots into a second repository.
var ResticCopy = engine.Def[ResticCopyParams]{
	Name:    "restic-copy",
	Summary: "copy snapshots into a second restic repository (an off-site copy a damaged local repository cannot overwrite)",
	Doc: "Runs `restic copy` from repository into dest_repository; both repositories and passwords " +
		"reach restic through its environment (RESTIC_FROM_REPOSITORY, RESTIC_FROM_PASSWORD_FILE, " +
		"as restic 0.14 and newer read them; never --repo2 or argv). restic decrypts every blob it " +
		"reads from the source and re-encrypts it for the destination: a corrupted or encrypted-by-" +
		"ransomware source fails the copy instead of replacing the good copy, and snapshots already " +
		"copied are never rewritten or deleted (retention of the copy is its own restic-forget).",
	Kind: engine.KindBackup,
	Outputs: []engine.Output{
		{Name: "copied", Doc: "snapshots copied by this run"},
		{Name: "skipped", Doc: "snapshots the destination already had"},
		{Name: "created", Doc: "whether the destination repository was created"},
	},
	Example: "repository: /backups/restic\npassword_file: /etc/planrun/restic.pass\n" +
		"dest_repository: s3:https://s3.example.com/offsite/restic\ntags: [daily]",
	Preview: func(env *engine.Env, p *ResticCopyParams) []string {
		var out []string
		if p.Init {
			out = append(out, "run: "+p.CommandLine(env.Secrets, "init", "--copy-chunker-params")+" (only if the destination does not exist)")
		}
		return append(out, "run: "+p.CommandLine(env.Secrets, p.args()...))
	},
	Run: func(ctx context.Context, env *engine.Env, p *ResticCopyParams) (engine.Outputs, error) {
		src, err := restic.New(env, p.Repo)
		if err != nil {
			return nil, err
		}
		destPw := p.DestPasswordFile
		if destPw == "" {
			destPw = p.PasswordFile
		}
		dest, err := restic.New(env, restic.Repo{Repository: p.DestRepository, PasswordFile: destPw, CacheDir: p.CacheDir, Binary: p.Binary})
		if err != nil {
			return nil, fmt.Errorf("dest_repository: %w", err)
		}
		dest.From(src)
		out := engine.Outputs{"created": false}
		if p.Init {
			created, _, err := dest.Init(ctx, "--copy-chunker-params")
			out["created"] = created
			if err != nil {
				return out, fmt.Errorf("dest_repository: %w", err)
			}
		}
		stdout, _, err := dest.Output(ctx, p.args()...)
		out["copied"] = len(copiedRe.FindAll(stdout, -1))
		out["skipped"] = len(skippedRe.FindAll(stdout, -1))
		if err != nil {
			return out, fmt.Errorf("restic copy: %w", err)
		}
		env.Log.Info("restic copy", "copied", out["copied"], "skipped", out["skipped"],
			"to", restic.Location(p.DestRepository))
		return out, nil
	},
}

func (p *ResticCopyParams) args() []string {
	return append(p.Filter.Args([]string{"copy"}), p.Snapshots...)
}
