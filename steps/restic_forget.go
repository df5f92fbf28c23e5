package steps

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/restic"
)

// ResticForgetParams are the params of restic-forget.
type ResticForgetParams struct {
	restic.Repo   `yaml:",inline"`
	restic.Filter `yaml:",inline"`
	KeepLast      int             `yaml:"keep_last" doc:"keep the last n snapshots"`
	KeepHourly    int             `yaml:"keep_hourly" doc:"keep the last n hourly snapshots"`
	KeepDaily     int             `yaml:"keep_daily" doc:"keep the last n daily snapshots"`
	KeepWeekly    int             `yaml:"keep_weekly" doc:"keep the last n weekly snapshots"`
	KeepMonthly   int             `yaml:"keep_monthly" doc:"keep the last n monthly snapshots"`
	KeepYearly    int             `yaml:"keep_yearly" doc:"keep the last n yearly snapshots"`
	KeepWithin    engine.Duration `yaml:"keep_within" doc:"keep snapshots newer than this (e.g. 30d) relative to the newest"`
	GroupBy       string          `yaml:"group_by" default:"host,paths" doc:"how snapshots are grouped before the policy applies (host, paths, tags; empty: one group)"`
	Prune         bool            `yaml:"prune" doc:"also remove the data no snapshot uses any more"`
}

// Validate rejects negative counts. An empty policy is refused in Run:
// here keep_* given as ${{ }} expressions still read as zero.
func (p *ResticForgetParams) Validate() error {
	for _, k := range p.keeps() {
		if k < 0 {
			return errors.New("keep_* counts must not be negative")
		}
	}
	return nil
}

func (p *ResticForgetParams) keeps() []int {
	return []int{p.KeepLast, p.KeepHourly, p.KeepDaily, p.KeepWeekly, p.KeepMonthly, p.KeepYearly}
}

// hasPolicy reports whether any keep rule is set.
func (p *ResticForgetParams) hasPolicy() bool {
	for _, k := range p.keeps() {
		if k > 0 {
			return true
		}
	}
	return p.KeepWithin > 0
}

// ResticForget applies a retention policy.
var ResticForget = engine.Def[ResticForgetParams]{
	Name:    "restic-forget",
	Summary: "restic forget by a keep policy (+ prune); refuses to run without one",
	Doc: "Runs `restic forget --json` with the keep rules (at least one must be set when the step " +
		"runs: an empty policy would remove every snapshot) and, with prune, removes the data no " +
		"snapshot uses any more. It does not run after a failed backup step of the same run.",
	Kind: engine.KindDestructive,
	Outputs: []engine.Output{
		{Name: "removed", Doc: "ids of the removed snapshots (list)"},
		{Name: "removed_count", Doc: "number of removed snapshots"},
		{Name: "kept", Doc: "ids of the kept snapshots (list)"},
	},
	Example: "repository: /backups/restic\npassword_file: /etc/planrun/restic.pass\nkeep_daily: 7\nkeep_weekly: 4\nkeep_monthly: 6\nprune: true",
	Preview: func(env *engine.Env, p *ResticForgetParams) []string {
		return []string{"run: " + p.CommandLine(env.Secrets, p.args()...)}
	},
	Run: func(ctx context.Context, env *engine.Env, p *ResticForgetParams) (engine.Outputs, error) {
		if !p.hasPolicy() {
			return nil, errors.New("restic forget: no keep policy (keep_last, keep_daily, ..., keep_within): refusing to run")
		}
		c, err := restic.New(env, p.Repo)
		if err != nil {
			return nil, err
		}
		stdout, _, err := c.Output(ctx, p.args()...)
		removed, kept, perr := restic.ParseForget(stdout)
		out := engine.Outputs{}
		if perr == nil {
			out["removed"], out["kept"], out["removed_count"] = removed, kept, len(removed)
			env.Log.Info("restic forget", "removed", len(removed), "kept", len(kept), "prune", p.Prune)
		}
		if err != nil {
			return out, fmt.Errorf("restic forget: %w", err)
		}
		return out, perr
	},
}

// resticWithin renders a duration in restic's y/m/d/h form (days + hours).
func resticWithin(d engine.Duration) string {
	h := int64(time.Duration(d) / time.Hour)
	if h < 1 {
		h = 1
	}
	if days := h / 24; days > 0 {
		return fmt.Sprintf("%dd%dh", days, h%24)
	}
	return fmt.Sprintf("%dh", h)
}

func (p *ResticForgetParams) args() []string {
	args := []string{"forget", "--json"}
	for _, k := range []struct {
		flag string
		n    int
	}{
		{"--keep-last", p.KeepLast}, {"--keep-hourly", p.KeepHourly}, {"--keep-daily", p.KeepDaily},
		{"--keep-weekly", p.KeepWeekly}, {"--keep-monthly", p.KeepMonthly}, {"--keep-yearly", p.KeepYearly},
	} {
		if k.n > 0 {
			args = append(args, k.flag, strconv.Itoa(k.n))
		}
	}
	if p.KeepWithin > 0 {
		args = append(args, "--keep-within", resticWithin(p.KeepWithin))
	}
	args = append(args, "--group-by", p.GroupBy)
	args = p.Filter.Args(args)
	if p.Prune {
		args = append(args, "--prune")
	}
	return args
}
