package main

// planrun schedule: systemd timers or a cron.d block generated from the
// plans' `schedule:`. What planrun wrote is found again by a marker line
// in each file it wrote, never by today's plan files, so remove works
// after a plan was renamed or deleted.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps"
)

const (
	unitDir      = "etc/systemd/system"
	cronFile     = "etc/cron.d/planrun"
	unitMarker   = "# written by planrun schedule for "
	cronBegin    = "# BEGIN planrun schedule (written by planrun schedule; edit the plans' schedule:, not these lines)"
	cronEnd      = "# END planrun schedule"
	cronEntryTag = "# planrun schedule for "
)

type scheduleCmd struct {
	backend string // systemd or cron
	root    string // "/" or a scratch root
	exe     string // the planrun binary the units run
	live    bool   // systemd is PID 1 and root is "/": run systemctl
	dryRun  bool
	stdout  io.Writer
	stderr  io.Writer
}

// entry is one installed schedule, as read back from what planrun wrote.
type entry struct {
	plan  string   // plan name
	file  string   // plan file it was written for
	when  string   // OnCalendar values or cron time fields
	files []string // the files holding it (systemd), under root
	line  string   // the cron line (cron)
}

// cmdSchedule: planrun schedule install|remove|list|show [PLAN...]
func cmdSchedule(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("schedule", stdout, stderr)
	backend := fs.String("backend", "", "systemd or cron (default: systemd where it runs as PID 1, else cron)")
	root := fs.String("root", "/", "write under this `dir` instead of / (a scratch root; no systemctl is run)")
	exe := fs.String("exec", "", "the planrun `binary` the schedules run (default: this one)")
	dryRun := fs.Bool("dry-run", false, "install, remove: print what would change; change nothing")
	all := fs.Bool("all", false, "remove: every schedule planrun wrote")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return fs.usageError("want a subcommand: install, remove, list or show")
	}
	sub, plans := pos[0], pos[1:]
	switch {
	case sub != "install" && sub != "remove" && sub != "list" && sub != "show":
		return fs.usageError("unknown subcommand %q (want install, remove, list or show)", sub)
	case (sub == "install" || sub == "show") && len(plans) == 0:
		return fs.usageError("%s: want at least one plan file", sub)
	case sub == "remove" && len(plans) == 0 && !*all:
		return fs.usageError("remove: name the plans (file or name) or give --all")
	case *all && (sub != "remove" || len(plans) > 0):
		return fs.usageError("--all goes with remove and no plans")
	}
	sdBooted := isDir("/run/systemd/system") // sd_booted(3): systemd is PID 1
	c := &scheduleCmd{backend: *backend, root: *root, exe: *exe, dryRun: *dryRun, stdout: stdout, stderr: stderr}
	switch c.backend {
	case "":
		c.backend = map[bool]string{true: "systemd", false: "cron"}[sdBooted]
	case "systemd", "cron":
	default:
		return fs.usageError("--backend: want systemd or cron, got %q", c.backend)
	}
	if c.root == "" {
		c.root = "/"
	}
	c.live = sdBooted && filepath.Clean(c.root) == "/"
	if c.exe == "" {
		var err error
		if c.exe, err = os.Executable(); err != nil {
			fmt.Fprintf(stderr, "planrun schedule: cannot find this binary (give --exec): %v\n", err)
			return engine.ExitFailed
		}
	}
	if abs, err := filepath.Abs(c.exe); err == nil {
		c.exe = abs
	}
	if strings.ContainsAny(c.exe, "\n\r") {
		return fs.usageError("--exec: a path with a line break cannot be scheduled")
	}
	var err error
	switch sub {
	case "install", "show":
		var loaded []*engine.Plan
		if loaded, code = loadScheduled(plans, stderr); loaded == nil {
			return code
		}
		err = c.install(loaded, sub == "show")
	case "remove":
		err = c.remove(plans, *all)
	case "list":
		err = c.list(plans)
	}
	if err != nil {
		fmt.Fprintf(stderr, "planrun schedule %s: %v\n", sub, err)
		return engine.ExitFailed
	}
	return engine.ExitOK
}

// loadScheduled loads plans that declare a schedule, with absolute file
// names; nil and the exit code when one is invalid or has none.
func loadScheduled(files []string, stderr io.Writer) ([]*engine.Plan, int) {
	reg := steps.All()
	var out []*engine.Plan
	bad := false
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err == nil && strings.ContainsAny(abs, "\n\r") {
			err = fmt.Errorf("%q: a plan path with a line break cannot be scheduled", f)
		}
		if err == nil {
			var p *engine.Plan
			if p, err = engine.LoadFile(abs, reg); err == nil {
				if p.Schedule == nil {
					err = fmt.Errorf("%s: the plan declares no schedule: (see README, Schedules)", f)
				} else {
					out = append(out, p)
				}
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			bad = true
		}
	}
	if bad {
		return nil, engine.ExitInvalid
	}
	return out, engine.ExitOK
}

// file is one file install writes: its path under root and its text.
type file struct{ path, text string }

// install writes (or with show, prints) the plans' schedules.
func (c *scheduleCmd) install(plans []*engine.Plan, show bool) error {
	existing, err := c.entries()
	if err != nil {
		return err
	}
	var files []file
	var stale []entry // schedules of the same plan file under an old name
	if c.backend == "systemd" {
		for _, p := range plans {
			files = append(files, c.units(p)...)
			for _, e := range existing {
				if e.file == p.File && e.plan != p.Name {
					stale = append(stale, e)
				}
			}
		}
	} else {
		f, err := c.cronFile(plans, existing)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	for _, f := range files {
		if show {
			fmt.Fprintf(c.stdout, "# %s\n%s", c.display(f.path), f.text)
			continue
		}
		if err := c.writeFile(f); err != nil {
			return err
		}
	}
	if show {
		return nil
	}
	if err := c.removeUnits(stale); err != nil || c.dryRun {
		return err
	}
	for _, p := range plans {
		fmt.Fprintf(c.stdout, "installed %s (%s): %s\n", p.Name, c.backend, strings.Join(when(p.Schedule, c.backend), "; "))
	}
	if c.backend != "systemd" {
		for _, p := range plans {
			if p.Schedule.Persistent {
				fmt.Fprintf(c.stdout, "note: cron does not catch up a start missed while the host was off (%s has persistent: true; the systemd backend does)\n", p.Name)
			}
		}
		return nil
	}
	var timers []string
	for _, p := range plans {
		timers = append(timers, "planrun-"+p.Name+".timer")
	}
	if !c.live {
		fmt.Fprintf(c.stdout, "systemd is not running here (not PID 1, or --root): run `systemctl daemon-reload && systemctl enable --now %s` where it runs\n", strings.Join(timers, " "))
		return nil
	}
	if err := c.systemctl("daemon-reload"); err != nil {
		return err
	}
	return c.systemctl(append([]string{"enable", "--now"}, timers...)...)
}

// when is what a schedule becomes for backend, for messages.
func when(s *engine.Schedule, backend string) []string {
	if backend == "systemd" {
		return s.OnCalendars()
	}
	t, err := s.CronTime()
	if err != nil {
		return []string{err.Error()}
	}
	return []string{t}
}

// units are a plan's service and timer.
func (c *scheduleCmd) units(p *engine.Plan) []file {
	name := filepath.Join(c.root, unitDir, "planrun-"+p.Name)
	head := unitMarker + p.File + "\n# (planrun schedule remove deletes this file; planrun schedule install rewrites it)\n"
	service := head + `[Unit]
Description=planrun plan ` + p.Name + `
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
Environment=PLANRUN_TRIGGER=systemd
ExecStart=` + systemdQuote(c.exe) + ` apply ` + systemdQuote(p.File) + `
# Low CPU and I/O priority: a backup must not starve the services it backs up.
Nice=10
CPUSchedulingPolicy=batch
IOSchedulingClass=best-effort
IOSchedulingPriority=7
# Sandboxing that still lets a plan read its sources and write its backup
# root: ProtectSystem=full makes /usr, /boot and /etc read-only (backup
# roots, the run store in /var/lib/planrun and restore scratch dirs are
# elsewhere); no ProtectHome, as sources, rclone configs and restic caches
# often live under /home and /root. PrivateTmp: the plan's temp files
# vanish with the run.
PrivateTmp=yes
NoNewPrivileges=yes
ProtectSystem=full
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
`
	s := p.Schedule
	timer := head + `[Unit]
Description=Start planrun plan ` + p.Name + ` on schedule

[Timer]
`
	for _, oc := range s.OnCalendars() {
		timer += "OnCalendar=" + oc + "\n"
	}
	timer += fmt.Sprintf("Persistent=%t\nRandomizedDelaySec=%d\n\n[Install]\nWantedBy=timers.target\n",
		s.Persistent, int64((s.RandomizedDelay+999_999_999)/1e9))
	return []file{{name + ".service", service}, {name + ".timer", timer}}
}

// cronFile is /etc/cron.d/planrun with the plans' lines merged into
// planrun's block; lines outside the block stay as they are.
func (c *scheduleCmd) cronFile(plans []*engine.Plan, existing []entry) (file, error) {
	path := filepath.Join(c.root, cronFile)
	before, _, after, err := readCronFile(path)
	if err != nil {
		return file{}, err
	}
	keep := map[string]entry{}
	for _, e := range existing {
		keep[e.file] = e
	}
	for _, p := range plans {
		for _, e := range existing {
			if e.plan == p.Name {
				delete(keep, e.file) // the plan moved to another file
			}
		}
		t, err := p.Schedule.CronTime()
		if err != nil {
			return file{}, fmt.Errorf("%s: schedule: %v", p.File, err)
		}
		keep[p.File] = entry{plan: p.Name, file: p.File, when: t, line: t + " root " + c.cronCommand(p)}
	}
	return file{path, cronText(before, sortedEntries(keep), after)}, nil
}

func sortedEntries(m map[string]entry) []entry {
	var out []entry
	for _, e := range m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].plan < out[j].plan })
	return out
}

// cronCommand runs the plan at low priority with systemd's default PATH
// (cron's own, /usr/bin:/bin, misses tools in /usr/local/bin and sbin);
// cron has no randomized delay of its own, so a random sleep comes first.
func (c *scheduleCmd) cronCommand(p *engine.Plan) string {
	cmd := "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PLANRUN_TRIGGER=cron nice -n 10 ionice -c 2 -n 7 " + shQuote(c.exe) + " apply " + shQuote(p.File)
	if d := int64((p.Schedule.RandomizedDelay + 999_999_999) / 1e9); d > 0 {
		cmd = fmt.Sprintf("sleep $(shuf -i 0-%d -n 1); ", d) + cmd
	}
	return strings.ReplaceAll(cmd, "%", `\%`) // cron turns a bare % into a newline
}

func cronText(before []string, entries []entry, after []string) string {
	var b strings.Builder
	for _, l := range before {
		b.WriteString(l + "\n")
	}
	if len(entries) > 0 {
		b.WriteString(cronBegin + "\n")
		for _, e := range entries {
			fmt.Fprintf(&b, "%s%s (plan %s)\n%s\n", cronEntryTag, e.file, e.plan, e.line)
		}
		b.WriteString(cronEnd + "\n")
	}
	for _, l := range after {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// readCronFile splits the cron file into the lines before planrun's
// block, the block's entries and the lines after it.
func readCronFile(path string) (before []string, entries []entry, after []string, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil, nil
	} else if err != nil {
		return nil, nil, nil, err
	}
	state := 0 // 0 before the block, 1 in it, 2 after it
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		switch {
		case state == 0 && l == cronBegin:
			state = 1
		case state == 1 && l == cronEnd:
			state = 2
		case state == 1 && strings.HasPrefix(l, cronEntryTag):
			f, rest, _ := strings.Cut(strings.TrimPrefix(l, cronEntryTag), " (plan ")
			entries = append(entries, entry{file: f, plan: strings.TrimSuffix(rest, ")")})
		case state == 1 && len(entries) > 0 && entries[len(entries)-1].line == "":
			e := &entries[len(entries)-1]
			e.line = l
			if f := strings.Fields(l); len(f) >= 5 {
				e.when = strings.Join(f[:5], " ")
			}
		case state == 1:
			return nil, nil, nil, fmt.Errorf("%s:%d: unexpected line inside planrun's block (edit the plans, then planrun schedule install)", path, n)
		case state == 0:
			before = append(before, l)
		default:
			after = append(after, l)
		}
	}
	if state == 1 {
		return nil, nil, nil, fmt.Errorf("%s: planrun's block has no end line %q", path, cronEnd)
	}
	return before, entries, after, sc.Err()
}

// entries are the schedules planrun wrote for the backend.
func (c *scheduleCmd) entries() ([]entry, error) {
	if c.backend == "cron" {
		_, es, _, err := readCronFile(filepath.Join(c.root, cronFile))
		return es, err
	}
	// A service whose timer is gone (or the reverse) is still found.
	paths, err := filepath.Glob(filepath.Join(c.root, unitDir, "planrun-*"))
	if err != nil {
		return nil, err
	}
	byPlan := map[string]*entry{}
	var out []*entry
	for _, path := range paths {
		base, ext := filepath.Base(path), filepath.Ext(path)
		if ext != ".service" && ext != ".timer" {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		first, _, _ := strings.Cut(string(data), "\n")
		if !strings.HasPrefix(first, unitMarker) {
			continue // not planrun's: never touched
		}
		plan := strings.TrimSuffix(strings.TrimPrefix(base, "planrun-"), ext)
		e := byPlan[plan]
		if e == nil {
			e = &entry{plan: plan, file: strings.TrimPrefix(first, unitMarker)}
			byPlan[plan] = e
			out = append(out, e)
		}
		e.files = append(e.files, path)
		var cals []string
		for l := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "OnCalendar="); ok {
				cals = append(cals, v)
			}
		}
		if ext == ".timer" {
			e.when = strings.Join(cals, "; ")
		}
	}
	es := make([]entry, len(out))
	for i, e := range out {
		es[i] = *e
	}
	return es, nil
}

// matches reports whether a remove/list argument names e: its plan file
// (which may be gone), its plan name, or a plan file of that name.
func matches(e entry, arg string, reg *engine.Registry) bool {
	if arg == e.plan {
		return true
	}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return false
	}
	if abs == e.file {
		return true
	}
	p, err := engine.LoadFile(abs, reg)
	return err == nil && p.Name == e.plan
}

func (c *scheduleCmd) selected(args []string) ([]entry, error) {
	es, err := c.entries()
	if err != nil || len(args) == 0 {
		return es, err
	}
	reg := steps.All()
	var out []entry
	for _, e := range es {
		for _, a := range args {
			if matches(e, a, reg) {
				out = append(out, e)
				break
			}
		}
	}
	return out, nil
}

// remove deletes what planrun wrote for the named plans (or all).
func (c *scheduleCmd) remove(args []string, all bool) error {
	sel, err := c.selected(args)
	if err != nil {
		return err
	}
	if len(sel) == 0 {
		if all {
			return nil
		}
		return fmt.Errorf("no schedule written by planrun matches %q (see planrun schedule list)", args)
	}
	if c.backend == "systemd" {
		return c.removeUnits(sel)
	}
	path := filepath.Join(c.root, cronFile)
	before, es, after, err := readCronFile(path)
	if err != nil {
		return err
	}
	keep := map[string]entry{}
	for _, e := range es {
		keep[e.file] = e
	}
	for _, e := range sel {
		delete(keep, e.file)
		fmt.Fprintf(c.stdout, "%sremoved %s (cron, for %s)\n", c.would(), e.plan, e.file)
	}
	if c.dryRun {
		return nil
	}
	return c.writeFile(file{path, cronText(before, sortedEntries(keep), after)})
}

// removeUnits stops and deletes planrun's units of entries es, with any
// enablement symlinks left by an offline enable.
func (c *scheduleCmd) removeUnits(es []entry) error {
	if len(es) == 0 {
		return nil
	}
	for _, e := range es {
		timer := "planrun-" + e.plan + ".timer"
		if c.live && !c.dryRun {
			// Not fatal: a unit systemd never loaded cannot be disabled.
			if err := c.systemctl("disable", "--now", timer); err != nil {
				fmt.Fprintf(c.stderr, "planrun schedule: %v\n", err)
			}
		}
		links, _ := filepath.Glob(filepath.Join(c.root, unitDir, "*.wants", "planrun-"+e.plan+".*"))
		for _, f := range append(e.files, links...) {
			if c.dryRun {
				continue
			}
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		fmt.Fprintf(c.stdout, "%sremoved %s (systemd, for %s)\n", c.would(), e.plan, e.file)
	}
	if c.live && !c.dryRun {
		return c.systemctl("daemon-reload")
	}
	return nil
}

func (c *scheduleCmd) would() string {
	if c.dryRun {
		return "would have "
	}
	return ""
}

func (c *scheduleCmd) list(args []string) error {
	sel, err := c.selected(args)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLAN\tBACKEND\tWHEN\tFILE")
	for _, e := range sel {
		f := e.file
		if _, err := os.Stat(f); err != nil {
			f += " (missing)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.plan, c.backend, e.when, f)
	}
	return tw.Flush()
}

// writeFile replaces f atomically (temp file in the same directory, then
// rename), mode 0644; it refuses to overwrite a unit planrun did not write.
func (c *scheduleCmd) writeFile(f file) error {
	if c.dryRun {
		fmt.Fprintf(c.stdout, "# %s (dry run: not written)\n%s", c.display(f.path), f.text)
		return nil
	}
	if old, err := os.ReadFile(f.path); err == nil && c.backend == "systemd" && !bytes.HasPrefix(old, []byte(unitMarker)) {
		return fmt.Errorf("%s exists and was not written by planrun schedule: not overwritten", f.path)
	}
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeFileAtomic(f.path, []byte(f.text), 0o644)
}

// display is a path as it is on the target system (without --root).
func (c *scheduleCmd) display(path string) string {
	rel, err := filepath.Rel(c.root, path)
	if err != nil {
		return path
	}
	return "/" + rel
}

// systemctl is the only program planrun runs outside steps' process
// helper: a short call whose output goes to stderr.
func (c *scheduleCmd) systemctl(args ...string) error {
	cmd := exec.Command("systemctl", args...)
	cmd.Stdout, cmd.Stderr = c.stderr, c.stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("systemctl %s: %v", strings.Join(args, " "), err)
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// systemdQuote quotes one ExecStart= word: % and $ are escaped so that
// systemd expands neither specifiers nor variables in it.
func systemdQuote(s string) string {
	s = strings.NewReplacer("%", "%%", "$", "$$").Replace(s)
	if !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// shQuote quotes a word for the shell cron runs the line with.
func shQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
