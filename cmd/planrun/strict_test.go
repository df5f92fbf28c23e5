package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

// validate --strict and apply find a step's tool on the same PATH: the one
// an env file gives the step's process. The process PATH here has psql but
// no pg_dump; the env file's PATH has a pg_dump that records its use and
// runs the real one against the test PostgreSQL.
func TestStrictAgreesWithApplyOnEnvFilePATH(t *testing.T) {
	testenv.Require(t, "PostgreSQL (scripts/testenv.sh)", "PGHOST", "PGPORT", "PGUSER")
	realDump := testenv.RequireTool(t, "pg_dump")
	realPsql := testenv.RequireTool(t, "psql")

	dir := t.TempDir()
	processBin, fakeBin, emptyBin := filepath.Join(dir, "process-bin"), filepath.Join(dir, "fake-bin"), filepath.Join(dir, "empty-bin")
	for _, d := range []string{processBin, fakeBin, emptyBin} {
		require.NoError(t, os.Mkdir(d, 0o755))
	}
	require.NoError(t, os.Symlink(realPsql, filepath.Join(processBin, "psql")))
	used := filepath.Join(dir, "fake-pg_dump-used")
	fake := "#!/bin/sh\necho \"$@\" >> " + used + "\nexec " + realDump + " \"$@\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(fakeBin, "pg_dump"), []byte(fake), 0o755))

	db := "planrun_strict_" + strings.ReplaceAll(filepath.Base(dir), "-", "_")
	psql := func(sql string) {
		out, err := exec.Command(realPsql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	psql("CREATE DATABASE " + db)
	t.Cleanup(func() { psql("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)") })

	t.Setenv("PATH", processBin)
	t.Setenv("PLANRUN_STATE_DIR", filepath.Join(dir, "state"))
	t.Setenv("PLANRUN_DB", "")
	envFile := func(name, path string) string {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, []byte("PATH="+path+"\n"), 0o600))
		return f
	}
	withFake, withoutFake := envFile("fake.env", fakeBin), envFile("empty.env", emptyBin)
	plan := filepath.Join(dir, "plan.yaml")
	require.NoError(t, os.WriteFile(plan, []byte(`version: 1
name: strict-path
env_files: [`+withFake+`]
steps:
  - id: dump
    type: pg_dump
    with: {database: `+db+`, output: `+filepath.Join(dir, "out.dump.zst")+`}
`), 0o600))

	// The plan's env file puts the fake pg_dump on the step's PATH.
	r := runCLI(t, "validate", "--strict", plan)
	assert.Equal(t, engine.ExitOK, r.code, "validate --strict: %s", r.stderr)
	r = runCLI(t, "apply", plan)
	assert.Equal(t, engine.ExitOK, r.code, "apply: %s", r.stderr)
	b, err := os.ReadFile(used)
	require.NoError(t, err, "apply did not run the env file's pg_dump")
	assert.Contains(t, string(b), "--snapshot")

	// --env-file replaces it with one whose PATH has no pg_dump: both fail.
	r = runCLI(t, "validate", "--strict", "--env-file", withoutFake, plan)
	assert.Equal(t, engine.ExitInvalid, r.code)
	assert.Contains(t, r.stderr, `step "dump" (pg_dump): pg_dump: executable not found in PATH`)
	// (The first apply's artifact goes, so that this one gets to run pg_dump.)
	require.NoError(t, os.Remove(filepath.Join(dir, "out.dump.zst")))
	r = runCLI(t, "apply", "--env-file", withoutFake, plan)
	assert.Equal(t, engine.ExitFailed, r.code)
	assert.Contains(t, r.stderr, "pg_dump failed, no artifact written: pg_dump: executable not found in PATH")
}

// A step that runs its tool in a container needs the container engine on
// the host, not the tool: validate --strict looks for docker, not pg_dump.
func TestStrictLooksForTheContainerEngine(t *testing.T) {
	dir := t.TempDir()
	withDocker, empty := filepath.Join(dir, "with-docker"), filepath.Join(dir, "empty")
	for _, d := range []string{withDocker, empty} {
		require.NoError(t, os.Mkdir(d, 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(withDocker, "docker"), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	envFile := func(name, path string) string {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, []byte("PATH="+path+"\n"), 0o600))
		return f
	}
	// Neither pg_dump nor docker is on the process PATH.
	t.Setenv("PATH", empty)
	plan := filepath.Join(dir, "plan.yaml")
	require.NoError(t, os.WriteFile(plan, []byte(`version: 1
name: strict-container
steps:
  - id: dump
    type: pg_dump
    with: {database: app, container: {name: app-db, engine: docker}, output: `+filepath.Join(dir, "out.dump.zst")+`}
`), 0o600))

	r := runCLI(t, "validate", "--strict", "--env-file", envFile("docker.env", withDocker), plan)
	assert.Equal(t, engine.ExitOK, r.code, "pg_dump and psql run in the container, docker is found: %s", r.stderr)

	r = runCLI(t, "validate", "--strict", "--env-file", envFile("empty.env", empty), plan)
	assert.Equal(t, engine.ExitInvalid, r.code)
	assert.Contains(t, r.stderr, `step "dump" (pg_dump): docker: executable not found in PATH`)
	assert.NotContains(t, r.stderr, "pg_dump: executable")
}
