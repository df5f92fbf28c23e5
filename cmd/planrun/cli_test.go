package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
)

// runCLI runs planrun in-process with a private state dir.
func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

// Every verb answers -h, --help and `planrun help VERB` with its usage on
// stdout and exit 0, and a bad flag with its usage on stderr and exit 2,
// before touching the run store or anything else.
func TestHelpAndUsageErrorsEveryVerb(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	t.Setenv("PLANRUN_STATE_DIR", state)
	t.Setenv("PLANRUN_DB", "")
	for _, v := range verbs {
		t.Run(v.name, func(t *testing.T) {
			want := "usage: planrun " + v.name
			var help string
			for _, args := range [][]string{{v.name, "-h"}, {v.name, "--help"}, {"help", v.name}} {
				r := runCLI(t, args...)
				assert.Equal(t, engine.ExitOK, r.code, "%q", args)
				assert.True(t, strings.HasPrefix(r.stdout, want), "%q: stdout %q", args, r.stdout)
				assert.Contains(t, r.stdout, v.summary, "%q", args)
				assert.Empty(t, r.stderr, "%q", args)
				if help == "" {
					help = r.stdout
				}
				assert.Equal(t, help, r.stdout, "%q prints the same usage", args)
			}

			r := runCLI(t, v.name, "--no-such-flag")
			assert.Equal(t, exitUsage, r.code)
			assert.Empty(t, r.stdout)
			assert.Contains(t, r.stderr, "flag provided but not defined: -no-such-flag")
			assert.Contains(t, r.stderr, want)
		})
	}
	_, err := os.Stat(state)
	assert.True(t, os.IsNotExist(err), "help and usage errors created %s", state)

	// A missing or extra argument is a usage error too.
	for _, args := range [][]string{
		{"apply"}, {"apply", "a.yaml", "b.yaml"}, {"validate"}, {"restore"}, {"drill"},
		{"show"}, {"status", "p"}, {"runs", "extra"}, {"steps", "a", "b"}, {"schema", "x"}, {"version", "x"},
	} {
		r := runCLI(t, args...)
		assert.Equal(t, exitUsage, r.code, "%q", args)
		assert.Empty(t, r.stdout, "%q", args)
		assert.Contains(t, r.stderr, "usage: planrun "+args[0], "%q", args)
	}

	// planrun's own usage.
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		r := runCLI(t, args...)
		assert.Equal(t, engine.ExitOK, r.code, "%q", args)
		assert.Contains(t, r.stdout, "planrun help VERB", "%q", args)
		assert.Empty(t, r.stderr, "%q", args)
	}
	for _, args := range [][]string{{}, {"nope"}, {"help", "nope"}, {"help", "apply", "x"}} {
		r := runCLI(t, args...)
		assert.Equal(t, exitUsage, r.code, "%q", args)
		assert.Empty(t, r.stdout, "%q", args)
		assert.Contains(t, r.stderr, "planrun help VERB", "%q", args)
	}
}

// The exit codes of representative outcomes are the ones the README's
// exit code table documents.
func TestExitCodesAsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	documented := exitCodeTable(t, string(readme))

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	t.Setenv("PLANRUN_STATE_DIR", state)
	t.Setenv("PLANRUN_DB", "")
	plan := func(name, command string) string {
		f := filepath.Join(dir, name+".yaml")
		src := "version: 1\nname: " + name + "\nsteps:\n  - id: a\n    type: exec\n    with: {command: [" + command + "]}\n"
		require.NoError(t, os.WriteFile(f, []byte(src), 0o600))
		return f
	}
	ok, fails := plan("ok", "true"), plan("fails", "false")
	invalid := filepath.Join(dir, "invalid.yaml")
	require.NoError(t, os.WriteFile(invalid, []byte("version: 1\nname: invalid\nsteps:\n  - id: a\n    type: exec\n    with: {comand: [true]}\n"), 0o600))

	// Another process holds the lock of plan "locked" (flock locks are per
	// open file, so this test's own lock conflicts like another process's).
	lockedPlan := plan("locked", "true")
	lock, err := engine.AcquireLock(context.Background(), state, "locked", "holder", false)
	require.NoError(t, err)
	defer lock.Release()

	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		meaning string // a word of the README's row for the code
	}{
		{"success", []string{"apply", ok}, engine.ExitOK, "success"},
		{"failed step", []string{"apply", fails}, engine.ExitFailed, "step failed"},
		{"invalid plan (apply)", []string{"apply", invalid}, engine.ExitInvalid, "invalid plan"},
		{"invalid plan (validate)", []string{"validate", invalid}, engine.ExitInvalid, "invalid plan"},
		{"usage", []string{"apply", "--wiat", ok}, exitUsage, "usage"},
		{"unknown verb", []string{"aply", ok}, exitUsage, "usage"},
		{"missing env file", []string{"apply", "--env-file", filepath.Join(dir, "none.env"), ok}, engine.ExitInvalid, "env file"},
		{"lock held", []string{"apply", lockedPlan}, engine.ExitLocked, "lock"},
		{"stale status", []string{"status", "fails", "--max-age", "1h"}, engine.ExitFailed, "stale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.args...)
			assert.Equal(t, tc.code, r.code, "stderr: %s", r.stderr)
			if tc.meaning != "" {
				assert.Contains(t, documented[tc.code], tc.meaning, "README's row for exit code %d", tc.code)
			}
		})
	}
}

// exitCodeTable reads the README's "### Exit codes" table: code → meaning.
func exitCodeTable(t *testing.T, readme string) map[int]string {
	t.Helper()
	_, section, found := strings.Cut(readme, "### Exit codes\n")
	require.True(t, found, "README has no Exit codes section")
	section, _, _ = strings.Cut(section, "\n#")
	rows := map[int]string{}
	row := regexp.MustCompile(`(?m)^\| ([0-9 /]+) \| (.+) \|$`)
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		for _, c := range strings.Split(m[1], "/") {
			n, err := strconv.Atoi(strings.TrimSpace(c))
			require.NoError(t, err)
			rows[n] = m[2]
		}
	}
	require.NotEmpty(t, rows, "README's Exit codes table has no rows")
	return rows
}
