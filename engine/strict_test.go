package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
)

type toolParams struct {
	Program string `yaml:"program" default:"planrun-strict-fake-tool" tool:"true" doc:"the program"`
}

// validate --strict finds a step's tools where apply's child process will:
// on the PATH of the environment merged with the env files, per
// env_precedence. Each case checks CheckStrict against the lookup on the
// environment Prepare builds for the run.
func TestStrictToolLookupFollowsChildPATH(t *testing.T) {
	const tool = "planrun-strict-fake-tool"
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.Mkdir(bin, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bin, tool), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	withPath := filepath.Join(dir, "path.env")
	require.NoError(t, os.WriteFile(withPath, []byte("PATH="+bin+"\n"), 0o600))
	noPath := filepath.Join(dir, "nopath.env")
	require.NoError(t, os.WriteFile(noPath, []byte("OTHER=1\n"), 0o600))

	def := engine.Def[toolParams]{Name: "tooled", Summary: "runs a tool",
		Run: func(context.Context, *engine.Env, *toolParams) (engine.Outputs, error) { return nil, nil }}
	reg := engine.NewRegistry(def.Type())
	processEnv := []string{"PATH=" + filepath.Join(dir, "empty")}

	for _, tc := range []struct {
		name, precedence, envFile string
		found                     bool
	}{
		{"env file sets PATH", "file", withPath, true},
		{"process env wins with env_precedence: process", "process", withPath, false},
		{"env file without PATH", "file", noPath, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "version: 1\nname: strict\nenv_files: [" + tc.envFile + "]\nenv_precedence: " + tc.precedence +
				"\nsteps:\n  - id: s\n    type: tooled\n"
			p, err := engine.Load("strict.yaml", []byte(src), reg)
			require.NoError(t, err)
			inv := engine.Invocation{Environ: processEnv}

			strictErr := engine.CheckStrict(p, inv)
			scope, err := engine.Prepare(p, inv)
			require.NoError(t, err)
			_, applyErr := engine.LookPath(tool, scope.Environ)
			assert.Equal(t, applyErr == nil, strictErr == nil, "strict: %v; apply: %v", strictErr, applyErr)
			if tc.found {
				assert.NoError(t, strictErr)
				return
			}
			require.Error(t, strictErr)
			assert.Contains(t, strictErr.Error(), `strict.yaml:6:5: step "s" (tooled): `+tool+": executable not found in PATH")
		})
	}

	// An unreadable env file is reported, and the tools are still checked.
	p, err := engine.Load("strict.yaml", []byte("version: 1\nname: strict\nenv_files: [missing.env]\nsteps: [{id: s, type: tooled}]\n"), reg)
	require.NoError(t, err)
	err = engine.CheckStrict(p, engine.Invocation{Environ: processEnv})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "env_files: ")
	assert.Equal(t, 2, strings.Count(err.Error(), "\n")+1, "two problems: %v", err)

	// The program a plan names in the tool param is what is checked, not
	// the type's default; one an expression decides is known only at run time.
	assert.Equal(t, []string{tool}, reg.Lookup("tooled").Tools, "declared by the param's default")
	for with, wantErr := range map[string]string{
		"{program: /nonexistent/pg_dump}":             "/nonexistent/pg_dump",
		"{program: " + filepath.Join(bin, tool) + "}": "",
		`{program: "${{ env.PROG }}"}`:                "",
	} {
		p, err := engine.Load("strict.yaml", []byte("version: 1\nname: strict\nsteps: [{id: s, type: tooled, with: "+with+"}]\n"), reg)
		require.NoError(t, err)
		err = engine.CheckStrict(p, engine.Invocation{Environ: processEnv})
		if wantErr == "" {
			assert.NoError(t, err, with)
		} else if assert.Error(t, err, with) {
			assert.Contains(t, err.Error(), wantErr)
		}
	}
}
