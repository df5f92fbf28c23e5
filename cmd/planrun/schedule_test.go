package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/robfig/cron/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

var shippedScheduled = []string{"kaleem-daily", "kaleem-restore-test", "chitlaq-full", "chitlaq-incremental"}

// scratchSystemdRoot is a root that systemd-analyze verify --root can
// check units in: the distribution's units (sysinit.target, ...) and a
// planrun binary at /usr/local/bin/planrun.
func scratchSystemdRoot(t *testing.T) (root, analyze string) {
	analyze = testenv.RequireTool(t, "systemd-analyze")
	root = t.TempDir()
	sys := "/usr/lib/systemd/system"
	if _, err := os.Stat(sys); err != nil {
		sys = "/lib/systemd/system"
	}
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755))
	out, err := exec.Command("cp", "-a", sys, filepath.Join(root, "usr/lib/systemd/")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	bin := filepath.Join(root, "usr/local/bin/planrun")
	require.NoError(t, os.MkdirAll(filepath.Dir(bin), 0o755))
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755))
	return root, analyze
}

func shippedPlan(t *testing.T, name string) string {
	abs, err := filepath.Abs(filepath.Join("../../plans", name+".yaml"))
	require.NoError(t, err)
	return abs
}

// The shipped plans' units verify cleanly in a scratch systemd root, and
// show prints exactly what install wrote.
func TestScheduleSystemdUnitsVerify(t *testing.T) {
	root, analyze := scratchSystemdRoot(t)
	args := []string{"--backend", "systemd", "--root", root, "--exec", "/usr/local/bin/planrun"}
	var plans, units []string
	for _, n := range shippedScheduled {
		plans = append(plans, shippedPlan(t, n))
		units = append(units, "planrun-"+n+".service", "planrun-"+n+".timer")
	}

	r := runCLI(t, append(append([]string{"schedule", "install", "--dry-run"}, args...), plans...)...)
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	_, err := os.Stat(filepath.Join(root, "etc"))
	assert.True(t, os.IsNotExist(err), "--dry-run wrote under %s", root)

	show := runCLI(t, append(append([]string{"schedule", "show"}, args...), plans...)...)
	require.Equal(t, engine.ExitOK, show.code, show.stderr)
	r = runCLI(t, append(append([]string{"schedule", "install"}, args...), plans...)...)
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "systemctl daemon-reload && systemctl enable --now planrun-kaleem-daily.timer")

	var written strings.Builder
	for _, u := range units {
		path := filepath.Join(root, "etc/systemd/system", u)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		fi, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm(), u)
		written.WriteString("# /etc/systemd/system/" + u + "\n" + string(b))
	}
	assert.Equal(t, written.String(), show.stdout, "show prints what install writes")
	assert.Contains(t, show.stdout, "OnCalendar=*-*-* 03:00:00\nPersistent=true\n")
	assert.Contains(t, show.stdout, "OnCalendar=*-*-01 03:20:00\n")
	assert.Contains(t, show.stdout, "OnCalendar=*-*-* 02:00:00\n")
	assert.Contains(t, show.stdout, "OnCalendar=*-*-* 00/6:00:00\n")
	assert.Contains(t, show.stdout, "ExecStart=/usr/local/bin/planrun apply "+plans[0]+"\n")

	cmd := exec.Command(analyze, append([]string{"verify", "--root=" + root}, units...)...)
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, "systemd-analyze verify:\n%s", out)
	assert.Empty(t, strings.TrimSpace(string(out)), "systemd-analyze verify has findings")

	r = runCLI(t, "schedule", "list", "--backend", "systemd", "--root", root)
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	for _, n := range shippedScheduled {
		assert.Contains(t, r.stdout, n)
	}

	// A unit planrun did not write is never overwritten.
	foreign := filepath.Join(root, "etc/systemd/system/planrun-kaleem-daily.timer")
	require.NoError(t, os.WriteFile(foreign, []byte("[Timer]\nOnCalendar=daily\n"), 0o644))
	r = runCLI(t, append(append([]string{"schedule", "install"}, args...), plans[0])...)
	assert.Equal(t, engine.ExitFailed, r.code)
	assert.Contains(t, r.stderr, "was not written by planrun schedule")
	b, _ := os.ReadFile(foreign)
	assert.Equal(t, "[Timer]\nOnCalendar=daily\n", string(b))
}

// A broken unit does fail the same check (the test can fail).
func TestScheduleVerifyCatchesBadUnits(t *testing.T) {
	root, analyze := scratchSystemdRoot(t)
	dir := filepath.Join(root, "etc/systemd/system")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "x.service"),
		[]byte("[Service]\nType=oneshot\nExecStart=/usr/local/bin/planrun apply /p.yaml\nNice=lots\n"), 0o644))
	out, _ := exec.Command(analyze, "verify", "--root="+root, "x.service").CombinedOutput()
	assert.Contains(t, string(out), "Failed to parse nice priority")
}

func writePlan(t *testing.T, path, name, schedule string) {
	t.Helper()
	src := "version: 1\nname: " + name + "\nschedule:\n  " + schedule + "\nsteps:\n  - id: a\n    type: exec\n    with: {command: [\"true\"]}\n"
	require.NoError(t, os.WriteFile(path, []byte(src), 0o644))
}

// remove finds the units by what planrun wrote: after the plan file was
// renamed or deleted, and after the plan's name changed.
func TestScheduleRemoveAfterRename(t *testing.T) {
	root := t.TempDir()
	dir := t.TempDir()
	units := filepath.Join(root, "etc/systemd/system")
	sd := []string{"--backend", "systemd", "--root", root, "--exec", "/usr/local/bin/planrun"}
	schedule := func(args ...string) result {
		t.Helper()
		return runCLI(t, append(append([]string{"schedule"}, args...), sd...)...)
	}
	unitFiles := func() []string {
		m, _ := filepath.Glob(filepath.Join(units, "*"))
		for i := range m {
			m[i] = filepath.Base(m[i])
		}
		return m
	}

	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writePlan(t, a, "nightly", `on_calendar: "*-*-* 03:00:00"`)
	require.Equal(t, engine.ExitOK, schedule("install", a).code)
	assert.Equal(t, []string{"planrun-nightly.service", "planrun-nightly.timer"}, unitFiles())

	// Renamed: the old path still names it; list marks the file missing.
	require.NoError(t, os.Rename(a, b))
	r := schedule("list")
	assert.Contains(t, r.stdout, a+" (missing)")
	r = schedule("remove", a)
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Empty(t, unitFiles())

	// The plan's name changes: install replaces the old units.
	require.Equal(t, engine.ExitOK, schedule("install", b).code)
	writePlan(t, b, "nightly2", `cron: "0 3 * * *"`)
	r = schedule("install", b)
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Equal(t, []string{"planrun-nightly2.service", "planrun-nightly2.timer"}, unitFiles())
	// Offline enablement symlinks go too.
	wants := filepath.Join(units, "timers.target.wants")
	require.NoError(t, os.MkdirAll(wants, 0o755))
	require.NoError(t, os.Symlink("../planrun-nightly2.timer", filepath.Join(wants, "planrun-nightly2.timer")))

	// Deleted: remove by name, or --all.
	require.NoError(t, os.Remove(b))
	r = schedule("remove", "--dry-run", "nightly2")
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "would have removed nightly2")
	assert.Len(t, unitFiles(), 3)
	r = schedule("remove", "--all")
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	assert.Equal(t, []string{"timers.target.wants"}, unitFiles())
	m, _ := filepath.Glob(filepath.Join(wants, "*"))
	assert.Empty(t, m)

	// A service left without its timer is still planrun's to remove.
	require.Equal(t, engine.ExitOK, schedule("install", thirdPlan(t, dir)).code)
	require.NoError(t, os.Remove(filepath.Join(units, "planrun-third.timer")))
	r = schedule("list")
	assert.Contains(t, r.stdout, "third")
	require.Equal(t, engine.ExitOK, schedule("remove", "third").code)
	assert.Equal(t, []string{"timers.target.wants"}, unitFiles())

	r = schedule("remove", "nightly2")
	assert.Equal(t, engine.ExitFailed, r.code)
	assert.Contains(t, r.stderr, "no schedule written by planrun matches")
}

func thirdPlan(t *testing.T, dir string) string {
	p := filepath.Join(dir, "third.yaml")
	writePlan(t, p, "third", "on_calendar: weekly")
	return p
}

// The cron block sits between marker lines; other lines of the file stay
// byte for byte; every line parses as cron.
func TestScheduleCronBlock(t *testing.T) {
	root := t.TempDir()
	cronPath := filepath.Join(root, "etc/cron.d/planrun")
	require.NoError(t, os.MkdirAll(filepath.Dir(cronPath), 0o755))
	foreign := "# a line of the admin's\nMAILTO=ops@example.org\n17 * * * * root /usr/local/bin/other-job\n"
	require.NoError(t, os.WriteFile(cronPath, []byte(foreign), 0o600))
	cr := []string{"--backend", "cron", "--root", root, "--exec", "/usr/local/bin/planrun"}
	schedule := func(args ...string) result {
		t.Helper()
		return runCLI(t, append(append([]string{"schedule"}, args...), cr...)...)
	}
	var plans []string
	for _, n := range shippedScheduled {
		plans = append(plans, shippedPlan(t, n))
	}
	dir := t.TempDir()
	delayed := filepath.Join(dir, "delayed%plan.yaml")
	writePlan(t, delayed, "delayed", "{on_calendar: \"Mon..Fri 02:30\", randomized_delay: 15m}")
	plans = append(plans, delayed)

	show := schedule(append([]string{"show"}, plans...)...)
	require.Equal(t, engine.ExitOK, show.code, show.stderr)
	r := schedule(append([]string{"install"}, plans...)...)
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	data, err := os.ReadFile(cronPath)
	require.NoError(t, err)
	assert.Equal(t, "# /etc/cron.d/planrun\n"+string(data), show.stdout, "show prints what install writes")
	fi, err := os.Stat(cronPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	text := string(data)
	require.True(t, strings.HasPrefix(text, foreign), "foreign lines kept:\n%s", text)

	parser := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	block := strings.TrimPrefix(text, foreign)
	lines := strings.Split(strings.TrimSuffix(block, "\n"), "\n")
	require.Equal(t, cronBegin, lines[0])
	require.Equal(t, cronEnd, lines[len(lines)-1])
	jobs := 0
	for _, l := range lines[1 : len(lines)-1] {
		if strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		require.Greater(t, len(f), 6, l)
		_, err := parser.Parse(strings.Join(f[:5], " "))
		assert.NoError(t, err, "cron line %q", l)
		assert.Equal(t, "root", f[5], l)
		// The command is valid shell once cron has turned \% back into %.
		command := strings.ReplaceAll(strings.SplitN(l, " root ", 2)[1], `\%`, "%")
		out, err := exec.Command("sh", "-n", "-c", command).CombinedOutput()
		assert.NoError(t, err, "sh -n %q: %s", command, out)
		jobs++
	}
	assert.Equal(t, len(plans), jobs)
	assert.Contains(t, block, "\n0 3 * * * root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PLANRUN_TRIGGER=cron nice -n 10 ionice -c 2 -n 7 /usr/local/bin/planrun apply "+plans[0]+"\n")
	assert.Contains(t, block, "\n20 3 1 * * root ")
	assert.Contains(t, block, "\n0 */6 * * * root ")
	assert.Contains(t, block, `30 2 * * 1-5 root sleep $(shuf -i 0-900 -n 1); PATH=`)
	assert.Contains(t, block, `'`+strings.ReplaceAll(delayed, "%", `\%`)+`'`, "% escaped for cron")

	// Reinstalling changes nothing; removing one keeps the rest.
	require.Equal(t, engine.ExitOK, schedule(append([]string{"install"}, plans...)...).code)
	again, _ := os.ReadFile(cronPath)
	assert.Equal(t, text, string(again))
	// Foreign lines after the block survive too.
	require.NoError(t, os.WriteFile(cronPath, []byte(text+"# after\n"), 0o644))
	r = schedule("remove", "kaleem-daily")
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	data, _ = os.ReadFile(cronPath)
	assert.NotContains(t, string(data), "kaleem-daily.yaml")
	assert.Contains(t, string(data), "kaleem-restore-test.yaml")
	assert.True(t, strings.HasSuffix(string(data), cronEnd+"\n# after\n"))
	r = schedule("list")
	assert.Contains(t, r.stdout, "chitlaq-full")
	assert.NotContains(t, r.stdout, "kaleem-daily ")

	r = schedule("remove", "--all")
	require.Equal(t, engine.ExitOK, r.code, r.stderr)
	data, _ = os.ReadFile(cronPath)
	assert.Equal(t, foreign+"# after\n", string(data), "only planrun's block went")

	// What cron cannot say is refused at install, naming the plan.
	sec := filepath.Join(dir, "sec.yaml")
	writePlan(t, sec, "sec", `on_calendar: "*-*-* 03:00:30"`)
	r = schedule("install", sec)
	assert.Equal(t, engine.ExitFailed, r.code)
	assert.Contains(t, r.stderr, sec+": schedule: cron starts on whole minutes only")
}

func TestScheduleUsage(t *testing.T) {
	dir := t.TempDir()
	none := filepath.Join(dir, "none.yaml")
	require.NoError(t, os.WriteFile(none, []byte("version: 1\nname: none\nsteps:\n  - id: a\n    type: exec\n    with: {command: [\"true\"]}\n"), 0o644))
	bad := filepath.Join(dir, "bad.yaml")
	writePlan(t, bad, "bad", `on_calendar: "*-*-* 3:61"`)
	for args, want := range map[string]string{
		"schedule":                            "want a subcommand",
		"schedule frob":                       "unknown subcommand",
		"schedule install":                    "want at least one plan file",
		"schedule remove":                     "give --all",
		"schedule list --all":                 "--all goes with remove",
		"schedule list --backend launchd":     "want systemd or cron",
		"schedule show " + none:               "declares no schedule:",
		"schedule show --backend cron " + bad: "bad.yaml:4:16: schedule.on_calendar: minute 61 is out of range (0-59)",
	} {
		r := runCLI(t, strings.Fields(args)...)
		assert.Equal(t, exitUsage, r.code, args)
		assert.Empty(t, r.stdout, args)
		assert.Contains(t, r.stderr, want, args)
	}
}
