package retention

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/planrun/planrun/internal/testenv"
)

var update = flag.Bool("update", false, "regenerate testdata/restic-*.golden with the real restic")

const stampLayout = "2006-01-02 15:04:05"

// goldenTimes: 400 days of daily backups at 02:30, with a second backup
// on every 9th day and a gap every 31st, so several rules interact.
func goldenTimes() []time.Time {
	start := time.Date(2023, 1, 1, 2, 30, 0, 0, time.UTC)
	var out []time.Time
	for d := 0; d < 400; d++ {
		day := start.AddDate(0, 0, d)
		if d%31 == 30 {
			continue
		}
		out = append(out, day)
		if d%9 == 4 {
			out = append(out, day.Add(13*time.Hour))
		}
	}
	return out
}

// resticKeeps runs the real restic: one snapshot per time, then
// `forget --dry-run --json` with the policy; it returns the kept times.
func resticKeeps(t *testing.T, times []time.Time, args ...string) map[string]bool {
	return resticForget(t, resticRepo(t, times), args)
}

type resticEnv struct {
	bin string
	env []string
}

// resticRepo makes a repository with one snapshot per time.
func resticRepo(t *testing.T, times []time.Time) resticEnv {
	t.Helper()
	restic := testenv.RequireTool(t, "restic")
	dir := t.TempDir()
	repo, data := filepath.Join(dir, "repo"), filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "RESTIC_REPOSITORY="+repo, "RESTIC_PASSWORD=test", "RESTIC_CACHE_DIR="+filepath.Join(dir, "cache"), "TZ=UTC")
	run := func(a ...string) []byte {
		cmd := exec.CommandContext(context.Background(), restic, a...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Errorf("restic %s: %v\n%s", strings.Join(a, " "), err, stderr)
			runtime.Goexit()
		}
		return out
	}
	run("init", "-q")
	// Backups take a shared lock: a few at a time cut restic's per-run
	// key derivation cost out of the wall time.
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, tm := range times {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			run("backup", "-q", "--host", "h", "--time", tm.UTC().Format(stampLayout), data)
		}()
	}
	wg.Wait()
	return resticEnv{bin: restic, env: env}
}

// resticForget asks restic which snapshots a policy keeps (dry run: the
// repository is unchanged, so one repository serves several policies).
func resticForget(t *testing.T, r resticEnv, args []string) map[string]bool {
	t.Helper()
	cmd := exec.Command(r.bin, append([]string{"forget", "--dry-run", "--json", "-q"}, args...)...)
	cmd.Env = r.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("restic forget %v: %v", args, err)
	}
	var groups []struct {
		Keep []struct {
			Time time.Time `json:"time"`
		} `json:"keep"`
	}
	if err := json.Unmarshal(out, &groups); err != nil {
		t.Fatalf("restic forget output: %v\n%s", err, out)
	}
	kept := map[string]bool{}
	for _, g := range groups {
		for _, k := range g.Keep {
			kept[k.Time.UTC().Format(stampLayout)] = true
		}
	}
	return kept
}

func ourKeeps(times []time.Time, p Policy) map[string]bool {
	items := make([]Item, len(times))
	for i, tm := range times {
		items[i] = Item{Name: tm.Format(stampLayout), Time: tm}
	}
	kept := map[string]bool{}
	for _, d := range Apply(items, p, times[len(times)-1]) {
		if d.Keep {
			kept[d.Time.UTC().Format(stampLayout)] = true
		}
	}
	return kept
}

func diffKeeps(t *testing.T, want, got map[string]bool) {
	t.Helper()
	var diffs []string
	for k := range want {
		if !got[k] {
			diffs = append(diffs, "restic keeps, we delete: "+k)
		}
	}
	for k := range got {
		if !want[k] {
			diffs = append(diffs, "we keep, restic deletes: "+k)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("kept sets differ (%d restic, %d ours):\n%s", len(want), len(got), strings.Join(diffs, "\n"))
	}
}

const goldenFile = "testdata/restic-0.14-daily7-weekly4-monthly6.golden"

// TestApplyMatchesResticGolden compares against what restic 0.14 kept for
// 400 days of backups (regenerate with -update; needs restic).
func TestApplyMatchesResticGolden(t *testing.T) {
	times := goldenTimes()
	if *update {
		kept := resticKeeps(t, times, "--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6")
		var b strings.Builder
		b.WriteString("# restic 0.14 forget --keep-daily 7 --keep-weekly 4 --keep-monthly 6 over goldenTimes(); UTC\n")
		for _, tm := range times {
			s := tm.UTC().Format(stampLayout)
			verdict := "delete"
			if kept[s] {
				verdict = "keep"
			}
			fmt.Fprintf(&b, "%s %s\n", s, verdict)
		}
		if err := os.WriteFile(goldenFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]bool{}
	var all []time.Time
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		tm, err := time.ParseInLocation(stampLayout, line[:i], time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, tm)
		if line[i+1:] == "keep" {
			want[line[:i]] = true
		}
	}
	if len(all) != len(goldenTimes()) {
		t.Fatalf("golden has %d entries, goldenTimes %d: regenerate with -update", len(all), len(goldenTimes()))
	}
	if len(want) < 10 {
		t.Fatalf("golden keeps only %d: suspicious", len(want))
	}
	diffKeeps(t, want, ourKeeps(all, Policy{Daily: 7, Weekly: 4, Monthly: 6}))
}

// TestApplyMatchesLiveRestic runs restic itself on a smaller, irregular
// history with several policies.
func TestApplyMatchesLiveRestic(t *testing.T) {
	testenv.RequireTool(t, "restic")
	var times []time.Time
	start := time.Date(2024, 2, 20, 0, 0, 0, 0, time.UTC)
	for d := 0; d < 75; d++ {
		day := start.AddDate(0, 0, d)
		if d%5 == 3 {
			continue
		}
		times = append(times, day.Add(time.Duration(1+d%7)*time.Hour+17*time.Minute))
		if d%4 == 0 {
			times = append(times, day.Add(time.Duration(20+d%3)*time.Hour))
		}
	}
	cases := []struct {
		args []string
		p    Policy
	}{
		{[]string{"--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6"}, Policy{Daily: 7, Weekly: 4, Monthly: 6}},
		{[]string{"--keep-last", "3", "--keep-hourly", "5", "--keep-weekly", "2", "--keep-yearly", "1"}, Policy{Last: 3, Hourly: 5, Weekly: 2, Yearly: 1}},
		{[]string{"--keep-daily", "10", "--keep-monthly", "2"}, Policy{Daily: 10, Monthly: 2}},
	}
	repo := resticRepo(t, times)
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			diffKeeps(t, resticForget(t, repo, c.args), ourKeeps(times, c.p))
		})
	}
}
