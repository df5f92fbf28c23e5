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

// The README's step table and plan format table are generated from the
// declarations, like the schema. Regenerate with: make docs
func TestReadmeStepTableIsFresh(t *testing.T) {
	path := "../../README.md"
	readme, err := os.ReadFile(path)
	require.NoError(t, err)
	var stepTable, format bytes.Buffer
	writeStepTable(&stepTable, steps.All())
	writeFormatTable(&format, engine.PlanFormat())
	s := string(readme)
	want := replaceSection(t, s, "steps", stepTable.String())
	want = replaceSection(t, want, "format", format.String())
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		b, err := engine.Schema(steps.All())
		require.NoError(t, err)
		require.NoError(t, os.WriteFile("../../schemas/plan.schema.json", b, 0o644))
		return
	}
	assert.Equal(t, want, s, "README step or format table is stale: run `make docs`")
}

// replaceSection puts body between the <!-- name:begin --> and
// <!-- name:end --> markers of s.
func replaceSection(t *testing.T, s, name, body string) string {
	t.Helper()
	begin, end := "<!-- "+name+":begin -->\n", "<!-- "+name+":end -->"
	i, j := strings.Index(s, begin), strings.Index(s, end)
	require.True(t, i >= 0 && j > i, "README lacks the %s markers", name)
	return s[:i+len(begin)] + body + s[j:]
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

// Every key of the plan format is documented (the README table and the
// schema show the doc).
func TestPlanFormatIsDocumented(t *testing.T) {
	var walk func(s *engine.Spec, path string)
	walk = func(s *engine.Spec, path string) {
		for _, p := range s.Params {
			assert.NotEmpty(t, p.Doc, "plan format key %s%s has no doc", path, p.Name)
			if p.Fields != nil {
				walk(p.Fields, path+p.Name+".")
			}
		}
	}
	walk(engine.PlanFormat(), "")
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
