package main

// History housekeeping: planrun history prune, and the same rules applied
// after every run (PLANRUN_HISTORY_KEEP_DAYS / _KEEP_RUNS), then the
// metrics refreshed.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
)

// cmdHistory: planrun history prune --keep-days N --keep-runs N [--plan P] [--host H | --all] [--dry-run]
// and planrun history sync.
func cmdHistory(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("history", stdout, stderr)
	days := fs.Int("keep-days", -1, "prune: keep runs started less than `N` days ago")
	keepRuns := fs.Int("keep-runs", -1, "prune: keep each plan's newest `N` runs")
	plan := fs.String("plan", "", "prune only this plan's runs")
	dryRun := fs.Bool("dry-run", false, "prune: print what would be deleted; delete nothing")
	hf := addHostFlags(fs, "runs pruned")
	db := dbFlag(fs)
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) == 1 && pos[0] == "sync" {
		return historySync(*db, stdout, stderr)
	}
	if len(pos) != 1 || pos[0] != "prune" {
		return fs.usageError("want the subcommand prune or sync, got %q", pos)
	}
	if *days < 0 && *keepRuns < 0 {
		return fs.usageError("give --keep-days N, --keep-runs N or both (a run is kept when either keeps it)")
	}
	st, code := openStore(*db, &hf, stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	rules := store.PruneRules{KeepDays: *days, KeepRuns: *keepRuns, Plan: *plan, Host: st.host, DryRun: *dryRun}
	res, logs, err := pruneHistory(context.Background(), st.Store, rules)
	printPrune(stdout, res, logs, *dryRun)
	if err != nil {
		fmt.Fprintf(stderr, "planrun history prune: %v\n", err)
		return engine.ExitFailed
	}
	return engine.ExitOK
}

// historySync copies the runs recorded on this host while the central
// store was unreachable (each run's whole record, idempotently): what
// every run does first, for an operator who does not want to wait.
func historySync(db string, stdout, stderr io.Writer) int {
	settings, err := runSettings(db, "")
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return engine.ExitInvalid
	}
	if !settings.Central() {
		fmt.Fprintf(stderr, "planrun history sync: the run store %s is not a central one (PLANRUN_DB=postgres://…): nothing to copy\n", settings.DB)
		return engine.ExitInvalid
	}
	local, err := store.Open(settings.LocalDB())
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return engine.ExitFailed
	}
	defer local.Close()
	ctx, cancel := context.WithTimeout(context.Background(), centralOpenTimeout)
	defer cancel()
	central, err := store.OpenContext(ctx, settings.DB)
	if err != nil {
		left, _ := store.Pending(context.Background(), local)
		fmt.Fprintf(stderr, "planrun history sync: %v (%d run(s) wait in %s)\n", err, len(left), local.Where())
		return engine.ExitFailed
	}
	defer central.Close()
	n, err := store.SyncPending(context.Background(), local, central)
	left, lerr := store.Pending(context.Background(), local)
	fmt.Fprintf(stdout, "copied %d run(s) from %s to %s; %d still to copy (running, or failed)\n", n, local.Where(), central.Where(), len(left))
	if err = errors.Join(err, lerr); err != nil {
		fmt.Fprintf(stderr, "planrun history sync: %v\n", err)
		return engine.ExitFailed
	}
	return engine.ExitOK
}

// pruneHistory deletes the runs the rules do not keep, then their log
// files. logs counts the files removed (in a dry run: that would be).
func pruneHistory(ctx context.Context, st *store.Store, rules store.PruneRules) (res store.PruneResult, logs int, err error) {
	res, err = st.Prune(ctx, rules)
	errs := []error{err} // nil, or a clean-up after the deletion failed
	for _, r := range res.Runs {
		if !isRunLog(r.LogFile, r.ID) {
			continue
		}
		if rules.DryRun {
			if _, err := os.Stat(r.LogFile); err == nil {
				logs++
			}
			continue
		}
		switch err := os.Remove(r.LogFile); {
		case err == nil:
			logs++
		case !errors.Is(err, os.ErrNotExist):
			errs = append(errs, err)
		}
	}
	if len(errs) > 4 {
		errs = append(errs[:4], fmt.Errorf("and %d more log files not removed", len(errs)-4))
	}
	return res, logs, errors.Join(errs...)
}

// isRunLog reports whether path is a per-run log file that planrun wrote
// for run id (<state>/logs/<plan>/<started>-<id[:8]>.log): prune removes
// nothing else, whatever a record says.
func isRunLog(path, id string) bool {
	if path == "" || !filepath.IsAbs(path) || len(id) < 8 {
		return false
	}
	return strings.HasSuffix(filepath.Base(path), "-"+id[:8]+".log") &&
		filepath.Base(filepath.Dir(filepath.Dir(path))) == "logs"
}

// printPrune prints what a prune deleted (or would), plan by plan.
func printPrune(w io.Writer, res store.PruneResult, logs int, dryRun bool) {
	verb := "pruned"
	if dryRun {
		verb = "would prune"
	}
	if len(res.Runs) == 0 {
		fmt.Fprintln(w, "nothing to prune")
		return
	}
	type span struct {
		n             int
		oldest, newst time.Time
	}
	byPlan := map[string]*span{}
	var plans []string
	for _, r := range res.Runs {
		s := byPlan[r.Plan]
		if s == nil {
			s = &span{oldest: r.Started, newst: r.Started}
			byPlan[r.Plan] = s
			plans = append(plans, r.Plan)
		}
		s.n++
		if r.Started.Before(s.oldest) {
			s.oldest = r.Started
		}
		if r.Started.After(s.newst) {
			s.newst = r.Started
		}
	}
	sort.Strings(plans)
	fmt.Fprintf(w, "%s %d runs and %d log files; %d runs remain", verb, len(res.Runs), logs, res.Remain)
	if res.Vacuumed {
		fmt.Fprint(w, "; store vacuumed")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PLAN\tRUNS\tSTARTED (UTC)")
	for _, p := range plans {
		s := byPlan[p]
		fmt.Fprintf(tw, "  %s\t%d\t%s … %s\n", p, s.n, s.oldest.UTC().Format(time.DateTime), s.newst.UTC().Format(time.DateTime))
	}
	_ = tw.Flush()
}

// afterRun is what every recorded run (apply, restore, drill) ends with:
// the history pruned by the settings' rules, then the metrics textfile
// and push refreshed from the store. Neither changes the run's outcome.
//
// With a central store, the prune takes only this host's runs there (the
// other hosts prune their own), and the host's local record too; the
// metrics come from the local record, which holds this host's runs.
func afterRun(rs *runStore, settings Settings, stderr io.Writer) {
	if settings.HistoryKeepDays > 0 {
		rules := store.PruneRules{KeepDays: settings.HistoryKeepDays, KeepRuns: settings.HistoryKeepRuns}
		stores := []*store.Store{rs.history}
		if rs.local != nil {
			rules.Host = settings.Host
			if rs.history != rs.local {
				stores = append(stores, rs.local)
			}
		}
		for _, st := range stores {
			if _, _, err := pruneHistory(context.Background(), st, rules); err != nil {
				fmt.Fprintf(stderr, "planrun: warning: history prune of %s: %v\n", st.Where(), err)
			}
		}
	}
	exportMetrics(rs.own(), settings, stderr)
}
