package steps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/internal/childenv"
	"github.com/planrun/planrun/steps/internal/proc"
)

// rcloneRemote is a unique prefix on the shared S3 server (remote tests3:).
func rcloneRemote(t *testing.T) string {
	t.Helper()
	testenv.RequireTool(t, "rclone")
	vals := testenv.Require(t, "S3 server via rclone remote tests3:", "RCLONE_CONFIG_TESTS3_TYPE", "S3_BUCKET")
	remote := "tests3:" + vals["S3_BUCKET"] + "/planrun-test-rclone-" + offsiteSuffix(t)
	purgeAfter(t, remote)
	return remote
}

// purgeAfter removes a test's prefix from the shared S3 server.
func purgeAfter(t *testing.T, remote string) {
	t.Cleanup(func() {
		if _, err := rcloneCLI(t, "purge", remote); err != nil {
			t.Logf("cleanup: rclone purge %s: %v", remote, err)
		}
	})
}

// rcloneCLI runs the rclone CLI itself (the independent check).
func rcloneCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	_, err := proc.Run(context.Background(), proc.Cmd{
		Name: "rclone", Args: args, Env: childenv.Unset(os.Environ(), "AWS_CA_BUNDLE"), Stdout: &out,
	})
	return out.String(), err
}

// rcloneEnv is a step env whose environment has AWS_CA_BUNDLE set, as
// this machine's does: the step must strip it for rclone 1.60.
func rcloneEnv(t *testing.T) *engine.Env {
	env, _ := offsiteEnv(t, "run-rclone")
	env.Environ = childenv.Set(env.Environ, "AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
	return env
}

func numberedFiles(t *testing.T, n int) string {
	files := map[string]string{}
	for i := 0; i < n; i++ {
		files[fmt.Sprintf("dir%d/file%02d.dump", i%2, i)] = strings.Repeat(fmt.Sprint(i), 100+i)
	}
	return writeTree(t, files)
}

func TestRcloneIntegrationCopyVerifiedByRcloneCheck(t *testing.T) {
	remote := rcloneRemote(t)
	env := rcloneEnv(t)
	src := numberedFiles(t, 6)

	out, err := runDef(t, RcloneCopy, env, "source: "+src+"\ndest: "+remote)
	require.NoError(t, err)
	assert.Equal(t, int64(6), out["files"])
	var total int64
	for i := 0; i < 6; i++ {
		total += int64(100 + i)
	}
	// rclone counts the bytes of a transfer it retried (an S3 server that
	// just started may ask for one) twice: at least every byte, and the
	// run's stats say the same as the output.
	assert.GreaterOrEqual(t, out["bytes"], total)
	assert.Equal(t, int64(0), out["errors"])
	assert.Equal(t, out["bytes"], env.Stats.BytesOut.Load())

	// rclone itself agrees the copy is complete.
	_, err = rcloneCLI(t, "check", src, remote)
	require.NoError(t, err, "rclone check after the copy step")

	out, err = runDef(t, RcloneSize, env, "source: "+remote)
	require.NoError(t, err)
	assert.Equal(t, int64(6), out["count"])
	assert.Equal(t, total, out["bytes"])

	out, err = runDef(t, RcloneLsf, env, "source: "+remote)
	require.NoError(t, err)
	list := out["list"].([]string)
	sort.Strings(list)
	assert.Equal(t, int64(6), out["count"])
	assert.Equal(t, "dir0/file00.dump", list[0])

	out, err = runDef(t, RcloneCheck, env, "source: "+src+"\ndest: "+remote)
	require.NoError(t, err)
	assert.Equal(t, true, out["ok"])
	assert.Equal(t, int64(6), out["matches"])

	// A changed and an extra local file: check reports both and fails.
	require.NoError(t, os.WriteFile(filepath.Join(src, "dir0", "file00.dump"), []byte("changed!"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "new.dump"), []byte("new"), 0o644))
	out, err = runDef(t, RcloneCheck, env, "source: "+src+"\ndest: "+remote)
	require.Error(t, err)
	assert.Equal(t, false, out["ok"])
	assert.Equal(t, int64(1), out["differences"])
	assert.Equal(t, int64(1), out["missing_on_dest"])
	assert.Equal(t, int64(5), out["matches"])
	assert.ElementsMatch(t, []string{"* dir0/file00.dump", "+ new.dump"}, out["differing"])
}

func TestRcloneIntegrationSyncDeleteGuard(t *testing.T) {
	remote := rcloneRemote(t)
	env := rcloneEnv(t)
	src := numberedFiles(t, 10)
	out, err := runDef(t, RcloneSync, env, "source: "+src+"\ndest: "+remote)
	require.NoError(t, err)
	assert.Equal(t, int64(10), out["files"])
	assert.Equal(t, int64(0), out["planned_deletes"])

	// The source lost 7 of 10 files (a failed dump, an unmounted disk...):
	// 70% > 50% → refused, and the destination keeps every file.
	for i := 0; i < 7; i++ {
		require.NoError(t, os.Remove(filepath.Join(src, fmt.Sprintf("dir%d/file%02d.dump", i%2, i))))
	}
	out, err = runDef(t, RcloneSync, env, "source: "+src+"\ndest: "+remote)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused: it would delete 7 of 10 files (70%)")
	assert.Equal(t, int64(7), out["planned_deletes"])
	listing, err := rcloneCLI(t, "lsf", "-R", "--files-only", remote)
	require.NoError(t, err)
	assert.Len(t, strings.Fields(listing), 10, "a refused sync deletes nothing")

	// Within a raised limit the sync deletes them, and rclone check agrees.
	out, err = runDef(t, RcloneSync, env, "source: "+src+"\ndest: "+remote+"\nmax_delete_percent: 80")
	require.NoError(t, err)
	assert.Equal(t, int64(7), out["deletes"])
	_, err = rcloneCLI(t, "check", src, remote)
	require.NoError(t, err)

	// An empty source against a populated dest: 100% deletes, refused.
	empty := t.TempDir()
	_, err = runDef(t, RcloneSync, env, "source: "+empty+"\ndest: "+remote)
	require.Error(t, err)
	listing, err = rcloneCLI(t, "lsf", "-R", "--files-only", remote)
	require.NoError(t, err)
	assert.Len(t, strings.Fields(listing), 3)
}

// The --max-delete second guard, alone: a fake rclone reports no
// planned deletes in the dry run, so only --max-delete can stop the real
// sync — and rclone's own guard does.
func TestRcloneIntegrationMaxDeleteSecondGuard(t *testing.T) {
	realRclone := testenv.RequireTool(t, "rclone")
	remote := rcloneRemote(t)
	env := rcloneEnv(t)
	src := numberedFiles(t, 4)
	_, err := runDef(t, RcloneCopy, env, "source: "+src+"\ndest: "+remote)
	require.NoError(t, err)
	empty := t.TempDir()

	// The wrapper hides the dry run's findings (as if the source changed
	// between the dry run and the sync).
	wrapper := filepath.Join(t.TempDir(), "rclone-wrapper")
	script := "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --dry-run ] && exit 0; done\nexec " + realRclone + " \"$@\"\n"
	require.NoError(t, os.WriteFile(wrapper, []byte(script), 0o755))
	out, err := runDef(t, RcloneSync, env, "source: "+empty+"\ndest: "+remote+"\nbinary: "+wrapper)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "max-delete")
	assert.Equal(t, int64(4), out["dest_files"])
	listing, err := rcloneCLI(t, "lsf", "-R", "--files-only", remote)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, len(strings.Fields(listing)), 2, "at most 50% deleted")
}

// Off-site retention by age: rclone-delete removes only the copies older
// than min_age (rclone copy keeps the local files' times), and refuses
// when that would be most of them (backups that stopped arriving).
func TestRcloneIntegrationDeleteByAge(t *testing.T) {
	remote := rcloneRemote(t)
	env := rcloneEnv(t)
	src := numberedFiles(t, 10)
	old := time.Now().Add(-40 * 24 * time.Hour)
	for i := 0; i < 3; i++ {
		require.NoError(t, os.Chtimes(filepath.Join(src, fmt.Sprintf("dir%d/file%02d.dump", i%2, i)), old, old))
	}
	_, err := runDef(t, RcloneCopy, env, "source: "+src+"\ndest: "+remote)
	require.NoError(t, err)

	out, err := runDef(t, RcloneDelete, env, "source: "+remote+"\nmin_age: 30d")
	require.NoError(t, err)
	assert.Equal(t, int64(3), out["planned_deletes"])
	assert.Equal(t, int64(3), out["deletes"])
	listing, err := rcloneCLI(t, "lsf", "-R", "--files-only", remote)
	require.NoError(t, err)
	assert.Len(t, strings.Fields(listing), 7)
	assert.NotContains(t, listing, "file00.dump")

	// Backups stopped arriving: every copy is old, deleting them all is refused.
	stale := rcloneRemote(t)
	for i := 3; i < 10; i++ {
		require.NoError(t, os.Chtimes(filepath.Join(src, fmt.Sprintf("dir%d/file%02d.dump", i%2, i)), old, old))
	}
	_, err = runDef(t, RcloneCopy, env, "source: "+src+"\ndest: "+stale)
	require.NoError(t, err)
	out, err = runDef(t, RcloneDelete, env, "source: "+stale+"\nmin_age: 30d")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused: it would delete 10 of 10 files (100%)")
	assert.Equal(t, int64(10), out["planned_deletes"])
	listing, err = rcloneCLI(t, "lsf", "-R", "--files-only", stale)
	require.NoError(t, err)
	assert.Len(t, strings.Fields(listing), 10, "a refused delete deletes nothing")
}
