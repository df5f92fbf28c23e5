package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
)

func tempStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// record stores a finished run (took > 0) or a running one (took == 0).
func record(t *testing.T, st *store.Store, id, plan, status string, started time.Time, took time.Duration, atts ...engine.AttemptRecord) engine.RunRecord {
	t.Helper()
	ctx := context.Background()
	r := engine.RunRecord{ID: id, Plan: plan, PlanFile: "plans/" + plan + ".yaml", PlanSHA256: "5ca1ab1e",
		Host: "srv1", Trigger: "cron", PID: 4242, Started: started, Status: engine.StatusRunning,
		LogFile: "/var/lib/planrun/logs/" + id + ".log"}
	if err := st.StartRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	for _, a := range atts {
		a.RunID = id
		if err := st.RecordAttempt(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if took > 0 {
		r.Status, r.Finished = status, started.Add(took)
		if status == engine.StatusFailed {
			r.ExitCode, r.Error = 1, `step "upload" failed: rclone: exit status 1`
		}
		if err := st.FinishRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

type result struct {
	code           int
	stdout, stderr string
}

func call(f func(*store.Store, []string, *bytes.Buffer, *bytes.Buffer) int, st *store.Store, args ...string) result {
	var out, errb bytes.Buffer
	code := f(st, args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

// The verbs open the test's store by its path, as --db does.
func runs(st *store.Store, a []string, o, e *bytes.Buffer) int {
	return cmdRuns(append([]string{"--db", st.Path()}, a...), o, e)
}

func show(st *store.Store, a []string, o, e *bytes.Buffer) int {
	return cmdShow(append([]string{"--db", st.Path()}, a...), o, e)
}

func status(st *store.Store, a []string, o, e *bytes.Buffer) int {
	return cmdStatus(append([]string{"--db", st.Path()}, a...), o, e)
}

var base = time.Date(2024, 5, 1, 3, 0, 0, 0, time.UTC)

func TestRunsTable(t *testing.T) {
	st := tempStore(t)
	record(t, st, "aaaaaaaa11112222", "kaleem-daily", engine.StatusSuccess, base, 5*time.Minute+12*time.Second)
	record(t, st, "bbbbbbbb33334444", "chitlaq-full", engine.StatusFailed, base.Add(time.Hour), 90*time.Second)
	record(t, st, "cccccccc55556666", "kaleem-daily", "", base.Add(2*time.Hour), 0) // still running

	r := call(runs, st)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("runs: %+v", r)
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	want := []string{
		`^ID +PLAN +STATUS +KIND +STARTED \(UTC\) +DURATION +EXIT$`,
		`^cccccccc +kaleem-daily +running +apply +2024-05-01 05:00:00 +- +-$`,
		`^bbbbbbbb +chitlaq-full +failed +apply +2024-05-01 04:00:00 +1m30s +1$`,
		`^aaaaaaaa +kaleem-daily +success +apply +2024-05-01 03:00:00 +5m12s +0$`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines:\n%s", len(lines), r.stdout)
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i, lines[i], re)
		}
	}

	r = call(runs, st, "--plan", "kaleem-daily", "--limit", "1")
	if r.code != 0 || !strings.Contains(r.stdout, "cccccccc") || strings.Contains(r.stdout, "aaaaaaaa") {
		t.Errorf("--plan --limit 1: %+v", r)
	}
	r = call(runs, st, "--plan", "nope")
	if r.code != 0 || !strings.Contains(r.stdout, `no runs of plan "nope"`) {
		t.Errorf("empty: %+v", r)
	}
}

func TestRunsJSON(t *testing.T) {
	st := tempStore(t)
	a := record(t, st, "aaaaaaaa11112222", "kaleem-daily", engine.StatusSuccess, base, time.Minute)
	record(t, st, "bbbbbbbb33334444", "chitlaq-full", engine.StatusFailed, base.Add(time.Hour), time.Minute)

	r := call(runs, st, "--json", "--plan=kaleem-daily")
	var got []engine.RunRecord
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("runs --json: %v: %+v", err, r)
	}
	if len(got) != 1 || got[0].ID != a.ID || !got[0].Finished.Equal(a.Finished) || got[0].Status != engine.StatusSuccess {
		t.Errorf("runs --json = %+v", got)
	}
	r = call(runs, st, "--json", "--plan", "nope")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("empty --json should print [], got %q", r.stdout)
	}
}

func TestRunsUsage(t *testing.T) {
	st := tempStore(t)
	for _, args := range [][]string{{"--limit", "-1"}, {"--bogus"}, {"kaleem-daily"}, {"--limit", "x"}} {
		if r := call(runs, st, args...); r.code != 2 || r.stderr == "" {
			t.Errorf("runs %q: want exit 2 with a message, got %+v", args, r)
		}
	}
}

func showFixture(t *testing.T, st *store.Store) engine.RunRecord {
	t.Helper()
	return record(t, st, "deadbeef0001", "kaleem-daily", engine.StatusFailed, base, 2*time.Minute,
		engine.AttemptRecord{StepID: "dump", StepType: "mongodump", Attempt: 1, Status: engine.StatusFailed,
			Started: base, Finished: base.Add(time.Second), Duration: 1500 * time.Millisecond,
			Error: "mongodump: exit status 1\nFailed: connection refused"},
		engine.AttemptRecord{StepID: "dump", StepType: "mongodump", Attempt: 2, Status: engine.StatusSuccess,
			Started: base.Add(2 * time.Second), Finished: base.Add(62 * time.Second), Duration: time.Minute,
			BytesIn: 3 << 30, BytesOut: 512 << 20,
			Outputs: map[string]any{"path": "/backups/mongo/mongo.archive.zst.age", "size": 536870912,
				"sha256": "9f86d081884c7d65"},
			Artifacts: map[string]string{"/backups/mongo/mongo.archive.zst.age": "9f86d081884c7d65"}},
		engine.AttemptRecord{StepID: "snapshot", StepType: "restic-backup", Attempt: 1, Status: engine.StatusSuccess,
			Duration: 20 * time.Second, Outputs: map[string]any{"snapshot_id": "4d36af04"}},
		engine.AttemptRecord{StepID: "prune", StepType: "prune", Status: engine.StatusSkipped,
			Reason: `a backup step failed earlier in this run ("upload")`},
	)
}

func TestShowText(t *testing.T) {
	st := tempStore(t)
	run := showFixture(t, st)
	r := call(show, st, "deadbeef") // a unique prefix, as runs prints it
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("show: %+v", r)
	}
	for _, want := range []string{
		"Run:      deadbeef0001\n",
		"Plan:     kaleem-daily\n",
		"File:     plans/kaleem-daily.yaml (sha256 5ca1ab1e)\n",
		"Host:     srv1 (pid 4242, trigger cron)\n",
		"Status:   failed, exit code 1\n",
		"Started:  2024-05-01 03:00:00 UTC\n",
		"Finished: 2024-05-01 03:02:00 UTC (took 2m)\n",
		`Error:    step "upload" failed: rclone: exit status 1` + "\n",
		"Log:      " + run.LogFile + "\n",
		"  dump (mongodump)  attempt 1  failed  1.5s\n",
		"      error     mongodump: exit status 1\n                Failed: connection refused\n",
		"  dump (mongodump)  attempt 2  success  1m  in 3.0 GiB, out 512.0 MiB\n",
		"      path      /backups/mongo/mongo.archive.zst.age\n",
		"      sha256    9f86d081884c7d65\n",
		"      size      536870912\n",
		"      artifact  /backups/mongo/mongo.archive.zst.age  sha256 9f86d081884c7d65\n",
		"      snapshot_id  4d36af04\n",
		"  prune (prune)  skipped\n",
		`      skipped   a backup step failed earlier in this run ("upload")` + "\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show output lacks %q:\n%s", want, r.stdout)
		}
	}
	// Attempts in recorded order.
	if i, j := strings.Index(r.stdout, "attempt 1"), strings.Index(r.stdout, "prune (prune)"); i < 0 || j < i {
		t.Errorf("attempts out of order:\n%s", r.stdout)
	}
}

func TestShowJSONFlagAfterRun(t *testing.T) {
	st := tempStore(t)
	showFixture(t, st)
	r := call(show, st, "deadbeef0001", "--json")
	if r.code != 0 {
		t.Fatalf("show --json: %+v", r)
	}
	var got struct {
		Run      engine.RunRecord       `json:"run"`
		Attempts []engine.AttemptRecord `json:"attempts"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if got.Run.ID != "deadbeef0001" || len(got.Attempts) != 4 || got.Attempts[3].Reason == "" ||
		got.Attempts[1].Outputs["path"] != "/backups/mongo/mongo.archive.zst.age" {
		t.Errorf("show --json = %+v", got)
	}
}

func TestShowErrors(t *testing.T) {
	st := tempStore(t)
	record(t, st, "abc123", "p", engine.StatusSuccess, base, time.Second)
	record(t, st, "abc456", "p", engine.StatusSuccess, base.Add(time.Minute), time.Second)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "want one run id"},
		{[]string{"abc123", "abc456"}, 2, "want one run id"},
		{[]string{"--nope", "abc"}, 2, "flag provided but not defined"},
		{[]string{"abc"}, 1, "matches abc456, abc123"}, // newest first
		{[]string{"zzz"}, 1, `run "zzz": no such run`},
	} {
		r := call(show, st, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("show %q: got %d %q, want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.msg)
		}
	}
}

func TestStatus(t *testing.T) {
	st := tempStore(t)
	now := time.Now().UTC()
	// fresh: succeeded an hour ago.
	record(t, st, "fresh0001", "fresh", engine.StatusSuccess, now.Add(-61*time.Minute), time.Minute)
	// stale: succeeded 30h ago, failed since.
	record(t, st, "stale0001", "stale", engine.StatusSuccess, now.Add(-30*time.Hour), time.Minute)
	record(t, st, "stale0002", "stale", engine.StatusFailed, now.Add(-5*time.Hour), time.Minute)
	// never: only failures.
	record(t, st, "never0001", "never", engine.StatusFailed, now.Add(-2*time.Hour), time.Minute)

	for _, tc := range []struct {
		args []string
		code int
		re   string
	}{
		{[]string{"fresh", "--max-age", "26h"}, 0, `^OK fresh: last success \S+ \S+ UTC \(1h(\d+s)? ago, run fresh000\); last run fresh000 success at `},
		{[]string{"--max-age=26h", "stale"}, 1, `^STALE stale: last success .* \(1d5h59m(\d+s)? ago, older than 26h, run stale000\); last run stale000 failed at .*: step "upload" failed: rclone: exit status 1$`},
		{[]string{"stale", "--max-age", "2d"}, 0, `^OK stale: `}, // engine.ParseDuration syntax
		{[]string{"never", "--max-age", "26h"}, 1, `^STALE never: never succeeded; last run never000 failed at `},
		{[]string{"unknown-plan", "--max-age", "26h"}, 1, `^STALE unknown-plan: never succeeded; no runs recorded$`},
	} {
		r := call(status, st, tc.args...)
		if r.code != tc.code || !regexp.MustCompile(tc.re).MatchString(strings.TrimSuffix(r.stdout, "\n")) {
			t.Errorf("status %q: got %d %q (stderr %q), want %d matching %s", tc.args, r.code, r.stdout, r.stderr, tc.code, tc.re)
		}
		if strings.Count(r.stdout, "\n") != 1 {
			t.Errorf("status %q: want exactly one line, got %q", tc.args, r.stdout)
		}
	}
}

func TestStatusJSON(t *testing.T) {
	st := tempStore(t)
	now := time.Now().UTC()
	record(t, st, "stale0001", "stale", engine.StatusSuccess, now.Add(-30*time.Hour), time.Minute)
	r := call(status, st, "stale", "--max-age", "26h", "--json")
	var got struct {
		OK          bool              `json:"ok"`
		Plan        string            `json:"plan"`
		Message     string            `json:"message"`
		MaxAge      float64           `json:"max_age_seconds"`
		LastSuccess *engine.RunRecord `json:"last_success"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v: %q", err, r.stdout)
	}
	if r.code != 1 || got.OK || got.Plan != "stale" || got.MaxAge != 26*3600 ||
		got.LastSuccess == nil || got.LastSuccess.ID != "stale0001" || !strings.HasPrefix(got.Message, "STALE") {
		t.Errorf("status --json: code %d, %+v", r.code, got)
	}
}

func TestStatusUsage(t *testing.T) {
	st := tempStore(t)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"p"}, "--max-age (backups) or --drill-max-age (drills) is required"},
		{[]string{"p", "--drill-max-age", "soon"}, `--drill-max-age: invalid duration "soon"`},
		{[]string{"a", "b", "--max-age", "26h"}, "want one plan name at most"},
		{[]string{"--all", "--host", "h1"}, "--host and --all exclude each other"},
		{[]string{"p", "--max-age", "soon"}, `invalid duration "soon"`},
		{[]string{"p", "--max-age", "0s"}, "must be positive"},
	} {
		r := call(status, st, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("status %q: got %d %q, want 2 and %q", tc.args, r.code, r.stderr, tc.msg)
		}
	}
}

func TestHistDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                    "0s",
		850 * time.Millisecond:               "850ms",
		1500 * time.Millisecond:              "1.5s",
		5*time.Minute + 12*time.Second:       "5m12s",
		time.Hour + 5*time.Second:            "1h5s",
		3*24*time.Hour + 2*time.Hour:         "3d2h",
		2*time.Minute + 400*time.Millisecond: "2m",
		-time.Second:                         "0s",
	} {
		if got := histDuration(d); got != want {
			t.Errorf("histDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
