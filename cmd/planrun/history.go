package main

// The read-side verbs: planrun runs, planrun show, planrun status.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
)

func histJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// cmdRuns: planrun runs [--plan NAME] [--host H | --all] [--limit N] [--json]
func cmdRuns(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("runs", stdout, stderr)
	plan := fs.String("plan", "", "only runs of this plan")
	hf := addHostFlags(fs, "runs")
	limit := fs.Int("limit", 20, "show at most `N` runs, newest first (0: all)")
	asJSON := fs.Bool("json", false, "print a JSON array of runs")
	db := dbFlag(fs)
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return fs.usageError("unexpected argument %q (use --plan NAME)", pos[0])
	}
	if *limit < 0 {
		return fs.usageError("--limit must be 0 (all) or more, got %d", *limit)
	}
	st, code := openStore(*db, &hf, stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	runs, err := st.Runs(context.Background(), store.RunFilter{Host: st.host, Plan: *plan, Limit: *limit})
	if err != nil {
		fmt.Fprintf(stderr, "planrun runs: %v\n", err)
		return engine.ExitFailed
	}
	if *asJSON {
		if runs == nil {
			runs = []engine.RunRecord{}
		}
		if err := histJSON(stdout, runs); err != nil {
			fmt.Fprintf(stderr, "planrun runs: %v\n", err)
			return engine.ExitFailed
		}
		return engine.ExitOK
	}
	if len(runs) == 0 {
		of := ""
		if *plan != "" {
			of += fmt.Sprintf(" of plan %q", *plan)
		}
		if st.host != "" {
			of += fmt.Sprintf(" on host %s", st.host)
		}
		fmt.Fprintf(stdout, "no runs%s recorded in %s\n", of, st.Where())
		return engine.ExitOK
	}
	// A store shared by a fleet says which host ran what.
	withHost := st.host == "" && st.Backend() == "postgres"
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	head := "ID\tPLAN\tSTATUS\tKIND\tSTARTED (UTC)\tDURATION\tEXIT"
	if withHost {
		head = "ID\tHOST\tPLAN\tSTATUS\tKIND\tSTARTED (UTC)\tDURATION\tEXIT"
	}
	fmt.Fprintln(tw, head)
	for _, r := range runs {
		dur, exit := "-", "-"
		if !r.Finished.IsZero() {
			dur = histDuration(r.Finished.Sub(r.Started))
			exit = fmt.Sprint(r.ExitCode)
		}
		id := histShortID(r.ID)
		if withHost {
			id += "\t" + r.Host
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, r.Plan, r.Status, r.Kind,
			r.Started.UTC().Format(time.DateTime), dur, exit)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "planrun runs: %v\n", err)
		return engine.ExitFailed
	}
	return engine.ExitOK
}

// cmdShow: planrun show RUN [--json]. RUN may be a unique id prefix.
func cmdShow(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("show", stdout, stderr)
	asJSON := fs.Bool("json", false, "print {run, attempts} as JSON")
	plan := fs.String("plan", "", "with RUN = latest: the latest run of this plan")
	hf := addHostFlags(fs, "runs (with RUN = latest)")
	db := dbFlag(fs)
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return fs.usageError("want one run id (a unique prefix, or latest), got %d arguments", len(pos))
	}
	st, code := openStore(*db, &hf, stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	id := pos[0]
	if id == "latest" {
		runs, err := st.Runs(context.Background(), store.RunFilter{Host: st.host, Plan: *plan, Limit: 1})
		if err != nil || len(runs) == 0 {
			fmt.Fprintf(stderr, "planrun show: no runs recorded%s\n", map[bool]string{true: " for plan " + *plan, false: ""}[*plan != ""])
			return engine.ExitFailed
		}
		id = runs[0].ID
	}
	run, atts, err := st.Run(context.Background(), id)
	if err != nil {
		fmt.Fprintf(stderr, "planrun show: %v\n", err)
		return engine.ExitFailed
	}
	if *asJSON {
		if atts == nil {
			atts = []engine.AttemptRecord{}
		}
		var manifest *engine.Manifest
		if run.Kind == engine.KindApply {
			if manifest, err = st.Manifest(context.Background(), run.ID); err != nil {
				fmt.Fprintf(stderr, "planrun show: %v\n", err)
				return engine.ExitFailed
			}
		}
		err := histJSON(stdout, struct {
			Run      engine.RunRecord       `json:"run"`
			Attempts []engine.AttemptRecord `json:"attempts"`
			Manifest *engine.Manifest       `json:"manifest,omitempty"`
		}{run, atts, manifest})
		if err != nil {
			fmt.Fprintf(stderr, "planrun show: %v\n", err)
			return engine.ExitFailed
		}
		return engine.ExitOK
	}
	var b strings.Builder
	histRunHeader(&b, run)
	if len(atts) == 0 {
		b.WriteString("\nNo step attempts recorded.\n")
	} else {
		b.WriteString("\nSteps:\n")
		for _, a := range atts {
			histAttempt(&b, a)
		}
	}
	if _, err := io.WriteString(stdout, b.String()); err != nil {
		return engine.ExitFailed
	}
	return engine.ExitOK
}

func histRunHeader(b *strings.Builder, r engine.RunRecord) {
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(b, "%-9s %s\n", label+":", histIndent(value, 10))
		}
	}
	line("Run", r.ID)
	line("Plan", r.Plan)
	file := r.PlanFile
	if r.PlanSHA256 != "" {
		file += " (sha256 " + r.PlanSHA256 + ")"
	}
	line("File", file)
	host := r.Host
	var extra []string
	if r.PID != 0 {
		extra = append(extra, fmt.Sprintf("pid %d", r.PID))
	}
	if r.Trigger != "" {
		extra = append(extra, "trigger "+r.Trigger)
	}
	if len(extra) > 0 {
		host += " (" + strings.Join(extra, ", ") + ")"
	}
	line("Host", host)
	status := r.Status
	if !r.Finished.IsZero() {
		status += fmt.Sprintf(", exit code %d", r.ExitCode)
	}
	line("Status", status)
	line("Started", histTime(r.Started))
	if !r.Finished.IsZero() {
		line("Finished", fmt.Sprintf("%s (took %s)", histTime(r.Finished), histDuration(r.Finished.Sub(r.Started))))
	}
	line("Error", r.Error)
	for _, w := range r.LockWaits {
		line("Lock", histLockWait(w))
	}
	line("Log", r.LogFile)
	if r.Kind != "" && r.Kind != engine.KindApply {
		line("Kind", r.Kind+" of backup run "+r.SourceRun)
	}
	if rep := r.Report; rep != nil {
		v := fmt.Sprintf("RTO %s, RPO %s", histDuration(rep.RTO), histDuration(rep.RPO))
		if rep.RTOBudget > 0 {
			v += " (RTO budget " + histDuration(rep.RTOBudget) + ")"
		}
		line("Measured", v)
		for _, c := range rep.Checks {
			verdict := "equal"
			if len(c.Diffs) > 0 || c.Error != "" {
				verdict = "DIFFERS"
			}
			line("Compared", fmt.Sprintf("%s %s (%d values): %s", c.Step, c.What, c.Compared, verdict))
		}
		for _, p := range rep.Problems {
			line("Problem", p)
		}
	}
}

func histAttempt(b *strings.Builder, a engine.AttemptRecord) {
	head := fmt.Sprintf("  %s (%s)", a.StepID, a.StepType)
	if a.StepType == "" {
		head = "  " + a.StepID
	}
	parts := []string{head}
	if a.Attempt > 0 {
		parts = append(parts, fmt.Sprintf("attempt %d", a.Attempt))
	}
	parts = append(parts, a.Status)
	if a.Duration > 0 || a.Status != engine.StatusSkipped {
		parts = append(parts, histDuration(a.Duration))
	}
	if a.BytesIn > 0 || a.BytesOut > 0 {
		parts = append(parts, fmt.Sprintf("in %s, out %s", histBytes(a.BytesIn), histBytes(a.BytesOut)))
	}
	b.WriteString(strings.Join(parts, "  ") + "\n")
	var details [][2]string // label, value
	if a.Reason != "" {
		label := "reason"
		if a.Status == engine.StatusSkipped {
			label = "skipped"
		}
		details = append(details, [2]string{label, a.Reason})
	}
	if a.Error != "" {
		details = append(details, [2]string{"error", a.Error})
	}
	for _, w := range a.LockWaits {
		details = append(details, [2]string{"lock", histLockWait(w)})
	}
	keys := make([]string, 0, len(a.Outputs))
	for k := range a.Outputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		details = append(details, [2]string{k, histValue(a.Outputs[k])})
	}
	paths := make([]string, 0, len(a.Artifacts))
	for p := range a.Artifacts {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		details = append(details, [2]string{"artifact", p + "  sha256 " + a.Artifacts[p]})
	}
	width := 8
	for _, d := range details {
		width = max(width, len(d[0]))
	}
	for _, d := range details {
		fmt.Fprintf(b, "      %-*s  %s\n", width, d[0], histIndent(d[1], 6+width+2))
	}
}

// histValue renders an output value on one line, bounded: outputs can be
// large (lists of files), and show is for people.
func histValue(v any) string {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case json.Number:
		s = v.String()
	default:
		b, err := json.Marshal(v)
		if err != nil {
			s = fmt.Sprint(v)
		} else {
			s = string(b)
		}
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// histIndent indents the continuation lines of a multi-line value.
func histIndent(s string, n int) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+strings.Repeat(" ", n))
}

// cmdStatus: planrun status PLAN --max-age 26h [--json]. Exit 0 when the
// plan's last success finished within max-age, else 1: for cron and
// monitoring, in place of backup-age alert scripts. Without PLAN it lists
// every plan of the host (--host) or of every host (--all: the fleet
// view), judged by the ages given.
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", stdout, stderr)
	maxAgeText := fs.String("max-age", "", "the newest successful backup run must have finished within this `duration` (e.g. 26h, 2d)")
	drillAgeText := fs.String("drill-max-age", "", "the newest passed drill must have finished within this `duration` (e.g. 35d)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	hf := addHostFlags(fs, "plans")
	db := dbFlag(fs)
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		return fs.usageError("want one plan name at most, got %d arguments (planrun status PLAN --max-age 26h, or planrun status --all)", len(pos))
	}
	list := len(pos) == 0
	if !list && *maxAgeText == "" && *drillAgeText == "" {
		return fs.usageError("--max-age (backups) or --drill-max-age (drills) is required (e.g. --max-age 26h)")
	}
	ctx := context.Background()
	var maxAge, drillAge time.Duration
	for _, d := range []struct {
		flag, text string
		to         *time.Duration
	}{{"--drill-max-age", *drillAgeText, &drillAge}, {"--max-age", *maxAgeText, &maxAge}} {
		if d.text == "" {
			continue
		}
		v, err := engine.ParseDuration(d.text)
		if err == nil && v <= 0 {
			err = fmt.Errorf("must be positive")
		}
		if err != nil {
			return fs.usageError("%s: %v", d.flag, err)
		}
		*d.to = v
	}
	st, code := openStore(*db, &hf, stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	if list {
		return statusList(st, maxAge, drillAge, *asJSON, stdout, stderr)
	}
	plan := pos[0]
	if *maxAgeText == "" {
		ok, msg, last, err := drillCheck(st, plan, drillAge)
		if err != nil {
			fmt.Fprintf(stderr, "planrun status: %v\n", err)
			return engine.ExitFailed
		}
		res := statusResult{Plan: plan, OK: ok, Message: msg, DrillMaxAge: drillAge.String(), LastDrill: last, CheckedAt: time.Now().UTC()}
		return printStatus(res, *asJSON, stdout, stderr)
	}
	last, ok, err := st.LastSuccessOf(ctx, st.host, plan, engine.KindApply)
	if err != nil {
		fmt.Fprintf(stderr, "planrun status: %v\n", err)
		return engine.ExitFailed
	}
	latest, err := st.Runs(ctx, store.RunFilter{Host: st.host, Plan: plan, Kind: engine.KindApply, Limit: 1})
	if err != nil {
		fmt.Fprintf(stderr, "planrun status: %v\n", err)
		return engine.ExitFailed
	}
	now := time.Now()
	res := statusResult{Plan: plan, MaxAge: maxAge.String(), MaxAgeSeconds: maxAge.Seconds(), CheckedAt: now.UTC()}
	var lastRun *engine.RunRecord
	if len(latest) > 0 {
		lastRun = &latest[0]
		res.LastRun = lastRun
	}
	var msg strings.Builder
	if ok {
		res.LastSuccess = &last
		at := last.Finished
		if at.IsZero() {
			at = last.Started
		}
		age := now.Sub(at)
		res.AgeSeconds = age.Seconds()
		res.OK = age <= maxAge
		verdict := "OK"
		limit := ""
		if !res.OK {
			verdict = "STALE"
			limit = ", older than " + *maxAgeText
		}
		fmt.Fprintf(&msg, "%s %s: last success %s (%s ago%s, run %s)", verdict, plan, histTime(at),
			histDuration(age), limit, histShortID(last.ID))
	} else {
		fmt.Fprintf(&msg, "STALE %s: never succeeded", plan)
	}
	switch {
	case lastRun == nil:
		msg.WriteString("; no runs recorded")
	default:
		fmt.Fprintf(&msg, "; last run %s %s", histShortID(lastRun.ID), lastRun.Status)
		if lastRun.Finished.IsZero() {
			fmt.Fprintf(&msg, " since %s", histTime(lastRun.Started))
		} else {
			fmt.Fprintf(&msg, " at %s", histTime(lastRun.Finished))
		}
		if lastRun.Error != "" {
			first, _, _ := strings.Cut(lastRun.Error, "\n")
			fmt.Fprintf(&msg, ": %s", first)
		}
	}
	res.Message = msg.String()
	if *drillAgeText != "" {
		ok, dmsg, last, err := drillCheck(st, plan, drillAge)
		if err != nil {
			fmt.Fprintf(stderr, "planrun status: %v\n", err)
			return engine.ExitFailed
		}
		res.OK, res.Message = res.OK && ok, res.Message+"\n"+dmsg
		res.DrillMaxAge, res.LastDrill = drillAge.String(), last
	}
	return printStatus(res, *asJSON, stdout, stderr)
}

func printStatus(res statusResult, asJSON bool, stdout, stderr io.Writer) int {
	if asJSON {
		if err := histJSON(stdout, res); err != nil {
			fmt.Fprintf(stderr, "planrun status: %v\n", err)
			return engine.ExitFailed
		}
	} else {
		fmt.Fprintln(stdout, res.Message)
	}
	if res.OK {
		return engine.ExitOK
	}
	return engine.ExitFailed
}

type statusResult struct {
	Plan          string            `json:"plan"`
	OK            bool              `json:"ok"`
	Message       string            `json:"message"`
	MaxAge        string            `json:"max_age,omitempty"`
	MaxAgeSeconds float64           `json:"max_age_seconds,omitempty"`
	CheckedAt     time.Time         `json:"checked_at"`
	AgeSeconds    float64           `json:"age_seconds,omitempty"`
	LastSuccess   *engine.RunRecord `json:"last_success"`
	LastRun       *engine.RunRecord `json:"last_run"`
	DrillMaxAge   string            `json:"drill_max_age,omitempty"`
	LastDrill     *engine.RunRecord `json:"last_drill,omitempty"`
}

// drillCheck reports whether the plan's newest passed drill is recent
// enough: the monthly restore test, checked like --max-age checks backups.
func drillCheck(st *readStore, plan string, maxAge time.Duration) (ok bool, msg string, last *engine.RunRecord, err error) {
	r, found, err := st.LastSuccessOf(context.Background(), st.host, plan, engine.KindDrill)
	if err != nil || !found {
		return false, fmt.Sprintf("DRILL STALE %s: no drill has passed", plan), nil, err
	}
	age := time.Since(r.Finished)
	ok = age <= maxAge
	verdict := "DRILL OK"
	if !ok {
		verdict = "DRILL STALE"
	}
	msg = fmt.Sprintf("%s %s: last passed drill %s (%s ago, run %s", verdict, plan, histTime(r.Finished), histDuration(age), histShortID(r.ID))
	if r.Report != nil {
		msg += ", RTO " + histDuration(r.Report.RTO)
	}
	return ok, msg + ")", &r, nil
}

// histLockWait says what a run or step waited for: "restic:/srv/repo
// (fleet): acquired after 2m3s, held by plan kaleem-daily (run …)".
func histLockWait(w engine.LockWait) string {
	s := fmt.Sprintf("%s (%s): %s", w.Resource, w.Scope, w.Outcome)
	if w.Waited >= time.Millisecond {
		s += " after " + histDuration(w.Waited)
	}
	if w.Holder != "" {
		s += ", held by " + w.Holder
	}
	if w.Error != "" {
		s += ": " + w.Error
	}
	return s
}

// fleetRow is one line of the list view of status: a plan's runs of one
// kind on one host.
type fleetRow struct {
	Host        string            `json:"host"`
	Plan        string            `json:"plan"`
	Kind        string            `json:"kind"`
	Verdict     string            `json:"verdict,omitempty"` // OK or STALE, when an age was given for the kind
	LastSuccess *engine.RunRecord `json:"last_success"`
	AgeSeconds  float64           `json:"age_seconds,omitempty"`
	LastRun     *engine.RunRecord `json:"last_run"`
	Running     int               `json:"running"`
}

// statusList prints every plan of the selected hosts with its last
// success and its age: the fleet view. With --max-age (backups) or
// --drill-max-age (drills) each row of that kind is judged, and a stale
// one makes the exit code 1.
func statusList(st *readStore, maxAge, drillAge time.Duration, asJSON bool, stdout, stderr io.Writer) int {
	sums, err := st.Summaries(context.Background(), store.SummaryFilter{Host: st.host, NoAttempts: true})
	if err != nil {
		fmt.Fprintf(stderr, "planrun status: %v\n", err)
		return engine.ExitFailed
	}
	now := time.Now()
	rows := make([]fleetRow, 0, len(sums))
	stale := 0
	for _, s := range sums {
		row := fleetRow{Host: s.Host, Plan: s.Plan, Kind: s.Kind, LastSuccess: s.LastSuccess, LastRun: s.Last, Running: s.Running}
		limit := map[string]time.Duration{engine.KindApply: maxAge, engine.KindDrill: drillAge}[s.Kind]
		age := time.Duration(-1)
		if s.LastSuccess != nil {
			at := s.LastSuccess.Finished
			if at.IsZero() {
				at = s.LastSuccess.Started
			}
			age = now.Sub(at)
			row.AgeSeconds = age.Seconds()
		}
		if limit > 0 {
			row.Verdict = "OK"
			if age < 0 || age > limit {
				row.Verdict = "STALE"
				stale++
			}
		}
		rows = append(rows, row)
	}
	code := engine.ExitOK
	if stale > 0 {
		code = engine.ExitFailed
	}
	if asJSON {
		if err := histJSON(stdout, rows); err != nil {
			fmt.Fprintf(stderr, "planrun status: %v\n", err)
			return engine.ExitFailed
		}
		return code
	}
	if len(rows) == 0 {
		where := "recorded in " + st.Where()
		if st.host != "" {
			where = "of host " + st.host + " " + where
		}
		fmt.Fprintf(stdout, "no runs %s\n", where)
		return code
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tPLAN\tKIND\tVERDICT\tLAST SUCCESS (UTC)\tAGE\tLAST RUN")
	for _, r := range rows {
		success, age := "never", "-"
		if r.LastSuccess != nil {
			success = histShortID(r.LastSuccess.ID) + " " + histTime(r.LastSuccess.Finished)
			age = histDuration(time.Duration(r.AgeSeconds * float64(time.Second)))
		}
		last := "-"
		if r.LastRun != nil {
			last = histShortID(r.LastRun.ID) + " " + r.LastRun.Status
			if r.LastRun.Error != "" {
				first, _, _ := strings.Cut(r.LastRun.Error, "\n")
				last += ": " + first
			}
		}
		if r.Running > 0 {
			last += fmt.Sprintf(" (%d running)", r.Running)
		}
		verdict := r.Verdict
		if verdict == "" {
			verdict = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, r.Plan, r.Kind, verdict, success, age, last)
	}
	if err := tw.Flush(); err != nil {
		return engine.ExitFailed
	}
	if stale > 0 {
		fmt.Fprintf(stdout, "%d of %d stale\n", stale, len(rows))
	}
	return code
}

// histShortID is the id as `runs` lists it; `show` accepts it back.
func histShortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func histTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.DateTime) + " UTC"
}

// histDuration prints 850ms, 1.5s, 5m12s, 1h5s (not 1h0m5s), 3d2h: whole
// seconds from a minute on, days from 24h on.
func histDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	d = d.Round(time.Second)
	var b strings.Builder
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	return b.String()
}

// histBytes prints a byte count in binary units (1.5 GiB).
func histBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		if f < 1024 || u == "TiB" {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%d B", n)
}
