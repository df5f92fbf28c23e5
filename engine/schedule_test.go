package engine

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/internal/testenv"
)

// Calendar expressions the validator accepts, with their cron form ("" :
// cron cannot say it).
var goodCalendars = map[string]string{
	"*-*-* 03:00:00":            "0 3 * * *",
	"*-*-01 03:20:00":           "20 3 1 * *",
	"*-*-* 00/6:00:00":          "0 */6 * * *",
	"*-*-* 1..20/3:00":          "0 1,4,7,10,13,16,19 * * *",
	"Mon..Fri 02:30":            "30 2 * * 1-5",
	"mon,wed *-*-* 3:0":         "0 3 * * 1,3",
	"Sat,Sun 04:15":             "15 4 * * 0,6",
	"Sunday *-*-* 01:00":        "0 1 * * 0",
	"*-1,4,7,10-1":              "0 0 1 */3 *",
	"*:0/15":                    "*/15 * * * *",
	"03:00":                     "0 3 * * *",
	"daily":                     "0 0 * * *",
	"weekly":                    "0 0 * * 1",
	"monthly":                   "0 0 1 * *",
	"quarterly":                 "0 0 1 */3 *",
	"hourly":                    "0 * * * *",
	"2026-*-* 00:00":            "",
	"*-*-* 03:00:30":            "",
	"Mon *-*-01..07 03:00":      "",
	"*-12-24,25,26 22:00:00":    "0 22 24-26 12 *",
	"*-*-* 08..17:00/30:00":     "0,30 8-17 * * *",
	"Mon,Tue,Wed,Thu *-*-* 1:2": "2 1 * * 1-4",
}

var badCalendars = map[string]string{
	"":                   "empty",
	"*-*-* 24:00":        "hour 24 is out of range",
	"*-*-* */6:00":       "0/STEP",
	"12..5:00":           "runs backwards",
	"*-*-* 3:00 UTC":     "time zones are not supported",
	"*-*-* 3/0:00":       "step",
	" *-*-* 3:00":        "single spaces",
	"*-*-* 03:00  ":      "single spaces",
	"*-02~01":            "~",
	"Mond 03:00":         "not a weekday",
	"Sun..Mon":           "runs backwards",
	"*-13-01":            "month 13",
	"3:00 *-*-*":         "expected",
	"*-*-* 03:00:00.5":   "second",
	"1969-01-01":         "year 1969",
	"every day at three": "not a weekday",
}

var goodCrons = []string{"0 3 * * *", "20 3 1 * *", "0 */6 * * *", "*/15 9-17 * * 1-5", "30 2 * * sun",
	"0 0 1 jan *", "0 4 1,15 * 0", "0 0 13 * 5", "0 0 1-7 * 1", "@daily", "@weekly", "5 4 * * 0,6", "0 22-23/2 * * *"}

var badCrons = map[string]string{
	"0 3 * *":         "expected 5 fields",
	"60 3 * * *":      "minute 60",
	"0 3 * * 8":       "day of week 8",
	"0 3 0 * *":       "day of month 0",
	"0 3 * * mon-fri": "expected a number",
	"5/10 * * * *":    "*/STEP or N-M/STEP",
	"@reboot":         "unknown shorthand",
	"0 3 * * */0":     "step",
}

func TestScheduleValidation(t *testing.T) {
	for text, wantCron := range goodCalendars {
		c, err := parseOnCalendar(text)
		if !assert.NoError(t, err, "%q", text) {
			continue
		}
		got, err := c.cron()
		if wantCron == "" {
			assert.Error(t, err, "%q has no cron form", text)
		} else {
			assert.NoError(t, err, "%q", text)
			assert.Equal(t, wantCron, got, "cron form of %q", text)
		}
	}
	for text, want := range badCalendars {
		_, err := parseOnCalendar(text)
		if assert.Error(t, err, "%q", text) {
			assert.Contains(t, err.Error(), want, "%q", text)
		}
	}
	for _, text := range goodCrons {
		_, err := parseCron(text)
		assert.NoError(t, err, "%q", text)
	}
	// Debian's cron reads 7 as Sunday too (robfig/cron does not: checked here).
	c, err := parseCron("0 4 * * 7")
	require.NoError(t, err)
	assert.Equal(t, []string{"Sun *-*-* 04:00:00"}, (&Schedule{Cron: "x", cal: c}).OnCalendars())
	// Debian's cron (vixie) counts a day field starting with * (*/2) as
	// unrestricted, so both day fields must match; robfig/cron differs.
	c, err = parseCron("0 0 */2 * 1")
	require.NoError(t, err)
	assert.Equal(t, []string{"Mon *-*-01/2 00:00:00"}, (&Schedule{Cron: "x", cal: c}).OnCalendars())
	c, err = parseCron("0 0 1-7 * 1")
	require.NoError(t, err)
	assert.Equal(t, []string{"*-*-01..07 00:00:00", "Mon *-*-* 00:00:00"}, (&Schedule{Cron: "x", cal: c}).OnCalendars())
	for text, want := range badCrons {
		_, err := parseCron(text)
		if assert.Error(t, err, "%q", text) {
			assert.Contains(t, err.Error(), want, "%q", text)
		}
	}
}

// A plan's schedule is checked at load time, with line:col.
func TestScheduleInPlan(t *testing.T) {
	plan := func(sched string) string {
		return "version: 1\nname: p\nschedule:\n" + sched + "steps:\n  - id: a\n    type: noop\n"
	}
	reg := NewRegistry(Def[struct{}]{Name: "noop", Summary: "does nothing",
		Run: func(context.Context, *Env, *struct{}) (Outputs, error) { return nil, nil }}.Type())
	p, err := Load("p.yaml", []byte(plan("  on_calendar: \"*-*-* 03:00:00\"\n  randomized_delay: 10m\n")), reg)
	require.NoError(t, err)
	assert.Equal(t, &Schedule{OnCalendar: "*-*-* 03:00:00", RandomizedDelay: 10 * time.Minute, Persistent: true,
		Line: 4, Col: 3, cal: p.Schedule.cal}, p.Schedule)
	p, err = Load("p.yaml", []byte(plan("  cron: \"0 */6 * * *\"\n  persistent: false\n")), reg)
	require.NoError(t, err)
	assert.False(t, p.Schedule.Persistent)
	assert.Equal(t, []string{"*-*-* 00/6:00:00"}, p.Schedule.OnCalendars())

	for sched, want := range map[string]string{
		"  on_calendar: \"*-*-* 25:00\"\n":              "p.yaml:4:16: schedule.on_calendar: hour 25 is out of range (0-23)",
		"  cron: \"0 3 * *\"\n":                         "p.yaml:4:9: schedule.cron: expected 5 fields",
		"  on_calendar: daily\n  cron: \"0 3 * * *\"\n": "p.yaml:5:9: schedule: give on_calendar or cron, not both",
		"  randomized_delay: 5m\n":                      "p.yaml:4:3: schedule: give on_calendar",
		"  on_calender: daily\n":                        "p.yaml:4:3: schedule: unknown key \"on_calender\" (did you mean \"on_calendar\"?)",
	} {
		_, err := Load("p.yaml", []byte(plan(sched)), reg)
		if assert.Error(t, err, "%q", sched) {
			assert.Contains(t, err.Error(), want)
		}
	}
}

// What the validator accepts, systemd accepts; what it refuses for
// syntax, systemd refuses too (the unsupported ~ and time zones aside).
// And the cron forms fire when systemd's calendar does.
func TestCalendarsAgreeWithSystemd(t *testing.T) {
	analyze := requireSystemdAnalyze(t)
	for text := range goodCalendars {
		_, err := systemdNext(analyze, text, 1)
		assert.NoError(t, err, "systemd-analyze calendar %q", text)
	}
	for text := range badCalendars {
		if strings.Contains(text, "~") || strings.Contains(text, "UTC") || strings.Contains(text, ".5") || text == "1969-01-01" {
			continue // valid for systemd, outside what planrun accepts
		}
		_, err := systemdNext(analyze, text, 1)
		assert.Error(t, err, "systemd-analyze calendar %q", text)
	}
	parser := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	// Same firing times: a calendar and its cron form, a cron and its
	// OnCalendar form(s).
	check := func(calendars []string, cronText string) {
		sched, err := parser.Parse(cronText)
		require.NoError(t, err, "robfig/cron parses %q", cronText)
		before := time.Now().UTC()
		var got []time.Time
		for _, c := range calendars {
			ts, err := systemdNext(analyze, c, 12)
			require.NoError(t, err, "%q", c)
			got = mergeTimes(got, ts)
		}
		require.GreaterOrEqual(t, len(got), 12, "%q", calendars)
		got = got[:12]
		// systemd's "now" is between before and after; try both.
		ok := false
		for _, from := range []time.Time{before, time.Now().UTC()} {
			var want []time.Time
			for tm := from; len(want) < 12; {
				tm = sched.Next(tm)
				want = append(want, tm)
			}
			ok = ok || assert.ObjectsAreEqual(want, got)
		}
		assert.True(t, ok, "%q and %q fire at different times: systemd %v", calendars, cronText, got)
	}
	for text, c := range goodCalendars {
		if c != "" {
			check([]string{text}, c)
		}
	}
	for _, text := range goodCrons {
		s := &Schedule{Cron: text}
		var err error
		s.cal, err = parseCron(text)
		require.NoError(t, err)
		check(s.OnCalendars(), text)
	}
}

func requireSystemdAnalyze(t *testing.T) string {
	return testenv.RequireTool(t, "systemd-analyze")
}

var elapseRE = regexp.MustCompile(`(?m)^\s*(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$`)

// systemdNext runs systemd-analyze calendar and returns the next n times
// (UTC).
func systemdNext(analyze, text string, n int) ([]time.Time, error) {
	cmd := exec.Command(analyze, "calendar", "--iterations="+strconv.Itoa(n), text)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, &exec.ExitError{ProcessState: cmd.ProcessState, Stderr: out}
	}
	var ts []time.Time
	for _, m := range elapseRE.FindAllStringSubmatch(string(out), -1) {
		tm, err := time.Parse(time.DateTime, m[1])
		if err != nil {
			return nil, err
		}
		ts = append(ts, tm)
	}
	return ts, nil
}

// mergeTimes merges two sorted lists, dropping duplicates.
func mergeTimes(a, b []time.Time) []time.Time {
	var out []time.Time
	for len(a) > 0 || len(b) > 0 {
		var t time.Time
		switch {
		case len(b) == 0 || len(a) > 0 && a[0].Before(b[0]):
			t, a = a[0], a[1:]
		default:
			t, b = b[0], b[1:]
		}
		if len(out) == 0 || !out[len(out)-1].Equal(t) {
			out = append(out, t)
		}
	}
	return out
}
