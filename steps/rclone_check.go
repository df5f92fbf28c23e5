package steps

import (
	"context"
	"fmt"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/rclone"
)

// RcloneCheckParams are the params of rclone-check.
type RcloneCheckParams struct {
	rclone.Options `yaml:",inline"`
	Source         string `yaml:"source" required:"true" doc:"source path or remote:path"`
	Dest           string `yaml:"dest" required:"true" doc:"destination path or remote:path compared with source"`
	OneWay         bool   `yaml:"one_way" doc:"only check that source files are in dest"`
}

// Validate keeps credentials out of argv.
func (p *RcloneCheckParams) Validate() error {
	return p.Options.Validate([2]string{"source", p.Source}, [2]string{"dest", p.Dest})
}

// RcloneCheck compares two trees by hash.
var RcloneCheck = engine.Def[RcloneCheckParams]{
	Name:    "rclone-check",
	Summary: "rclone check: source and dest hold the same files (hashes); fails naming what differs",
	Kind:    engine.KindOther,
	Outputs: []engine.Output{
		{Name: "matches", Doc: "identical files"},
		{Name: "differences", Doc: "files present on both sides that differ"},
		{Name: "missing_on_dest", Doc: "files only in source"},
		{Name: "missing_on_source", Doc: "files only in dest"},
		{Name: "errors", Doc: "files that could not be read"},
		{Name: "differing", Doc: "names of differing, missing or unreadable files (first 100)"},
		{Name: "ok", Doc: "whether source and dest match"},
	},
	Example: "source: /backups/db\ndest: offsite:backups/db\none_way: true",
	Preview: func(env *engine.Env, p *RcloneCheckParams) []string {
		return []string{"run: " + p.CommandLine(env.Secrets, p.args())}
	},
	Run: runRcloneCheck,
}

func (p *RcloneCheckParams) args() []string {
	extra := []string{"--use-json-log", "--combined", "-"}
	if p.OneWay {
		extra = append(extra, "--one-way")
	}
	return p.Args("check", extra, p.Source, p.Dest)
}

// runRcloneCheck runs `rclone check --combined -`, whose stdout has one
// line per file: "= " same, "* " differs, "+ " only in source, "- " only
// in dest, "! " error.
func runRcloneCheck(ctx context.Context, env *engine.Env, p *RcloneCheckParams) (engine.Outputs, error) {
	c := rclone.New(env, p.Options)
	var matches, diffs, missingDest, missingSrc, errs int64
	differing := []string{}
	log, _, err := c.Run(ctx, p.args(), func(l []byte) {
		s := string(l)
		if len(s) < 2 || s[1] != ' ' {
			return
		}
		switch s[0] {
		case '=':
			matches++
			return
		case '*':
			diffs++
		case '+':
			missingDest++
		case '-':
			missingSrc++
		case '!':
			errs++
		default:
			return
		}
		if len(differing) < 100 {
			differing = append(differing, env.Secrets.Redact(s))
		}
	})
	ok := diffs+missingDest+missingSrc+errs == 0
	out := engine.Outputs{
		"matches": matches, "differences": diffs, "missing_on_dest": missingDest, "missing_on_source": missingSrc,
		"errors": errs, "differing": differing, "ok": ok && err == nil,
	}
	if p.OneWay {
		out["missing_on_source"] = int64(0) // not checked
	}
	if !ok {
		return out, fmt.Errorf("rclone check: %s and %s differ: %d differ, %d missing on dest, %d only in dest, %d unreadable",
			env.Secrets.Redact(p.Source), env.Secrets.Redact(p.Dest), diffs, missingDest, missingSrc, errs)
	}
	if err != nil {
		return out, c.Fail("check", log, err)
	}
	return out, nil
}
