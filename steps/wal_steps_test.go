package steps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/walarchive"
)

// walTestArchive makes an archive config and pushes fake segments 1..n of
// timeline 1 (only their names matter here).
func walTestArchive(t *testing.T, n int) (string, *walarchive.Config) {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "wal.yaml")
	os.WriteFile(cfgPath, []byte("dir: archive\n"), 0o600)
	cfg, err := walarchive.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		p := filepath.Join(t.TempDir(), walSeg(i))
		os.WriteFile(p, []byte(p), 0o600)
		if err := walarchive.Push(context.Background(), cfg, p); err != nil {
			t.Fatal(err)
		}
	}
	return cfgPath, cfg
}

func walSeg(i int) string {
	return walarchive.SegmentName(1, walarchive.LSN(uint64(i)*walarchive.DefaultSegmentSize), walarchive.DefaultSegmentSize)
}

func walBackup(t *testing.T, cfg *walarchive.Config, seg int, start time.Time) string {
	t.Helper()
	b := walarchive.BaseBackup{Label: walarchive.Label(start), Timeline: 1, StartTime: start, StopTime: start,
		StartWAL: walSeg(seg), StopWAL: walSeg(seg), WALSegmentSize: walarchive.DefaultSegmentSize}
	b.Dir = walarchive.BackupDir(cfg, b.Label)
	if err := os.MkdirAll(b.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := walarchive.WriteBackupRecord(&b); err != nil {
		t.Fatal(err)
	}
	return b.Label
}

func TestWALVerifyStep(t *testing.T) {
	if k := WALVerify.Type().Kind; k != engine.KindOther {
		t.Fatalf("wal-verify kind %v: it must run in drills and after failures", k)
	}
	cfgPath, cfg := walTestArchive(t, 8)
	walBackup(t, cfg, 2, time.Now())
	out := mustRun(t, "wal-verify", "archive_config: "+cfgPath)
	if out["segments"] != 7 || out["from"] != walSeg(2) || out["to"] != walSeg(8) || len(out["gaps"].([]string)) != 0 {
		t.Fatalf("outputs %v", out)
	}
	files, _ := filepath.Glob(filepath.Join(cfg.Dir, "wal", "*", walSeg(5)+"-*"))
	for _, f := range files {
		os.Remove(f)
	}
	env, _ := stepEnv(t)
	out, err := runStep(t, context.Background(), env, "wal-verify", "archive_config: "+cfgPath)
	if err == nil || !strings.Contains(err.Error(), walSeg(5)) || fmt.Sprint(out["gaps"]) != "["+walSeg(5)+".."+walSeg(5)+"]" || out["segments"] != 6 {
		t.Fatalf("gap: %v %v", out, err)
	}
	_, err = runStep(t, context.Background(), env, "wal-verify", "archive_config: "+filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "archive_config") {
		t.Fatalf("missing config: %v", err)
	}
}

func TestWALExpireStep(t *testing.T) {
	if k := WALExpire.Type().Kind; k != engine.KindDestructive {
		t.Fatalf("wal-expire kind %v: the interlock must hold it back after a failed backup", k)
	}
	cfgPath, cfg := walTestArchive(t, 9)
	now := time.Now()
	old := walBackup(t, cfg, 2, now.Add(-3*time.Hour))
	mid := walBackup(t, cfg, 5, now.Add(-2*time.Hour))
	newest := walBackup(t, cfg, 8, now.Add(-time.Hour))

	out := mustRun(t, "wal-expire", "{archive_config: "+cfgPath+", keep: 2, dry_run: true}")
	if fmt.Sprint(out["removed_backups"]) != "["+old+"]" || out["removed_wal_count"] != 4 || fmt.Sprint(out["kept"]) != "["+mid+" "+newest+"]" {
		t.Fatalf("dry run: %v", out)
	}
	if bs, _ := walarchive.Backups(cfg); len(bs) != 3 {
		t.Fatal("dry run removed a backup")
	}
	// keep_for 90m keeps only the newest; keep 2 keeps one more: the union.
	out = mustRun(t, "wal-expire", "{archive_config: "+cfgPath+", keep: 2, keep_for: 90m}")
	if out["removed_wal_count"] != 4 || fmt.Sprint(out["kept"]) != "["+mid+" "+newest+"]" {
		t.Fatalf("expire: %v", out)
	}
	out = mustRun(t, "wal-verify", "archive_config: "+cfgPath)
	if out["from"] != walSeg(5) || len(out["gaps"].([]string)) != 0 {
		t.Fatalf("after expire: %v", out)
	}
	env, _ := stepEnv(t)
	if _, err := runStep(t, context.Background(), env, "wal-expire", "archive_config: "+cfgPath); err == nil || !strings.Contains(err.Error(), "keep") {
		t.Fatalf("no rule: %v", err)
	}
	st, p := decode(t, "wal-expire", "{archive_config: "+cfgPath+", keep: 3}")
	if lines := st.Preview(env, p); len(lines) != 1 || !strings.HasPrefix(lines[0], "delete: ") {
		t.Fatalf("preview %v", lines)
	}
}
