package steps

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chitlaq-incremental's restore: a plain dump streamed into restic comes
// back with restic-dump as an age-encrypted artifact (no plaintext on
// disk) that pg_restore replays with psql into a scratch database.
func TestResticDumpIntoPgRestore(t *testing.T) {
	pgEnv(t)
	r := newResticRepo(t, "")
	db := pgScratchDB(t, 500)
	env, logs := offsiteEnv(t, "run-restic-dump")
	_, err := runDef(t, ResticInit, env, r.with(""))
	require.NoError(t, err)
	_, err = runDef(t, ResticBackup, env, r.with(fmt.Sprintf("stdin_command: [pg_dump, --format=plain, --no-owner, --dbname=%s]\nstdin_filename: app.sql\ntags: [pg]", db)))
	require.NoError(t, err)

	identity, recipient := dbAgeKeys(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "app.sql.zst.age")
	res, err := runDef(t, ResticDump, env, r.with("tags: [pg]\nfile: /app.sql\noutput: "+out+"\nencrypt: {recipients: ["+recipient+"]}"))
	require.NoError(t, err)
	assert.Equal(t, out, res["path"])
	assert.Len(t, res["snapshot"], 64)
	raw, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(raw), "age-encryption.org/v1"), "the dump is encrypted on disk")
	assert.NotContains(t, string(raw), "CREATE TABLE")
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 2, "the artifact and its sidecar, nothing else: %v", entries)

	scratch := uniqueName("planrun_dump")
	counts, err := dbRun(t, PgRestore, dbEnv(t), fmt.Sprintf("database: %s\nrecreate_database: true\ndrop_after: true\nformat: plain\ninput: %s\nidentity_file: %s\nverify_counts: [items]", scratch, out, identity))
	require.NoError(t, err)
	assert.Equal(t, int64(500), counts["counts"].(map[string]int64)["rows:public.items"])

	// A file the snapshot lacks: restic fails, no artifact is left.
	missing := filepath.Join(dir, "nope.sql.zst")
	_, err = runDef(t, ResticDump, env, r.with("file: /nope.sql\noutput: "+missing))
	require.Error(t, err)
	_, statErr := os.Stat(missing)
	assert.True(t, os.IsNotExist(statErr))
	entries, _ = os.ReadDir(dir)
	assert.Len(t, entries, 2, "no temporary file left: %v", entries)
	pw, _ := os.ReadFile(r.pwFile)
	assert.NotContains(t, logs.String(), strings.TrimSpace(string(pw)))
}

// restic-copy: snapshots go into a second repository with its own
// password, by env only; a second run copies nothing new; a damaged
// source fails the copy and leaves the destination as it was.
func TestResticCopyToSecondRepository(t *testing.T) {
	src := newResticRepo(t, "")
	dest := newResticRepo(t, "")
	env, logs := offsiteEnv(t, "run-restic-copy")
	_, err := runDef(t, ResticInit, env, src.with(""))
	require.NoError(t, err)
	tree := writeTree(t, map[string]string{"a": "alpha\n", "b/c": strings.Repeat("copy me\n", 5000)})
	for i := 0; i < 2; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(tree, "a"), []byte(fmt.Sprint("alpha ", i)), 0o644))
		_, err = runDef(t, ResticBackup, env, src.with("paths: ["+tree+"]\ntags: [daily]"))
		require.NoError(t, err)
	}
	copyWith := src.with("dest_repository: " + dest.repo + "\ndest_password_file: " + dest.pwFile)
	out, err := runDef(t, ResticCopy, env, copyWith)
	require.NoError(t, err)
	assert.Equal(t, true, out["created"], "the destination is created on first use")
	assert.Equal(t, 2, out["copied"])
	copied := dest.snapshots(t) // the CLI with the destination's own password
	require.Len(t, copied, 2)
	assert.Equal(t, []string{tree}, copied[0].Paths)
	dest.restic(t, "check", "--read-data")

	out, err = runDef(t, ResticCopy, env, copyWith)
	require.NoError(t, err)
	assert.Equal(t, false, out["created"])
	assert.Equal(t, 0, out["copied"])
	assert.Equal(t, 2, out["skipped"])

	// A new snapshot whose data pack is then damaged: copy fails, the
	// destination keeps exactly what it had.
	noise := make([]byte, 300<<10) // incompressible: a pack of its own
	_, err = rand.Read(noise)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(tree, "new"), noise, 0o644))
	_, err = runDef(t, ResticBackup, env, src.with("paths: ["+tree+"]\ntags: [daily]"))
	require.NoError(t, err)
	flipNewestPack(t, src.repo)
	_, err = runDef(t, ResticCopy, env, copyWith)
	require.Error(t, err)
	assert.Len(t, dest.snapshots(t), 2, "nothing half-copied became a snapshot")
	dest.restic(t, "check", "--read-data")

	for _, pwf := range []string{src.pwFile, dest.pwFile} {
		pw, _ := os.ReadFile(pwf)
		assert.NotContains(t, logs.String(), strings.TrimSpace(string(pw)))
	}
}

// flipNewestPack damages the most recently written data pack.
func flipNewestPack(t *testing.T, repo string) {
	t.Helper()
	var newest string
	var newestTime time.Time
	require.NoError(t, filepath.Walk(filepath.Join(repo, "data"), func(path string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && fi.Size() > 100000 && fi.ModTime().After(newestTime) {
			newest, newestTime = path, fi.ModTime()
		}
		return err
	}))
	require.NotEmpty(t, newest)
	require.NoError(t, os.Chmod(newest, 0o600))
	f, err := os.OpenFile(newest, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, 5000)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{b[0] ^ 0xff}, 5000)
	require.NoError(t, err)
}

// A restic killed mid-run leaves its lock: restic-forget then fails,
// restic-unlock removes the stale lock, and forget runs.
func TestResticUnlockRemovesStaleLock(t *testing.T) {
	r := newResticRepo(t, "")
	env, _ := offsiteEnv(t, "run-restic-unlock")
	_, err := runDef(t, ResticInit, env, r.with(""))
	require.NoError(t, err)
	// A backup from a stdin that never ends holds its lock until killed.
	cmd := exec.Command("restic", "backup", "--stdin", "--stdin-filename", "x")
	cmd.Env = r.cli
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return r.restic(t, "list", "locks", "--no-lock") != "" }, 30*time.Second, 50*time.Millisecond,
		"restic took its lock")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	stdin.Close()

	forget := r.with("keep_last: 1")
	_, err = runDef(t, ResticForget, env, forget)
	require.Error(t, err, "the stale lock blocks an exclusive command")
	_, err = runDef(t, ResticUnlock, env, r.with(""))
	require.NoError(t, err)
	assert.Empty(t, r.restic(t, "list", "locks", "--no-lock"))
	_, err = runDef(t, ResticForget, env, forget)
	require.NoError(t, err)
}
