package steps

import (
	"context"
	"fmt"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/restic"
)

// ResticUnlockParams are the params of restic-unlock.
type ResticUnlockParams struct {
	restic.Repo `yaml:",inline"`
	RemoveAll   bool `yaml:"remove_all" doc:"remove every lock, also those of restic processes still running (--remove-all): only when none can be"`
}

// ResticUnlock removes stale locks.
var ResticUnlock = engine.Def[ResticUnlockParams]{
	Name:    "restic-unlock",
	Summary: "remove stale restic locks (left by a crashed or killed restic); remove_all only when asked",
	Doc: "A restic killed mid-run (OOM, reboot) leaves its lock, and the next backup or prune fails " +
		"with \"repository is already locked\". `restic unlock` removes only stale locks (of processes " +
		"that are gone, or older than 30 minutes without a refresh), so it is safe before every run; " +
		"remove_all also removes live ones.",
	Kind:    engine.KindOther,
	Example: "repository: /backups/restic\npassword_file: /etc/planrun/restic.pass",
	Preview: func(env *engine.Env, p *ResticUnlockParams) []string {
		return []string{"run: " + p.CommandLine(env.Secrets, p.args()...)}
	},
	Run: func(ctx context.Context, env *engine.Env, p *ResticUnlockParams) (engine.Outputs, error) {
		c, err := restic.New(env, p.Repo)
		if err != nil {
			return nil, err
		}
		if _, _, err := c.Output(ctx, p.args()...); err != nil {
			return nil, fmt.Errorf("restic unlock: %w", err)
		}
		return engine.Outputs{}, nil
	},
}

func (p *ResticUnlockParams) args() []string {
	if p.RemoveAll {
		return []string{"unlock", "--remove-all"}
	}
	return []string{"unlock"}
}
