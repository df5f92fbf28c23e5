package steps

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// golden is what real restic 0.14 kept for the same 400 days (see
// steps/internal/retention/restic_test.go, which generates it).
const golden = "internal/retention/testdata/restic-0.14-daily7-weekly4-monthly6.golden"

func TestPruneStepMatchesRestic(t *testing.T) {
	f, err := os.Open(golden)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	var wantKeep []string
	var last time.Time
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		tm, err := time.Parse("2006-01-02 15:04:05", line[:i])
		if err != nil {
			t.Fatal(err)
		}
		name := "configs-" + tm.Format("20060102T150405Z") + ".tar.zst"
		os.WriteFile(filepath.Join(dir, name), nil, 0o600)
		os.WriteFile(filepath.Join(dir, name+".sha256"), nil, 0o600)
		if line[i+1:] == "keep" {
			wantKeep = append(wantKeep, name, name+".sha256")
		}
		last = tm
	}
	os.WriteFile(filepath.Join(dir, "unrelated.txt"), nil, 0o600)
	wantKeep = append(wantKeep, "unrelated.txt")
	sort.Strings(wantKeep)
	defer func(old func() time.Time) { pruneNow = old }(pruneNow)
	pruneNow = func() time.Time { return last.Add(time.Hour) }

	with := fmt.Sprintf("{dir: %s, pattern: 'configs-*.tar.zst', keep_daily: 7, keep_weekly: 4, keep_monthly: 6}", dir)
	before := listDir(t, dir)
	// Preview (the engine's dry-run) and dry_run: true only read.
	st, p := decode(t, "prune", with)
	lines := st.Preview(nil, p)
	if len(lines) != len(before)/2+1 || !strings.HasPrefix(lines[0], "read: ") ||
		!strings.Contains(strings.Join(lines, "\n"), "delete: "+dir+"/configs-20230101T023000Z.tar.zst (2023-01-01T02:30:00Z; matched no keep rule)") {
		t.Fatalf("preview:\n%s", strings.Join(lines, "\n"))
	}
	out := mustRun(t, "prune", strings.TrimSuffix(with, "}")+", dry_run: true}")
	if got := listDir(t, dir); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatal("dry run deleted files")
	}
	if out["kept"].(int)*2+1 != len(wantKeep) {
		t.Fatalf("dry run kept %v, want %d", out["kept"], (len(wantKeep)-1)/2)
	}
	mustRun(t, "prune", with)
	if got := listDir(t, dir); strings.Join(got, ",") != strings.Join(wantKeep, ",") {
		t.Fatalf("after prune:\n%v\nwant (restic):\n%v", got, wantKeep)
	}
}

func listDir(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestPruneStepMaxAgeByMtimeKeepsNewest(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	defer func(old func() time.Time) { pruneNow = old }(pruneNow)
	pruneNow = func() time.Time { return now }
	for i := 0; i < 5; i++ {
		p := filepath.Join(dir, fmt.Sprintf("mongo-%d.archive.gz", i))
		os.WriteFile(p, nil, 0o600)
		mt := now.AddDate(0, 0, -40-i) // all older than max_age
		os.Chtimes(p, mt, mt)
	}
	out := mustRun(t, "prune", fmt.Sprintf("{dir: %s, pattern: 'mongo-*.archive.gz', max_age: 30d, time_from: mtime}", dir))
	if out["deleted"].(int) != 4 {
		t.Fatalf("outputs %v", out)
	}
	assertOnly(t, dir, "mongo-0.archive.gz")
}

func TestPruneStepValidation(t *testing.T) {
	for with, want := range map[string]string{
		"{dir: /b, pattern: '../*', keep_last: 1}":   "no /",
		"{dir: /b, pattern: 'a/*.gz', keep_last: 1}": "no /",
		"{dir: /b, pattern: '[x', keep_last: 1}":     "syntax",
		"{dir: /b, pattern: 'x*', keep_daily: -3}":   "keep_daily",
	} {
		_, probs := decodeProbs(t, "prune", with)
		if len(probs) == 0 || !strings.Contains(probs[0].Msg, want) {
			t.Errorf("%s: problems %v, want %q", with, probs, want)
		}
	}
	env, _ := stepEnv(t)
	if _, err := runStep(t, context.Background(), env, "prune", "{dir: "+t.TempDir()+", pattern: 'x*'}"); err == nil || !strings.Contains(err.Error(), "keep_last") {
		t.Errorf("no rule: %v", err)
	}
	_, err := runStep(t, context.Background(), env, "prune", "{dir: "+t.TempDir()+", pattern: 'x*', keep_last: 1, time_from: name}")
	if err != nil {
		t.Errorf("empty dir: %v", err)
	}
}
