package steps

import (
	"context"
	"fmt"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/walarchive"
)

// WALVerifyParams are the params of wal-verify.
type WALVerifyParams struct {
	ArchiveConfig string `yaml:"archive_config" required:"true" doc:"WAL archive config file (the one archive_command's planrun wal-push --config names)"`
}

// WALVerify checks the WAL archive's chain.
var WALVerify = engine.Def[WALVerifyParams]{
	Name:    "wal-verify",
	Summary: "check that the WAL archive holds an unbroken chain from the oldest base backup to the newest segment",
	Doc: "Lists the archive named by archive_config and walks the segments from the oldest complete " +
		"base backup's start to the newest archived segment (or the newest backup's end, if later), " +
		"following timeline switches from the history files, and checks every file in the chain " +
		"against its .sha256 sidecar. It fails naming the first missing segment: recovery stops " +
		"at a gap. Without identity_file in the config, encrypted history files cannot be read " +
		"and the switch points are inferred from the segments present (a note says so).",
	Kind: engine.KindOther,
	Outputs: []engine.Output{
		{Name: "segments", Doc: "segments present in the chain"},
		{Name: "gaps", Doc: "missing runs, \"FROM..TO\" segment names (list)"},
		{Name: "from", Doc: "first segment of the chain"},
		{Name: "to", Doc: "last segment of the chain"},
		{Name: "timeline", Doc: "the newest timeline, whose history the chain follows"},
		{Name: "corrupt", Doc: "files that do not match their sidecar (list)"},
	},
	Example: "archive_config: /etc/planrun/wal.yaml",
	Preview: func(env *engine.Env, p *WALVerifyParams) []string {
		return []string{"read: WAL archive of " + p.ArchiveConfig}
	},
	Run: func(ctx context.Context, env *engine.Env, p *WALVerifyParams) (engine.Outputs, error) {
		cfg, err := walarchive.LoadConfig(p.ArchiveConfig)
		if err != nil {
			return nil, fmt.Errorf("archive_config: %w", err)
		}
		rep, err := walarchive.Verify(ctx, cfg)
		if err != nil {
			return nil, err
		}
		gaps := make([]string, len(rep.Gaps))
		for i, g := range rep.Gaps {
			gaps[i] = g.From + ".." + g.To
		}
		for _, n := range rep.Notes {
			env.Log.Info("wal-verify", "note", n)
		}
		out := engine.Outputs{"segments": rep.Segments, "gaps": gaps, "from": rep.From, "to": rep.To,
			"timeline": int(rep.Timeline), "corrupt": append([]string{}, rep.Corrupt...)}
		if !rep.OK() {
			return out, fmt.Errorf("%s", rep.Problem())
		}
		env.Log.Info("WAL chain unbroken", "from", rep.From, "to", rep.To, "segments", rep.Segments)
		return out, nil
	},
}
