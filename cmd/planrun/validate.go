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
	var central func(*engine.Plan) engine.PreflightCheck
	// Settings that do not load only cost the checks that need them (the
	// disk prediction, the central store), as before.
	if settings, err := loadSettings(context.Background(), nil); err != nil {
		fmt.Fprintf(stderr, "planrun: settings: %v\n", err)
	} else {
		if db != "" {
			settings.DB = db
		}
		if st := historyStore(settings, stderr); st != nil {
			defer st.Close()
			hist = st
		}
		inv.Host = settings.Host
		central = centralStoreCheck(settings)
	}
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
		if central != nil {
			checks = append(checks, central(p))
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

// centralStoreCheck reaches the central run store, if the settings name
// one, and returns the check each plan reports: a store that does not
// answer is a warning (runs are recorded locally and copied later), but a
// failure for a plan with resource locks when they cannot fall back to
// this host (PLANRUN_LOCK_FALLBACK=fail): its steps that need them would
// fail. nil: no central store.
func centralStoreCheck(settings Settings) func(*engine.Plan) engine.PreflightCheck {
	if !settings.Central() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), centralOpenTimeout)
	defer cancel()
	st, err := store.OpenContext(ctx, settings.DB)
	if err == nil {
		where := st.Where()
		st.Close()
		return func(*engine.Plan) engine.PreflightCheck {
			return engine.PreflightCheck{Status: engine.CheckOK, Check: "run-store", Target: where, Reason: "central run store reachable, schema up to date"}
		}
	}
	return func(p *engine.Plan) engine.PreflightCheck {
		c := engine.PreflightCheck{Status: engine.CheckWarn, Check: "run-store", Reason: err.Error() +
			": runs are recorded in " + settings.LocalDB() + " and copied when it answers"}
		if planHasLocks(p) && settings.LockFallback == "fail" {
			c.Status = engine.CheckFail
			c.Reason += "; the plan's resource locks cannot be taken (PLANRUN_LOCK_FALLBACK=fail): the steps that need them would fail"
		}
		return c
	}
}

func planHasLocks(p *engine.Plan) bool {
	if len(p.Locks) > 0 {
		return true
	}
	for _, s := range p.Steps {
		if len(s.Locks) > 0 {
			return true
		}
	}
	return false
}

// historyStore opens this host's run store for the disk prediction, if
// there is one (preflight writes nothing, so a missing store is not
// created): with a central store, the host's own local record, which
// holds all its runs.
func historyStore(settings Settings, stderr io.Writer) *store.Store {
	path := settings.DB
	if settings.Central() {
		path = settings.LocalDB()
	}
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	st, err := store.Open(path)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: warning: run store: %v (no disk prediction)\n", err)
		return nil
	}
	return st
}
