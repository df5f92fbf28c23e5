package steps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestDiskUsage(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "db", "a.dump"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	// A hard link counts once, as du counts it.
	if err := os.Link(filepath.Join(dir, "db", "a.dump"), filepath.Join(dir, "a.link")); err != nil {
		t.Fatal(err)
	}
	// A sparse file counts what it occupies, not its size.
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out := mustRun(t, "disk-usage", "{path: "+dir+", max_total: 1MiB}")
	used := out["total_bytes"].(int64)
	if out["ok"] != true || used < 300<<10 || used > 400<<10 || out["files"].(int64) != 2 || out["apparent_bytes"].(int64) != 300<<10+1<<30 {
		t.Fatalf("outputs %v", out)
	}
	du, err := exec.Command("du", "-s", "-B1", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(du))[0]; got != strconv.FormatInt(used, 10) {
		t.Errorf("total %d, du says %s", used, got)
	}

	env, log := stepEnv(t)
	out, err = runStep(t, context.Background(), env, "disk-usage", "{path: "+dir+", max_total: 100k}")
	if err == nil || !strings.Contains(err.Error(), "above max_total 100.0 KiB") || !strings.Contains(err.Error(), dir) || out["ok"] != false {
		t.Fatalf("want a limit error, got %v %v", err, out)
	}
	out, err = runStep(t, context.Background(), env, "disk-usage", "{path: "+dir+", max_total: 100k, warn_only: true}")
	if err != nil || out["ok"] != false || !strings.Contains(log.String(), "level=WARN") {
		t.Fatalf("warn_only: %v %v %s", err, out, log.String())
	}
	if _, err := runStep(t, context.Background(), env, "disk-usage", "{path: "+dir+"/none, max_total: 1k}"); err == nil || !strings.Contains(err.Error(), "no such directory") {
		t.Errorf("missing dir: %v", err)
	}
	if _, probs := decodeProbs(t, "disk-usage", "{path: /}"); len(probs) == 0 {
		t.Error("no max_total accepted")
	}
}
