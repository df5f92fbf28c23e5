package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/sethvargo/go-envconfig"

	"github.com/planrun/planrun/engine/store"
)

// Settings are planrun's own settings, read from the environment; the
// engine gets what it needs of them through engine.Options.
type Settings struct {
	// DB is the run store: a SQLite file (default $STATE_DIR/runs.db) or
	// a postgres:// URL of a central store shared by a fleet, whose
	// password comes from PGPASSWORD or PGPASSFILE. With a central store
	// every run is also recorded in $STATE_DIR/runs.db first, and copied
	// over when the central store answers.
	DB string `env:"PLANRUN_DB"`
	// Host names this machine in run records, the fleet view and lock
	// holders. Default: the hostname.
	Host string `env:"PLANRUN_HOST"`
	// LockFallback says what a resource lock does when the central store
	// cannot be reached: fail (the steps that need it fail) or local (a
	// lock on this host only).
	LockFallback string `env:"PLANRUN_LOCK_FALLBACK, default=fail"`
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
		s.DB = s.LocalDB()
	}
	if s.Host == "" {
		s.Host, _ = os.Hostname()
	}
	if s.LockFallback != "fail" && s.LockFallback != "local" {
		return s, fmt.Errorf("PLANRUN_LOCK_FALLBACK must be fail or local, got %q", s.LockFallback)
	}
	return s, nil
}

// LocalDB is the host's own SQLite store under the state dir: the run
// store itself, or the local record kept beside a central store.
func (s Settings) LocalDB() string { return filepath.Join(s.StateDir, "runs.db") }

// Central reports whether the run store is a central (PostgreSQL) one.
func (s Settings) Central() bool { return store.IsPostgresURL(s.DB) }

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
		if err := dbFlagSafe(db); err != nil {
			return settings, err
		}
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

// dbFlagSafe refuses a --db URL with a password in it: every user of the
// host can read a process's argv.
func dbFlagSafe(db string) error {
	if store.IsPostgresURL(db) {
		if u, err := url.Parse(db); err == nil {
			if _, has := u.User.Password(); has || u.Query().Has("password") {
				return errors.New("--db: a password in the URL would be visible in the process list; give it in PGPASSWORD or a PGPASSFILE (or the URL in PLANRUN_DB)")
			}
		}
	}
	return nil
}
