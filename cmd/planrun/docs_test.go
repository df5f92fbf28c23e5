package main

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps"
)

var update = flag.Bool("update", false, "rewrite generated files (README step table, schema)")

// The README's step table is generated from the step declarations.
// Regenerate with: make docs
func TestReadmeStepTableIsFresh(t *testing.T) {
	const begin, end = "<!-- steps:begin -->\n", "<!-- steps:end -->"
	path := "../../README.md"
	readme, err := os.ReadFile(path)
	require.NoError(t, err)
	var table bytes.Buffer
	engine.WriteMarkdownTable(&table, steps.All())
	s := string(readme)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	require.True(t, i >= 0 && j > i, "README lacks the steps markers")
	want := s[:i+len(begin)] + table.String() + s[j:]
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		b, err := engine.Schema(steps.All())
		require.NoError(t, err)
		require.NoError(t, os.WriteFile("../../schemas/plan.schema.json", b, 0o644))
		return
	}
	assert.Equal(t, want, s, "README step table is stale: run `make docs`")
}

// Every step type's example decodes against its own params, and every
// type is documented.
func TestStepTypesAreDocumented(t *testing.T) {
	reg := steps.All()
	for _, n := range reg.Names() {
		typ := reg.Lookup(n)
		assert.NotEmpty(t, typ.Summary, n)
		for _, p := range typ.Params.Params {
			assert.NotEmpty(t, p.Doc, "%s: param %s has no doc", n, p.Name)
		}
		require.NotEmpty(t, typ.Example, "%s has no example", n)
		src := "version: 1\nname: ex\nsteps:\n  - id: ex\n    type: " + n + "\n    with:\n"
		for _, line := range strings.Split(strings.TrimRight(typ.Example, "\n"), "\n") {
			src += "      " + line + "\n"
		}
		_, err := engine.Load(n+"-example.yaml", []byte(src), reg)
		assert.NoError(t, err, "example of %s", n)
	}
}

// The README's example plan is valid.
func TestReadmeExamplePlanValidates(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	s := string(readme)
	i := strings.Index(s, "## A plan")
	require.True(t, i >= 0)
	start := strings.Index(s[i:], "```yaml\n") + i + len("```yaml\n")
	end := strings.Index(s[start:], "```") + start
	_, err = engine.Load("README.md example", []byte(s[start:end]), steps.All())
	assert.NoError(t, err)
}
