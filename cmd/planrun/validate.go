package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
	"github.com/planrun/planrun/steps"
)

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stdout, stderr)
	strict := fs.Bool("strict", false, "also check that env files exist with safe permissions and that step tools are found on the PATH the step's process gets")
	online := fs.Bool("online", false, "also check, without writing anything, what a run needs: tools (and pg_dump's version against the server's), services reachable with working credentials, private secret files, a plan file safe to run as root, room for the artifacts earlier runs measured; one line per check, exit 1 when one fails")
	asJSON := fs.Bool("json", false, "with --online: print the checks as JSON")
	db := dbFlag(fs)
	var envFiles listFlag
	fs.Var(&envFiles, "env-file", "with --strict or --online: env `file` to read instead of the plan's env_files, as apply --env-file (repeatable)")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return fs.usageError("want at least one plan file")
	}
	if *asJSON && !*online {
		return fs.usageError("--json goes with --online")
	}
	reg := steps.All()
	inv := engine.Invocation{Environ: os.Environ(), EnvFiles: envFiles}
	bad := 0
	var plans []*engine.Plan
	for _, file := range pos {
		plan, err := engine.LoadFile(file, reg)
		if err == nil && *strict {
			err = engine.CheckStrict(plan, inv)
		}
		if err != nil {
			var probs engine.Problems
			if errors.As(err, &probs) {
				bad += len(probs)
			} else {
				bad++
			}
			fmt.Fprintln(stderr, err)
			continue
		}
		plans = append(plans, plan)
		if !*asJSON {
			fmt.Fprintf(stdout, "%s: ok (%s, %d steps)\n", file, plan.Name, len(plan.Steps))
		}
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "%d problem(s)\n", bad)
		return engine.ExitInvalid
	}
	if *online {
		return preflight(plans, inv, *db, *asJSON, stdout, stderr)
	}
	return engine.ExitOK
}

// preflightReport is one plan's checks (validate --online --json).
type preflightReport struct {
	File   string                  `json:"file"`
	Plan   string                  `json:"plan"`
	OK     bool                    `json:"ok"`
	Checks []engine.PreflightCheck `json:"checks"`
}

// preflight runs the online checks of each plan: exit 1 if one fails.
func preflight(plans []*engine.Plan, inv engine.Invocation, db string, asJSON bool, stdout, stderr io.Writer) int {
	var hist engine.HistoryReader
	st, host := historyStore(db, stderr)
	if st != nil {
		defer st.Close()
		hist = st
	}
	inv.Host = host
	var reports []preflightReport
	failed := false
	for _, p := range plans {
		var checks []engine.PreflightCheck
		scope, err := engine.Prepare(p, inv)
		if err != nil {
			checks = []engine.PreflightCheck{{Status: engine.CheckFail, Check: "prepare", Target: p.File, Reason: err.Error()}}
		} else {
			checks = engine.Preflight(context.Background(), p, scope, engine.PreflightOptions{History: hist, Euid: os.Geteuid()})
		}
		rep := preflightReport{File: p.File, Plan: p.Name, OK: !engine.PreflightFailed(checks), Checks: checks}
		failed = failed || !rep.OK
		reports = append(reports, rep)
		if asJSON {
			continue
		}
		warns, fails := 0, 0
		for _, c := range checks {
			fmt.Fprintln(stdout, c)
			switch c.Status {
			case engine.CheckFail:
				fails++
			case engine.CheckWarn:
				warns++
			}
		}
		fmt.Fprintf(stdout, "%s: preflight %s (%d checks, %d failed, %d warnings)\n", p.File,
			map[bool]string{true: "passed", false: "FAILED"}[rep.OK], len(checks), fails, warns)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			fmt.Fprintf(stderr, "planrun: %v\n", err)
			return engine.ExitFailed
		}
	}
	if failed {
		return engine.ExitFailed
	}
	return engine.ExitOK
}

// historyStore opens this host's run store for the disk prediction, if
// there is one (preflight writes nothing, so a missing store is not
// created), and names the host: with a central store, the host's own
// local record, which holds all its runs.
func historyStore(db string, stderr io.Writer) (*store.Store, string) {
	settings, err := loadSettings(context.Background(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: settings: %v\n", err)
		return nil, ""
	}
	if db != "" {
		settings.DB = db
	}
	path := settings.DB
	if settings.Central() {
		path = settings.LocalDB()
	}
	if _, err := os.Stat(path); err != nil {
		return nil, settings.Host
	}
	st, err := store.Open(path)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: warning: run store: %v (no disk prediction)\n", err)
		return nil, settings.Host
	}
	return st, settings.Host
}
