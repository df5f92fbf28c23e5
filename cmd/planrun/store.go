package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
)

// dbFlag adds --db to the flags of a verb that reads the run store.
func dbFlag(fs *verbFlags) *string {
	return fs.String("db", "", "run store: a SQLite `path` or a postgres:// URL without its password (default $PLANRUN_DB or <state dir>/runs.db)")
}

// hostFlags choose whose runs a read verb shows.
type hostFlags struct {
	host *string
	all  *bool
}

// addHostFlags adds --host and --all (what: "runs", "plans", ...).
func addHostFlags(fs *verbFlags, what string) hostFlags {
	return hostFlags{
		host: fs.String("host", "", "only the "+what+" of this `host` (default: this host with a central store, every host with a local one)"),
		all:  fs.Bool("all", false, "the "+what+" of every host (a central store)"),
	}
}

// readStore is a run store opened by a read verb, and the host its reads
// are for ("" for every host).
type readStore struct {
	*store.Store
	host     string
	settings Settings
}

// openStore opens the run store for a read verb: db, else where the
// settings say. With a central store that does not answer, it reads the
// host's own record instead (with a warning: other hosts are missing).
// hf may be nil (the verb reads one run). On failure it reports and
// returns the exit code.
func openStore(db string, hf *hostFlags, stderr io.Writer) (*readStore, int) {
	settings, err := loadSettings(context.Background(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: settings: %v\n", err)
		return nil, engine.ExitInvalid
	}
	if db != "" {
		if err := dbFlagSafe(db); err != nil {
			fmt.Fprintf(stderr, "planrun: %v\n", err)
			return nil, engine.ExitInvalid
		}
		settings.DB = db
	}
	rs := &readStore{settings: settings}
	if hf != nil {
		switch {
		case *hf.host != "" && *hf.all:
			fmt.Fprintln(stderr, "planrun: --host and --all exclude each other")
			return nil, engine.ExitInvalid
		case *hf.host != "":
			rs.host = *hf.host
		case !*hf.all && settings.Central():
			rs.host = settings.Host
		}
	}
	if !settings.Central() {
		rs.Store, err = store.Open(settings.DB)
		if err != nil {
			fmt.Fprintf(stderr, "planrun: %v\n", err)
			return nil, engine.ExitFailed
		}
		return rs, engine.ExitOK
	}
	ctx, cancel := context.WithTimeout(context.Background(), centralOpenTimeout)
	defer cancel()
	central, err := store.OpenContext(ctx, settings.DB)
	if err == nil {
		rs.Store = central
		return rs, engine.ExitOK
	}
	if _, statErr := os.Stat(settings.LocalDB()); statErr != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return nil, engine.ExitFailed
	}
	if rs.host != "" && rs.host != settings.Host {
		fmt.Fprintf(stderr, "planrun: %v (this host's own record in %s has no runs of host %s)\n", err, settings.LocalDB(), rs.host)
		return nil, engine.ExitFailed
	}
	local, lerr := store.Open(settings.LocalDB())
	if lerr != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", errors.Join(err, lerr))
		return nil, engine.ExitFailed
	}
	fmt.Fprintf(stderr, "planrun: warning: %v: reading this host's own record in %s (no other hosts)\n", err, local.Where())
	rs.Store = local
	return rs, engine.ExitOK
}
