package testenv

import (
	"syscall"
	"testing"
)

// Tmpfs mounts a tmpfs of size (mount's size= syntax, e.g. "4m") on a new
// temp dir and unmounts it at cleanup: a small filesystem to fill. Where
// mounting is not allowed the test skips, or fails under CI.
func Tmpfs(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		stop(t, "cannot mount a %s tmpfs: %v", size, err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	return dir
}
