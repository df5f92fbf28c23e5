package plans_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/steps"
)

// TestShippedPlansDryRun: every shipped plan dry-runs with exit 0 against
// a fixture env file, and a dry run executes, writes and records nothing.
// Every program a plan could start is replaced by a shim that leaves a
// mark; the working directory, the state directory and the plans'
// absolute output roots are compared before and after.
func TestShippedPlansDryRun(t *testing.T) {
	bin := buildPlanrun(t)
	work := t.TempDir()
	state := filepath.Join(work, "state")
	shims := filepath.Join(work, "shims")
	marks := filepath.Join(work, "marks")
	require.NoError(t, os.MkdirAll(shims, 0o755))
	require.NoError(t, os.MkdirAll(marks, 0o755))
	tools := map[string]bool{"sh": true, "bash": true, "rm": true, "echo": true, "diff": true, "logger": true,
		"sqlite3": true, "tar": true, "cp": true, "mv": true, "curl": true}
	reg := steps.All()
	for _, name := range reg.Names() {
		for _, tool := range reg.Lookup(name).Tools {
			tools[tool] = true
		}
	}
	for tool := range tools {
		script := "#!/bin/sh\n: > " + filepath.Join(marks, tool) + "\nexit 1\n"
		require.NoError(t, os.WriteFile(filepath.Join(shims, tool), []byte(script), 0o755))
	}
	// git does not keep modes: the fixture env file must be private.
	env, err := os.ReadFile("../testdata/env/shipped-plans.env")
	require.NoError(t, err)
	envFile := filepath.Join(work, "fixture.env")
	require.NoError(t, os.WriteFile(envFile, env, 0o600))

	plans, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(plans), 6, "shipped plans")
	roots := []string{"/backups", "/var/tmp/planrun-dr", "/opt/backups/chitlaq"}
	before := map[string]bool{}
	for _, r := range roots {
		_, err := os.Stat(r)
		before[r] = err == nil
	}
	wd, err := os.Getwd()
	require.NoError(t, err)
	treeBefore := tree(t, wd)

	for _, plan := range plans {
		t.Run(strings.TrimSuffix(plan, ".yaml"), func(t *testing.T) {
			cmd := exec.Command(bin, "apply", "--dry-run", plan, "--env-file", envFile)
			cmd.Env = []string{"PATH=" + shims, "HOME=" + work, "PLANRUN_STATE_DIR=" + state}
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "dry run of %s:\n%s", plan, out)
			require.Contains(t, string(out), "dry run: nothing is executed")
			require.NotContains(t, string(out), "fixture-pg-pass", "a secret in the dry run output")
			require.NotContains(t, string(out), "fixture-mongo-pass", "a secret in the dry run output")
		})
	}
	ran, err := os.ReadDir(marks)
	require.NoError(t, err)
	require.Empty(t, ran, "a dry run executed programs")
	_, err = os.Stat(state)
	require.True(t, os.IsNotExist(err), "a dry run created the state dir (a record or a log)")
	require.Equal(t, treeBefore, tree(t, wd), "a dry run changed the working directory")
	for _, r := range roots {
		_, err := os.Stat(r)
		require.Equal(t, before[r], err == nil, "a dry run created %s", r)
	}
}

// tree lists every path under dir (what a dry run must not change).
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, p+" "+info.ModTime().String())
		return nil
	}))
	sort.Strings(out)
	return out
}
