package main

import (
	"context"
	"fmt"
	"io"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
)

// dbFlag adds --db to the flags of a verb that reads the run store.
func dbFlag(fs *verbFlags) *string {
	return fs.String("db", "", "run store `path` (default $PLANRUN_DB or <state dir>/runs.db)")
}

// openStore opens the run store for the read-side verbs: db, else where
// the settings say. On failure it reports and returns the exit code.
func openStore(db string, stderr io.Writer) (*store.Store, int) {
	settings, err := loadSettings(context.Background(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: settings: %v\n", err)
		return nil, engine.ExitInvalid
	}
	if db != "" {
		settings.DB = db
	}
	st, err := store.Open(settings.DB)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return nil, engine.ExitFailed
	}
	return st, engine.ExitOK
}
