package steps

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/childenv"
	"github.com/planrun/planrun/steps/internal/proc"
	"github.com/planrun/planrun/steps/internal/restic"
)

// offsiteSuffix is a random suffix: the S3 server is shared between test runs.
func offsiteSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// resticRepo is a repository for one test plus the env to reach it with
// the restic CLI directly (the independent check of what the step did).
type resticRepo struct {
	repo, pwFile, cache string
	cli                 []string // environment for the restic CLI
}

func newResticRepo(t *testing.T, repo string) *resticRepo {
	t.Helper()
	testenv.RequireTool(t, "restic")
	dir := t.TempDir()
	pw := filepath.Join(dir, "restic.pass")
	require.NoError(t, os.WriteFile(pw, []byte("correct horse "+offsiteSuffix(t)+"\n"), 0o600))
	if repo == "" {
		repo = filepath.Join(dir, "repo")
	}
	r := &resticRepo{repo: repo, pwFile: pw, cache: filepath.Join(dir, "cache")}
	env := childenv.Unset(os.Environ(), "AWS_CA_BUNDLE")
	env = childenv.Set(env, "RESTIC_REPOSITORY", repo)
	env = childenv.Set(env, "RESTIC_PASSWORD_FILE", pw)
	r.cli = childenv.Set(env, "RESTIC_CACHE_DIR", r.cache)
	return r
}

// with renders the repository params of a step.
func (r *resticRepo) with(rest string) string {
	return "repository: " + r.repo + "\npassword_file: " + r.pwFile + "\ncache_dir: " + r.cache + "\n" + rest
}

// restic runs the restic CLI itself and returns stdout.
func (r *resticRepo) restic(t *testing.T, args ...string) string {
	t.Helper()
	var stdout strings.Builder // whole output: proc keeps only a tail
	_, err := proc.Run(context.Background(), proc.Cmd{Name: "restic", Args: args, Env: r.cli, Stdout: &stdout})
	require.NoError(t, err, "restic %v", args)
	return stdout.String()
}

func (r *resticRepo) snapshots(t *testing.T) []restic.Snapshot {
	t.Helper()
	var snaps []restic.Snapshot
	require.NoError(t, json.Unmarshal([]byte(r.restic(t, "snapshots", "--json")), &snaps))
	return snaps
}

// runDef decodes with through def's spec (defaults, validation) and runs it.
func runDef[P any](t *testing.T, def engine.Def[P], env *engine.Env, with string) (engine.Outputs, error) {
	t.Helper()
	return def.Run(context.Background(), env, decodeWith(t, def, with))
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	}
	return dir
}

func TestResticIntegrationLocalLifecycle(t *testing.T) {
	r := newResticRepo(t, "")
	env, logs := offsiteEnv(t, "run-restic-1")

	out, err := runDef(t, ResticInit, env, r.with(""))
	require.NoError(t, err)
	assert.Equal(t, true, out["created"])
	out, err = runDef(t, ResticInit, env, r.with(""))
	require.NoError(t, err)
	assert.Equal(t, false, out["created"], "init of an existing repository is a no-op")

	src := writeTree(t, map[string]string{"a.txt": "alpha\n", "sub/b.txt": "bravo\n", "skip.tmp": "junk"})
	out, err = runDef(t, ResticBackup, env, r.with("paths: ["+src+"]\ntags: [daily]\nhost: db1\nexclude: ['*.tmp']"))
	require.NoError(t, err)
	id := out["snapshot_id"].(string)
	assert.Regexp(t, `^[0-9a-f]{8}([0-9a-f]{56})?$`, id)
	assert.Equal(t, int64(2), out["files_new"])
	assert.Equal(t, int64(12), out["total_bytes"])
	assert.Positive(t, out["data_added"])
	assert.Equal(t, int64(12), env.Stats.BytesIn.Load())

	// The restic CLI sees the snapshot, with our tag and host, and checks the repo clean.
	snaps := r.snapshots(t)
	require.Len(t, snaps, 1)
	assert.True(t, strings.HasPrefix(snaps[0].ID, id))
	assert.Equal(t, []string{"daily"}, snaps[0].Tags)
	assert.Equal(t, "db1", snaps[0].Hostname)
	r.restic(t, "check", "--read-data")
	ls := r.restic(t, "ls", "latest")
	assert.Contains(t, ls, "a.txt")
	assert.NotContains(t, ls, "skip.tmp", "exclude applied")

	// Second backup: one changed file.
	require.NoError(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha two\n"), 0o644))
	out, err = runDef(t, ResticBackup, env, r.with("paths: ["+src+"]\ntags: [daily]\nhost: db1\nexclude: ['*.tmp']"))
	require.NoError(t, err)
	assert.Equal(t, int64(1), out["files_changed"])

	out, err = runDef(t, ResticSnapshots, env, r.with("tags: [daily]"))
	require.NoError(t, err)
	assert.Equal(t, 2, out["count"])
	assert.True(t, strings.HasPrefix(out["latest_id"].(string), out["latest_id"].(string)[:8]))

	out, err = runDef(t, ResticCheck, env, r.with("read_data_subset: 50%"))
	require.NoError(t, err)
	assert.Equal(t, true, out["ok"])

	target := t.TempDir()
	_, err = runDef(t, ResticRestore, env, r.with("snapshot: latest\ntarget: "+target+"\ninclude: ['a.txt']"))
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(target, src, "a.txt"))
	require.NoError(t, err)
	assert.Equal(t, "alpha two\n", string(got))
	_, err = os.Stat(filepath.Join(target, src, "sub", "b.txt"))
	assert.True(t, os.IsNotExist(err), "include limited the restore")

	pw, _ := os.ReadFile(r.pwFile)
	assert.NotContains(t, logs.String(), strings.TrimSpace(string(pw)))
	assert.NotContains(t, logs.String(), r.repo, "the repository is treated as a secret")
}

func TestResticIntegrationForgetMatchesResticPolicy(t *testing.T) {
	r := newResticRepo(t, "")
	env, _ := offsiteEnv(t, "run-restic-2")
	_, err := runDef(t, ResticInit, env, r.with(""))
	require.NoError(t, err)
	src := writeTree(t, map[string]string{"f": "0"})
	for i := 0; i < 4; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte{byte('0' + i)}, 0o644))
		_, err := runDef(t, ResticBackup, env, r.with("paths: ["+src+"]"))
		require.NoError(t, err)
	}
	// What restic itself would remove with the same policy.
	var groups []struct {
		Remove []restic.Snapshot `json:"remove"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.restic(t, "forget", "--dry-run", "--json", "--keep-last", "2")), &groups))
	var want []string
	for _, g := range groups {
		for _, s := range g.Remove {
			want = append(want, s.ID)
		}
	}
	require.Len(t, want, 2)

	out, err := runDef(t, ResticForget, env, r.with("keep_last: 2\nprune: true"))
	require.NoError(t, err)
	removed := out["removed"].([]string)
	sort.Strings(removed)
	sort.Strings(want)
	assert.Equal(t, want, removed)
	assert.Equal(t, 2, out["removed_count"])

	left := r.snapshots(t)
	require.Len(t, left, 2)
	for _, s := range left {
		assert.NotContains(t, removed, s.ID)
	}
	r.restic(t, "check") // pruned repository is consistent
}

func TestResticIntegrationStdinFileArtifact(t *testing.T) {
	r := newResticRepo(t, "")
	env, _ := offsiteEnv(t, "run-restic-3")
	_, err := runDef(t, ResticInit, env, r.with(""))
	require.NoError(t, err)

	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "key.txt")
	require.NoError(t, os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600))
	// Random text: the artifact spans many age chunks, so a truncated one
	// streams most of its data before its last chunk fails to decrypt.
	var sb strings.Builder
	for sb.Len() < 1<<20 {
		sb.WriteString("INSERT INTO t VALUES ('" + offsiteSuffix(t) + "');\n")
	}
	dump := sb.String()
	path := filepath.Join(t.TempDir(), "app.sql.zst.age")
	w, err := artifact.Create(context.Background(), env, artifact.WriteOptions{
		Output: path, Compress: "zstd", Encrypt: &artifact.EncryptSpec{Recipients: []string{id.Recipient().String()}},
	})
	require.NoError(t, err)
	_, err = w.Write([]byte(dump))
	require.NoError(t, err)
	_, err = w.Commit()
	require.NoError(t, err)

	out, err := runDef(t, ResticBackup, env, r.with("stdin_file: "+path+"\nidentity_file: "+keyFile))
	require.NoError(t, err)
	assert.Equal(t, int64(len(dump)), out["total_bytes"])
	assert.Equal(t, dump, r.restic(t, "dump", "latest", "app.sql"), "restic stores the plaintext, decompressed stream")

	// A truncated artifact streams, then fails its last MAC: no snapshot may be saved.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	bad := filepath.Join(t.TempDir(), "bad.sql.zst.age")
	require.NoError(t, os.WriteFile(bad, data[:len(data)-10], 0o600))
	_, err = runDef(t, ResticBackup, env, r.with("stdin_file: "+bad+"\nidentity_file: "+keyFile))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "restic stopped before saving a snapshot")
	assert.Len(t, r.snapshots(t), 1, "a partial stream never becomes a snapshot")
}

func TestResticIntegrationStdinCommand(t *testing.T) {
	r := newResticRepo(t, "")
	env, _ := offsiteEnv(t, "run-restic-4")
	_, err := runDef(t, ResticInit, env, r.with(""))
	require.NoError(t, err)

	out, err := runDef(t, ResticBackup, env, r.with("stdin_command: [sh, -c, 'seq 1 50000']\nstdin_filename: seq.txt"))
	require.NoError(t, err)
	assert.NotEmpty(t, out["snapshot_id"])
	assert.Equal(t, 50000, strings.Count(r.restic(t, "dump", "latest", "seq.txt"), "\n"))

	// The producer writes data, then fails: restic must not save it.
	_, err = runDef(t, ResticBackup, env, r.with("stdin_command: [sh, -c, 'seq 1 50000; exit 3']\nstdin_filename: seq.txt"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exit status 3")
	assert.Len(t, r.snapshots(t), 1, "a failed producer leaves no snapshot")
}

// A wrapper records restic's argv: neither password nor repository may be there.
func TestResticIntegrationSecretsNotInArgv(t *testing.T) {
	r := newResticRepo(t, "")
	realRestic := testenv.RequireTool(t, "restic")
	dir := t.TempDir()
	argvLog := filepath.Join(dir, "argv.log")
	wrapper := filepath.Join(dir, "restic-wrapper")
	require.NoError(t, os.WriteFile(wrapper, []byte("#!/bin/sh\necho \"$0 $*\" >> "+argvLog+"\nexec "+realRestic+" \"$@\"\n"), 0o755))
	env, _ := offsiteEnv(t, "run-restic-5")
	src := writeTree(t, map[string]string{"x": "y"})
	for _, run := range []func(with string) (engine.Outputs, error){
		func(w string) (engine.Outputs, error) { return runDef(t, ResticInit, env, w) },
		func(w string) (engine.Outputs, error) { return runDef(t, ResticBackup, env, w+"paths: ["+src+"]") },
		func(w string) (engine.Outputs, error) {
			return runDef(t, ResticForget, env, w+"keep_last: 1\nprune: true")
		},
		func(w string) (engine.Outputs, error) { return runDef(t, ResticSnapshots, env, w) },
		func(w string) (engine.Outputs, error) { return runDef(t, ResticUnlock, env, w) },
	} {
		_, err := run(r.with("binary: " + wrapper + "\n"))
		require.NoError(t, err)
	}
	argv, err := os.ReadFile(argvLog)
	require.NoError(t, err)
	pw, _ := os.ReadFile(r.pwFile)
	assert.Contains(t, string(argv), "backup --json")
	assert.NotContains(t, string(argv), strings.TrimSpace(string(pw)))
	assert.NotContains(t, string(argv), r.repo)
	assert.NotContains(t, string(argv), r.pwFile)
}

func TestResticIntegrationS3Repository(t *testing.T) {
	vals := testenv.Require(t, "S3 server (rclone serve s3)", "RESTIC_S3_REPO", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
	sfx := offsiteSuffix(t)
	r := newResticRepo(t, vals["RESTIC_S3_REPO"]+"-planrun-test-"+sfx)
	if b, ok := os.LookupEnv("S3_BUCKET"); ok && os.Getenv("RCLONE_CONFIG_TESTS3_TYPE") != "" &&
		strings.HasSuffix(vals["RESTIC_S3_REPO"], "/"+b+"/restic") {
		purgeAfter(t, "tests3:"+b+"/restic-planrun-test-"+sfx)
	}
	env, logs := offsiteEnv(t, "run-restic-s3")
	out, err := runDef(t, ResticInit, env, r.with(""))
	require.NoError(t, err)
	assert.Equal(t, true, out["created"])
	src := writeTree(t, map[string]string{"db.dump": strings.Repeat("s3 data\n", 1000)})
	out, err = runDef(t, ResticBackup, env, r.with("paths: ["+src+"]\ntags: [offsite]"))
	require.NoError(t, err)
	snaps := r.snapshots(t)
	require.Len(t, snaps, 1)
	assert.True(t, strings.HasPrefix(snaps[0].ID, out["snapshot_id"].(string)))
	r.restic(t, "check", "--read-data")
	assert.NotContains(t, logs.String(), vals["AWS_SECRET_ACCESS_KEY"])
}

func TestResticIntegrationRcloneRepository(t *testing.T) {
	testenv.RequireTool(t, "rclone")
	vals := testenv.Require(t, "S3 server via rclone remote tests3:", "RCLONE_CONFIG_TESTS3_TYPE", "S3_BUCKET")
	remote := "tests3:" + vals["S3_BUCKET"] + "/planrun-test-rc-" + offsiteSuffix(t)
	purgeAfter(t, remote)
	r := newResticRepo(t, "rclone:"+remote)
	env, _ := offsiteEnv(t, "run-restic-rclone")
	// This environment's CA bundle variable breaks rclone 1.60's S3 client:
	// the step must strip it for restic's rclone child.
	env.Environ = childenv.Set(env.Environ, "AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
	out, err := runDef(t, ResticInit, env, r.with(""))
	require.NoError(t, err)
	assert.Equal(t, true, out["created"])
	src := writeTree(t, map[string]string{"a": "over rclone\n"})
	out, err = runDef(t, ResticBackup, env, r.with("paths: ["+src+"]"))
	require.NoError(t, err)
	snaps := r.snapshots(t)
	require.Len(t, snaps, 1)
	assert.True(t, strings.HasPrefix(snaps[0].ID, out["snapshot_id"].(string)))
	r.restic(t, "check")
}

func TestResticIntegrationCancelledStdinBackupSavesNothing(t *testing.T) {
	r := newResticRepo(t, "")
	env, _ := offsiteEnv(t, "run-restic-6")
	_, err := runDef(t, ResticInit, env, r.with(""))
	require.NoError(t, err)
	// The producer never finishes; the step's deadline (the runner's
	// timeout) must stop both processes without a snapshot.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	p := decodeWith(t, ResticBackup, r.with("stdin_command: [sh, -c, 'seq 1 1000; exec sleep 600']"))
	_, err = ResticBackup.Run(ctx, env, p)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Empty(t, r.snapshots(t))
}
