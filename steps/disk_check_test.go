package steps

import (
	"context"
	"strings"
	"testing"
)

func TestDiskCheck(t *testing.T) {
	dir := t.TempDir()
	out := mustRun(t, "disk-check", "{path: "+dir+", min_free_percent: 0.0001, min_free: 1k}")
	if out["ok"] != true || out["free_bytes"].(int64) <= 0 || out["free_percent"].(float64) <= 0 {
		t.Fatalf("outputs %v", out)
	}
	env, log := stepEnv(t)
	_, err := runStep(t, context.Background(), env, "disk-check", "{path: "+dir+", min_free: 1000TiB}")
	if err == nil || !strings.Contains(err.Error(), "below min_free 1000.0 TiB") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("want a threshold error, got %v", err)
	}
	out, err = runStep(t, context.Background(), env, "disk-check", "{path: "+dir+", min_free_percent: 100, warn_only: true}")
	if err != nil || out["ok"] != false || !strings.Contains(log.String(), "level=WARN") {
		t.Fatalf("warn_only: %v %v %s", err, out, log.String())
	}
	if _, probs := decodeProbs(t, "disk-check", "{path: /}"); len(probs) == 0 {
		t.Error("no threshold accepted")
	}
	// A backup root that does not exist yet is measured on its nearest
	// existing ancestor (the first run creates it there).
	out, err = runStep(t, context.Background(), env, "disk-check", "{path: "+dir+"/not/yet/created, min_free: 1k}")
	if err != nil || out["ok"] != true {
		t.Errorf("missing path: %v %v", err, out)
	}
}
