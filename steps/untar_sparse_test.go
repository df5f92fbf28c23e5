package steps

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The untar step restores GNU tar --sparse members (they used to be
// skipped with a log line while the step succeeded).
func TestUntarStepGNUSparse(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(src, 0o755)
	f, err := os.Create(filepath.Join(src, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(32 << 20)
	f.WriteAt([]byte("boot sector"), 0)
	f.WriteAt([]byte("superblock"), 20<<20)
	f.Close()
	for _, format := range []string{"gnu", "posix"} {
		t.Run(format, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "a.tar.gz")
			shell(t, fmt.Sprintf("tar --sparse --format=%s -czf %s -C %s .", format, archive, src), "tar", "gzip")
			dst := t.TempDir()
			out := mustRun(t, "untar", fmt.Sprintf("{input: %s, target: %s}", archive, dst))
			if out["files"] != 1 || out["bytes"] != int64(32<<20) {
				t.Errorf("outputs %v", out)
			}
			shell(t, fmt.Sprintf("cmp %s/disk.img %s/disk.img", src, dst), "cmp")
		})
	}
}
