package restic

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A restored tree is measured as restic counted it at backup time: the
// parents of the snapshot's paths are directories of the snapshot too
// (restic 0.14 reported dirs_new 6 for this tree backed up from
// /tmp/rtest/src), symlinks and FIFOs are not files.
func TestMeasureRestored(t *testing.T) {
	target := t.TempDir()
	src := filepath.Join(target, "tmp", "rtest", "src")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "a", "b"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(src, "c"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "a", "f1"), []byte("hi\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "a", "b", "f2"), []byte("hello\n"), 0o644))
	require.NoError(t, os.Symlink("f1", filepath.Join(src, "a", "link")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(src, "c", "fifo"), 0o644))
	got, err := MeasureRestored(target, []string{"/tmp/rtest/src"})
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{"files": 2, "dirs": 6, "bytes": 9}, got)

	// A stdin backup: one file at the root, no directory.
	require.NoError(t, os.WriteFile(filepath.Join(target, "x.sql"), []byte("data\n"), 0o600))
	got, err = MeasureRestored(target, []string{"/x.sql"})
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{"files": 1, "dirs": 0, "bytes": 5}, got)

	// In place (target /): the parents are counted the same way.
	got, err = MeasureRestored("/", []string{src})
	require.NoError(t, err)
	parents := strings.Count(src, "/") - 1 // /a/b/src: /a and /a/b
	assert.Equal(t, map[string]int64{"files": 2, "dirs": int64(parents + 4), "bytes": 9}, got,
		"src's parents below / and its own 4 directories")
	_, err = MeasureRestored(target, []string{"/not/restored"})
	assert.ErrorContains(t, err, "/not/restored was not restored")
}
