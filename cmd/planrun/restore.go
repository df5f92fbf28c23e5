package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
	"github.com/planrun/planrun/steps"
)

// cmdRestore is `planrun restore` and, with drill set, `planrun drill`:
// derive a restore plan from a backup run's manifest and run it.
func cmdRestore(args []string, stdin io.Reader, stdout, stderr io.Writer, drill bool) int {
	verb := "restore"
	if drill {
		verb = "drill"
	}
	fs := newFlags(verb, stdout, stderr)
	runID := fs.String("run", "latest", "the backup run to restore: an id (or prefix) or latest (the plan's newest successful run with artifacts)")
	manifest := fs.String("manifest", "", "restore from this manifest file (e.g. fetched from off-site onto a fresh host) instead of the run store")
	only := fs.String("only", "", "restore only the artifacts of these backup steps (comma-separated ids)")
	into := ""
	if !drill {
		fs.StringVar(&into, "into", "", "scratch: restore into throwaway targets (scratch databases and collections, a temp dir), removed afterwards")
	}
	keep := fs.Bool("keep", false, "keep the scratch targets for inspection instead of removing them")
	dryRun := fs.Bool("dry-run", false, "print what would be read, written, overwritten or dropped, and every command line; run nothing")
	yes := false
	if !drill {
		fs.BoolVar(&yes, "yes", false, "do not ask before restoring over the original targets")
	}
	var envFiles listFlag
	fs.Var(&envFiles, "env-file", "env `file` to read instead of the plan's env_files (repeatable)")
	identity := fs.String("identity-file", "", "age identity to decrypt the artifacts (default: the plan's restore.identity_file)")
	passphrase := fs.String("passphrase-file", "", "passphrase file to decrypt passphrase-encrypted artifacts")
	loose := fs.Bool("allow-loose-env-perms", false, "warn instead of refusing env files readable by group/others")
	wait := fs.Bool("wait", false, "wait for another restore or drill of the plan to finish instead of exiting 3")
	fromHost := fs.String("host", "", "with --run latest: the newest backup made on this `host` (default: this host's; on a new machine, the only host's that has backups of the plan)")
	settingsOf := settingsFlags(fs)
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 1 || len(pos) == 0 && *manifest == "" {
		return fs.usageError("give a plan (file or name), or --manifest FILE")
	}
	if into != "" && into != "scratch" {
		return fs.usageError("--into takes scratch, got %q", into)
	}
	settings, err := settingsOf()
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return engine.ExitInvalid
	}
	rs, err := openRunStore(settings, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return engine.ExitFailed
	}
	defer rs.Close()
	st := rs.history

	reg := steps.All()
	arg := ""
	if len(pos) == 1 {
		arg = pos[0]
	}
	hosts := backupHosts{host: *fromHost}
	if settings.Central() {
		hosts.prefer = settings.Host
	}
	plan, m, code := restoreSource(st, reg, arg, *manifest, *runID, hosts, stderr)
	if code != engine.ExitOK {
		return code
	}
	req := engine.RestoreRequest{Plan: plan, Manifest: m, Drill: drill, Scratch: into == "scratch", Keep: *keep,
		IdentityFile: *identity, PassphraseFile: *passphrase, EnvFiles: envFiles}
	if *only != "" {
		req.Only = strings.Split(*only, ",")
	}
	rp, err := engine.BuildRestore(req, reg)
	if err != nil {
		fmt.Fprintf(stderr, "planrun %s: %v\n", verb, err)
		return engine.ExitInvalid
	}
	inv := engine.Invocation{Environ: os.Environ(), EnvFiles: envFiles, AllowLoosePerms: *loose, Host: settings.Host}
	scope, err := engine.Prepare(rp.Plan, inv)
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		if !*dryRun { // a scheduled drill's monitors hear of it (as apply's do)
			engine.Refuse(rp.Plan, inv, runOptions(rs, settings, stderr, false, nil), engine.ExitInvalid, err)
		}
		return engine.ExitInvalid
	}
	describeRestore(stdout, rp, scope)
	if *dryRun {
		if err := engine.DryRun(stdout, rp.Plan, scope); err != nil {
			fmt.Fprintf(stderr, "planrun: %v\n", err)
			return engine.ExitFailed
		}
		return engine.ExitOK
	}
	if !rp.Request.Scratch && !yes {
		if !confirm(stdin, stdout, rp) {
			fmt.Fprintln(stderr, "planrun restore: not confirmed: the original targets are untouched (--yes skips the question; --into scratch restores into throwaway targets)")
			return engine.ExitInvalid
		}
	}

	ctx, hard, stop := signalContexts()
	defer stop()
	res := engine.Restore(ctx, rp, scope, runOptions(rs, settings, stderr, *wait, hard))
	afterRun(rs, settings, stderr)
	var locked *engine.ErrLocked
	if errors.As(res.Err, &locked) {
		fmt.Fprintf(stderr, "planrun: %v\n", locked)
		return res.ExitCode
	}
	printReport(stdout, rs.own(), res, verb)
	return res.ExitCode
}

// restoreSource finds the plan (if any) and the manifest to restore from:
// a manifest file, or the run store's record of the plan's run.
func restoreSource(st *store.Store, reg *engine.Registry, arg, manifestFile, runID string, hosts backupHosts, stderr io.Writer) (*engine.Plan, *engine.Manifest, int) {
	ctx := context.Background()
	var plan *engine.Plan
	name := arg
	if arg != "" {
		if fi, err := os.Stat(arg); err == nil && !fi.IsDir() {
			p, err := engine.LoadFile(arg, reg)
			if err != nil {
				fmt.Fprintln(stderr, err)
				return nil, nil, engine.ExitInvalid
			}
			plan, name = p, p.Name
		}
	}
	var m *engine.Manifest
	var err error
	switch {
	case manifestFile != "":
		m, err = engine.ReadManifest(manifestFile)
	case runID == "latest":
		m, err = latestManifest(ctx, st, name, hosts)
	default:
		m, err = st.Manifest(ctx, runID)
		if err == nil && m.Plan != name {
			err = fmt.Errorf("run %s is a run of plan %q, not %q", runID, m.Plan, name)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "planrun: %v\n", err)
		return nil, nil, engine.ExitInvalid
	}
	// A plan given by name: its file as the backup run recorded it, for
	// the env files and the restore section, if it is still there.
	if plan == nil && m.PlanFile != "" && (arg == "" || arg == m.Plan) {
		if _, err := os.Stat(m.PlanFile); err == nil {
			p, err := engine.LoadFile(m.PlanFile, reg)
			if err != nil {
				fmt.Fprintln(stderr, err)
				return nil, nil, engine.ExitInvalid
			}
			plan = p
		}
	}
	if plan == nil && arg != "" && arg != m.Plan {
		fmt.Fprintf(stderr, "planrun: %s is neither a plan file nor the plan of the manifest (%s)\n", arg, m.Plan)
		return nil, nil, engine.ExitInvalid
	}
	return plan, m, engine.ExitOK
}

// backupHosts say whose backups "latest" means: host (--host) if given,
// else this host's (prefer) and, when it has none, the only host that has
// any (a DR rebuild on a new machine). Several hosts with backups of the
// plan and none of this one's is an error asking for --host.
type backupHosts struct{ host, prefer string }

func latestManifest(ctx context.Context, st *store.Store, plan string, h backupHosts) (*engine.Manifest, error) {
	if h.host != "" || h.prefer == "" {
		return st.LatestManifest(ctx, h.host, plan)
	}
	m, err := st.LatestManifest(ctx, h.prefer, plan)
	if !errors.Is(err, store.ErrNotFound) {
		return m, err
	}
	sums, serr := st.Summaries(ctx, store.SummaryFilter{Plan: plan})
	if serr != nil {
		return nil, serr
	}
	var others []string
	for _, s := range sums {
		if s.Kind == engine.KindApply && s.LastSuccess != nil {
			others = append(others, s.Host)
		}
	}
	switch len(others) {
	case 0:
		return nil, err
	case 1:
		return st.LatestManifest(ctx, others[0], plan)
	}
	return nil, fmt.Errorf("plan %q has no backups made on this host (%s) but backups from %d hosts (%s): choose one with --host",
		plan, h.prefer, len(others), strings.Join(others, ", "))
}

// describeRestore prints what the restore reads and where it goes.
func describeRestore(w io.Writer, rp *engine.RestorePlan, scope *engine.Scope) {
	m := rp.Manifest
	where := "the original targets (overwrites them)"
	if rp.Request.Scratch {
		where = "scratch targets (names end in " + rp.Suffix + "; files under " + rp.Scratch + "), removed afterwards"
		if rp.Request.Keep {
			where = "scratch targets (names end in " + rp.Suffix + "; files under " + rp.Scratch + "), kept"
		}
	}
	fmt.Fprintf(w, "%s of plan %s, backup run %s (started %s, data age %s) into %s\n", rp.Kind, m.Plan, m.RunID,
		m.Started.Format(time.RFC3339), scope.Started.Sub(m.Started).Round(time.Second), where)
	for _, s := range rp.Steps {
		if !s.Check {
			fmt.Fprintf(w, "  %s: read %s (%s, sha256 %.12s…)\n", s.ID, s.Input, histBytes(s.Artifact.Size), s.Artifact.SHA256)
		}
	}
	for _, s := range rp.Skipped {
		fmt.Fprintf(w, "  not restored: %s\n", s)
	}
}

// confirm asks before a restore over the original targets.
func confirm(stdin io.Reader, stdout io.Writer, rp *engine.RestorePlan) bool {
	f, ok := stdin.(*os.File)
	if !ok || !isTerminal(f) {
		return false
	}
	fmt.Fprintf(stdout, "This restores over the original targets listed above (see --dry-run for every command). Type yes to go on: ")
	line, _ := bufio.NewReader(stdin).ReadString('\n')
	return strings.TrimSpace(line) == "yes"
}

// printReport prints the recorded report of a restore or drill.
func printReport(w io.Writer, st *store.Store, res engine.Result, verb string) {
	r, _, err := st.Run(context.Background(), res.RunID)
	if err != nil || r.Report == nil {
		return
	}
	rep := r.Report
	fmt.Fprintf(w, "%s %s: %s — RTO %s, RPO %s", verb, histShortID(r.ID), r.Status, histDuration(rep.RTO), histDuration(rep.RPO))
	if rep.RTOBudget > 0 {
		fmt.Fprintf(w, " (budget %s)", histDuration(rep.RTOBudget))
	}
	fmt.Fprintln(w)
	for _, c := range rep.Checks {
		state := "ok"
		if len(c.Diffs) > 0 || c.Error != "" {
			state = "DIFFERS"
		}
		fmt.Fprintf(w, "  %-8s %-28s %-7s %d compared\n", state, c.Step, c.What, c.Compared)
		for _, d := range c.Diffs {
			fmt.Fprintf(w, "           %s\n", d)
		}
		if c.Error != "" {
			fmt.Fprintf(w, "           %s\n", c.Error)
		}
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
}
