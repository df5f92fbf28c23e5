package engine

import (
	"context"
	"os"
	"path/filepath"

	"github.com/sethvargo/go-envconfig"
)

// Settings are the engine's own settings, read from the environment.
type Settings struct {
	// DB is the SQLite run store. Default: $STATE_DIR/runs.db.
	DB string `env:"PLANRUN_DB"`
	// StateDir holds the run store, locks and per-run logs.
	// Default: /var/lib/planrun for root, else $XDG_STATE_HOME/planrun
	// (~/.local/state/planrun).
	StateDir string `env:"PLANRUN_STATE_DIR"`
	// LogFormat is text or json.
	LogFormat string `env:"PLANRUN_LOG_FORMAT, default=text"`
}

// LoadSettings reads Settings from the environment and fills defaults.
func LoadSettings(ctx context.Context, lookup envconfig.Lookuper) (Settings, error) {
	var s Settings
	if lookup == nil {
		lookup = envconfig.OsLookuper()
	}
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &s, Lookuper: lookup}); err != nil {
		return s, err
	}
	if s.StateDir == "" {
		s.StateDir = defaultStateDir(lookup)
	}
	if s.DB == "" {
		s.DB = filepath.Join(s.StateDir, "runs.db")
	}
	return s, nil
}

func defaultStateDir(lookup envconfig.Lookuper) string {
	if os.Geteuid() == 0 {
		return "/var/lib/planrun"
	}
	if x, ok := lookup.Lookup("XDG_STATE_HOME"); ok && x != "" {
		return filepath.Join(x, "planrun")
	}
	if h, ok := lookup.Lookup("HOME"); ok && h != "" {
		return filepath.Join(h, ".local", "state", "planrun")
	}
	return filepath.Join(os.TempDir(), "planrun-"+itoa(os.Geteuid()))
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
