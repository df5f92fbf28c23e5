package steps

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/restic"
)

// ResticCheckParams are the params of restic-check.
type ResticCheckParams struct {
	restic.Repo    `yaml:",inline"`
	ReadDataSubset string `yaml:"read_data_subset" doc:"also read and verify this part of the data: n/t, x% or a size (e.g. 1/5, 10%, 500M)"`
}

var subsetRe = regexp.MustCompile(`^(\d+/\d+|\d+(\.\d+)?%|\d+(\.\d+)?[KMGTkmgt]?)$`)

// Validate checks read_data_subset's form (unless an expression gives it).
func (p *ResticCheckParams) Validate() error {
	if p.ReadDataSubset != "" && !strings.Contains(p.ReadDataSubset, "${{") && !subsetRe.MatchString(p.ReadDataSubset) {
		return fmt.Errorf("read_data_subset %q: use n/t (1/5), a percentage (10%%) or a size (500M)", p.ReadDataSubset)
	}
	return nil
}

// ResticCheck checks a repository's integrity.
var ResticCheck = engine.Def[ResticCheckParams]{
	Name:    "restic-check",
	Summary: "restic check of the repository's structure, optionally reading part of the data",
	Kind:    engine.KindOther,
	Outputs: []engine.Output{
		{Name: "ok", Doc: "whether the check found no errors"},
		{Name: "report", Doc: "the last lines of restic's report"},
	},
	Example: "repository: /backups/restic\npassword_file: /etc/planrun/restic.pass\nread_data_subset: 1%",
	Preview: func(env *engine.Env, p *ResticCheckParams) []string {
		return []string{"run: " + p.CommandLine(env.Secrets, p.args()...)}
	},
	Run: func(ctx context.Context, env *engine.Env, p *ResticCheckParams) (engine.Outputs, error) {
		c, err := restic.New(env, p.Repo)
		if err != nil {
			return nil, err
		}
		stdout, _, err := c.Output(ctx, p.args()...)
		report := env.Secrets.Redact(strings.TrimSpace(string(stdout)))
		out := engine.Outputs{"ok": err == nil, "report": restic.LastLines(report, 20)}
		if err != nil {
			return out, fmt.Errorf("restic check: %w: %s", err, restic.LastLines(report, 10))
		}
		return out, nil
	},
}

func (p *ResticCheckParams) args() []string {
	args := []string{"check"}
	if p.ReadDataSubset != "" {
		args = append(args, "--read-data-subset", p.ReadDataSubset)
	}
	return args
}
