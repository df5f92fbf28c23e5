package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

// validate --online against the test PostgreSQL: one line per check and
// exit 0; a server that is down: the failing check named, exit 1; --json.
func TestValidateOnline(t *testing.T) {
	testenv.Require(t, "PostgreSQL (scripts/testenv.sh)", "PGHOST", "PGPORT", "PGUSER")
	testenv.RequireTool(t, "pg_dump")
	dir := t.TempDir()
	t.Setenv("PLANRUN_STATE_DIR", filepath.Join(dir, "state"))
	t.Setenv("PLANRUN_DB", "")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	write := func(name, with string) string {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, []byte(`version: 1
name: pf
steps:
  - id: db
    type: pg_dump
    with: {`+with+`output: `+dir+`/db.dump.zst}
`), 0o600))
		return f
	}
	good, down := write("good.yaml", "database: postgres, "), write("down.yaml", fmt.Sprintf("host: 127.0.0.1, port: %d, database: postgres, ", closed))

	r := runCLI(t, "validate", "--online", good)
	require.Equal(t, engine.ExitOK, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `(?m)^ok    postgres \(step db\) \S+/postgres: connected, server version 15`, r.stdout)
	assert.Regexp(t, `(?m)^ok    tool-version \(step db\) \S+pg_dump: pg_dump 15`, r.stdout)
	assert.Contains(t, r.stdout, good+": preflight passed")
	_, err = os.Stat(filepath.Join(dir, "state", "runs.db"))
	assert.True(t, os.IsNotExist(err), "preflight created the run store")
	_, err = os.Stat(filepath.Join(dir, "db.dump.zst"))
	assert.True(t, os.IsNotExist(err), "preflight wrote an artifact")

	r = runCLI(t, "validate", "--online", good, down)
	assert.Equal(t, engine.ExitFailed, r.code)
	assert.Regexp(t, fmt.Sprintf(`(?m)^fail  postgres \(step db\) 127.0.0.1:%d/postgres: cannot connect: .*Connection refused`, closed), r.stdout)
	assert.Contains(t, r.stdout, down+": preflight FAILED")

	r = runCLI(t, "validate", "--online", "--json", down)
	assert.Equal(t, engine.ExitFailed, r.code, r.stderr)
	var reps []preflightReport
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &reps), r.stdout)
	require.Len(t, reps, 1)
	assert.False(t, reps[0].OK)
	var found bool
	for _, c := range reps[0].Checks {
		if c.Check == "postgres" {
			found = true
			assert.Equal(t, engine.CheckFail, c.Status)
			assert.Equal(t, "db", c.Step)
		}
	}
	assert.True(t, found, r.stdout)

	assert.Equal(t, engine.ExitInvalid, runCLI(t, "validate", "--json", good).code, "--json needs --online")
}

// apply refuses, as root, a plan file that others can write.
func TestApplyRefusesWritablePlanAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if testenv.InCI() {
			t.Fatal("CI runs the tests as root")
		}
		t.Skip("not root")
	}
	dir := t.TempDir()
	t.Setenv("PLANRUN_STATE_DIR", filepath.Join(dir, "state"))
	t.Setenv("PLANRUN_DB", "")
	plan := filepath.Join(dir, "plan.yaml")
	require.NoError(t, os.WriteFile(plan, []byte("version: 1\nname: w\nsteps:\n  - id: x\n    type: exec\n    with: {command: [touch, "+dir+"/ran]}\n"), 0o600))
	require.NoError(t, os.Chmod(plan, 0o646))
	r := runCLI(t, "apply", plan)
	assert.Equal(t, engine.ExitInvalid, r.code)
	assert.Contains(t, r.stderr, "plan file "+plan+" has mode 0646 and planrun runs as root: group or others can write it")
	_, err := os.Stat(filepath.Join(dir, "ran"))
	assert.True(t, os.IsNotExist(err), "the step ran")

	require.NoError(t, os.Chmod(plan, 0o644))
	r = runCLI(t, "apply", plan)
	assert.Equal(t, engine.ExitOK, r.code, r.stderr)
}
