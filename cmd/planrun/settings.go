package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/sethvargo/go-envconfig"
)

// Settings are planrun's own settings, read from the environment; the
// engine gets what it needs of them through engine.Options.
type Settings struct {
	// DB is the SQLite run store. Default: $STATE_DIR/runs.db.
	DB string `env:"PLANRUN_DB"`
	// StateDir holds the run store, locks and per-run logs.
	// Default: /var/lib/planrun for root, else $XDG_STATE_HOME/planrun
	// (~/.local/state/planrun).
	StateDir string `env:"PLANRUN_STATE_DIR"`
	// LogFormat is text or json.
	LogFormat string `env:"PLANRUN_LOG_FORMAT, default=text"`
	// TextfileDir: after every run, write the metrics to
	// <dir>/planrun.prom for node_exporter's textfile collector.
	TextfileDir string `env:"PLANRUN_TEXTFILE_DIR"`
	// PushgatewayURL: after every run, POST the metrics there.
	PushgatewayURL string `env:"PLANRUN_PUSHGATEWAY_URL"`
	// HistoryKeepDays and HistoryKeepRuns prune the run history after
	// every run: a run goes when it is older than the days and not among
	// its plan's newest runs. 0 days: never prune automatically.
	HistoryKeepDays int `env:"PLANRUN_HISTORY_KEEP_DAYS, default=400"`
	HistoryKeepRuns int `env:"PLANRUN_HISTORY_KEEP_RUNS, default=100"`
}

// loadSettings reads Settings from the environment (lookup nil: the
// process environment) and fills defaults.
func loadSettings(ctx context.Context, lookup envconfig.Lookuper) (Settings, error) {
	var s Settings
	if lookup == nil {
		lookup = envconfig.OsLookuper()
	}
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &s, Lookuper: lookup}); err != nil {
		return s, settingError(err)
	}
	if s.StateDir == "" {
		s.StateDir = defaultStateDir(lookup)
	}
	if s.DB == "" {
		s.DB = filepath.Join(s.StateDir, "runs.db")
	}
	return s, nil
}

// settingError names the variable an operator set, not the Go field
// go-envconfig reports ("HistoryKeepDays: strconv.ParseInt: ...").
func settingError(err error) error {
	field, rest, ok := strings.Cut(err.Error(), ": ")
	if f, found := reflect.TypeOf(Settings{}).FieldByName(field); ok && found {
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		return fmt.Errorf("%s: %s", name, rest)
	}
	return err
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
	return filepath.Join(os.TempDir(), "planrun-"+strconv.Itoa(os.Geteuid()))
}

// settingsFlags adds --db and --log-format to a verb that records runs;
// the function it returns gives the settings once the flags are parsed.
func settingsFlags(fs *verbFlags) func() (Settings, error) {
	db := dbFlag(fs)
	logFormat := fs.String("log-format", "", "`text` or json (default $PLANRUN_LOG_FORMAT or text)")
	return func() (Settings, error) { return runSettings(*db, *logFormat) }
}

// runSettings are the environment's settings (PLANRUN_*) with the --db
// and --log-format flags over them ("" for a flag not given).
func runSettings(db, logFormat string) (Settings, error) {
	settings, err := loadSettings(context.Background(), nil)
	if err != nil {
		return settings, fmt.Errorf("settings: %w", err)
	}
	if db != "" {
		settings.DB = db
	}
	if logFormat != "" {
		settings.LogFormat = logFormat
	}
	if settings.LogFormat != "text" && settings.LogFormat != "json" {
		return settings, fmt.Errorf("log format must be text or json, got %q", settings.LogFormat)
	}
	return settings, nil
}
