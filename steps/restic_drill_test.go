package steps

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
)

// runLog is a Recorder keeping what a test needs: the attempts' artifact
// records (the run's manifest) and the finished runs (a drill's report).
type runLog struct {
	mu       sync.Mutex
	attempts []engine.AttemptRecord
	finished []engine.RunRecord
}

func (l *runLog) StartRun(context.Context, engine.RunRecord) error { return nil }
func (l *runLog) RecordAttempt(_ context.Context, a engine.AttemptRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts = append(l.attempts, a)
	return nil
}
func (l *runLog) FinishRun(_ context.Context, r engine.RunRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.finished = append(l.finished, r)
	return nil
}

// applyPlan loads and applies a plan with every built-in type and
// returns the result and its manifest.
func applyPlan(t *testing.T, src string) (*engine.Plan, engine.Result, *engine.Manifest) {
	t.Helper()
	p, err := engine.Load("plan.yaml", []byte(src), All())
	require.NoError(t, err)
	scope, err := engine.Prepare(p, engine.Invocation{})
	require.NoError(t, err)
	log := &runLog{}
	var stderr bytes.Buffer
	res := engine.Apply(context.Background(), p, scope, engine.Options{Recorder: log, StateDir: t.TempDir(), Stderr: &stderr})
	m := &engine.Manifest{Format: engine.ManifestFormat, RunID: res.RunID, Plan: p.Name, Started: scope.Started}
	for _, a := range log.attempts {
		m.Artifacts = append(m.Artifacts, a.Records...)
	}
	return p, res, m
}

// drillOf derives the drill of a manifest and runs it.
func drillOf(t *testing.T, p *engine.Plan, m *engine.Manifest) (*engine.RestorePlan, engine.Result, *engine.RestoreReport) {
	t.Helper()
	rp, err := engine.BuildRestore(engine.RestoreRequest{Plan: p, Manifest: m, Drill: true}, All())
	require.NoError(t, err)
	scope, err := engine.Prepare(rp.Plan, engine.Invocation{})
	require.NoError(t, err)
	log := &runLog{}
	var stderr bytes.Buffer
	res := engine.Restore(context.Background(), rp, scope, engine.Options{Recorder: log, StateDir: t.TempDir(), Stderr: &stderr})
	require.Len(t, log.finished, 1)
	t.Log(stderr.String())
	return rp, res, log.finished[0].Report
}

// restic-backup records its snapshot; a drill restores it with the real
// restic into scratch and compares files, dirs and bytes; a damaged pack
// fails the drill.
func TestResticBackupDrillEndToEnd(t *testing.T) {
	r := newResticRepo(t, "")
	big := make([]byte, 300<<10)
	_, err := rand.Read(big)
	require.NoError(t, err)
	src := writeTree(t, map[string]string{"a.txt": "alpha\n", "sub/deeper/b.txt": "bravo\n", "sub/big.bin": string(big), "skip.tmp": "x"})
	require.NoError(t, os.Symlink("a.txt", filepath.Join(src, "link")))
	repo := fmt.Sprintf("{repository: %s, password_file: %s, cache_dir: %s}", r.repo, r.pwFile, r.cache)
	plan := fmt.Sprintf(`version: 1
name: files
steps:
  - id: init
    type: restic-init
    with: %[1]s
  - id: snap
    type: restic-backup
    with: {repository: %[2]s, password_file: %[3]s, cache_dir: %[4]s, paths: [%[5]s], exclude: ["*.tmp"], tags: [daily]}
  - id: db
    type: restic-backup
    with: {repository: %[2]s, password_file: %[3]s, cache_dir: %[4]s, stdin_command: [sh, -c, "seq 1 1000"], stdin_filename: db.sql}
`, repo, r.repo, r.pwFile, r.cache, src)
	p, res, m := applyPlan(t, plan)
	require.Equal(t, engine.ExitOK, res.ExitCode, "%v", res.Err)
	require.Len(t, m.Artifacts, 2, "each snapshot is recorded")
	snap := m.Artifacts[0]
	assert.Equal(t, "restic-backup", snap.StepType)
	assert.Equal(t, r.repo, snap.Path)
	assert.Empty(t, snap.SHA256)
	assert.Len(t, snap.Source["snapshot"], 64, "the full id, as restic lists it")
	assert.Equal(t, src, snap.Source["paths"])
	assert.Equal(t, "daily", snap.Source["tags"])
	assert.Equal(t, r.pwFile, snap.Source["password_file"])
	// The parents of src count as directories of the snapshot, as restic counts them.
	parents := int64(strings.Count(strings.TrimPrefix(src, "/"), "/"))
	assert.Equal(t, map[string]int64{"files": 3, "dirs": parents + 3, "bytes": int64(len(big)) + 12}, snap.Counts)
	assert.Equal(t, map[string]int64{"files": 1, "dirs": 0, "bytes": int64(len(seqText(1000)))}, m.Artifacts[1].Counts)
	mj, err := json.Marshal(m)
	require.NoError(t, err)
	pw, _ := os.ReadFile(r.pwFile)
	assert.NotContains(t, string(mj), strings.TrimSpace(string(pw)), "the manifest holds no password")

	// What the source looks like now does not matter: the snapshot is restored.
	require.NoError(t, os.Remove(filepath.Join(src, "a.txt")))

	rp, res, rep := drillOf(t, p, m)
	require.Equal(t, engine.ExitOK, res.ExitCode, "%v", res.Err)
	require.NotNil(t, rep)
	assert.True(t, rep.Passed, "%v", rep.Problems)
	var types []string
	for _, s := range rp.Plan.Steps {
		types = append(types, s.TypeName)
	}
	assert.Equal(t, []string{"restic-restore", "restic-restore"}, types, "a repository is not sha256-checked like a file")
	require.Len(t, rep.Checks, 2)
	for _, c := range rep.Checks {
		assert.Equal(t, "counts", c.What)
		assert.Equal(t, 3, c.Compared)
		assert.Empty(t, c.Diffs)
	}
	_, err = os.Stat(rp.Scratch)
	assert.True(t, os.IsNotExist(err), "the drill removes its scratch directory")

	// A damaged pack (the one holding big.bin's data) fails the drill.
	var packs []string
	require.NoError(t, filepath.WalkDir(filepath.Join(r.repo, "data"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			packs = append(packs, path)
		}
		return err
	}))
	sort.Slice(packs, func(i, j int) bool { return fileSize(t, packs[i]) > fileSize(t, packs[j]) })
	require.NoError(t, os.Chmod(packs[0], 0o600))
	f, err := os.OpenFile(packs[0], os.O_RDWR, 0)
	require.NoError(t, err)
	b := make([]byte, 1)
	_, err = f.ReadAt(b, 4096)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{b[0] ^ 0xff}, 4096)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	_, res, rep = drillOf(t, p, m)
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	require.NotNil(t, rep)
	assert.False(t, rep.Passed)
	assert.Contains(t, strings.Join(rep.Problems, "\n"), "restore-snap")
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size()
}

func seqText(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}
