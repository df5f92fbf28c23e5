package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps"
)

// The checked-in schema must be what `planrun schema` prints now.
// Regenerate with: make docs
func TestSchemaIsFresh(t *testing.T) {
	want, err := engine.Schema(steps.All())
	require.NoError(t, err)
	got, err := os.ReadFile("../../schemas/plan.schema.json")
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "schemas/plan.schema.json is stale: run `make docs`")
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	b, err := engine.Schema(steps.All())
	require.NoError(t, err)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	require.NoError(t, c.AddResource(engine.SchemaID, doc))
	s, err := c.Compile(engine.SchemaID)
	require.NoError(t, err)
	return s
}

// yamlToJSONValue converts a plan to the JSON data model the schema sees.
func yamlToJSONValue(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return yamlTextToJSON(t, b)
}

func yamlTextToJSON(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	require.NoError(t, yaml.Unmarshal(b, &v))
	j, err := json.Marshal(v)
	require.NoError(t, err)
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	require.NoError(t, err)
	return out
}

// Schema and loader must agree: every plan the loader accepts validates
// against the schema, and every shipped plan points editors at it.
func TestShippedPlansMatchSchema(t *testing.T) {
	s := compileSchema(t)
	files, _ := filepath.Glob("../../plans/*.yaml")
	good, _ := filepath.Glob("../../testdata/plans/good/*.yaml")
	require.NotEmpty(t, files)
	for _, f := range append(files, good...) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := engine.LoadFile(f, steps.All())
			require.NoError(t, err)
			require.NoError(t, s.Validate(yamlToJSONValue(t, f)))
			b, _ := os.ReadFile(f)
			first, _, _ := strings.Cut(string(b), "\n")
			if strings.Contains(f, "/plans/") && !strings.Contains(f, "testdata") {
				assert.Equal(t, "# yaml-language-server: $schema=../schemas/plan.schema.json", first)
			}
		})
	}
}

// The schema rejects what the loader rejects for shape reasons.
func TestSchemaRejectsUnknownKeysAndParams(t *testing.T) {
	s := compileSchema(t)
	for _, f := range []string{"typo-key.yaml", "typo-param.yaml", "wrong-types.yaml", "unknown-type.yaml"} {
		v := yamlToJSONValue(t, filepath.Join("../../testdata/plans/bad", f))
		assert.Error(t, s.Validate(v), f)
	}
}

// An editor validating a plan against the schema flags a param that
// belongs to another restic command (each command is its own type with
// exactly its params), and completes only the step type's own params.
func TestSchemaRejectsParamOfAnotherResticCommand(t *testing.T) {
	s := compileSchema(t)
	doc := func(typ, with string) any {
		t.Helper()
		src := "version: 1\nname: offsite\nsteps:\n  - id: snap\n    type: " + typ + "\n    with: {repository: /backups/restic, " + with + "}\n"
		var v any
		require.NoError(t, yaml.Unmarshal([]byte(src), &v))
		j, err := json.Marshal(v)
		require.NoError(t, err)
		out, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
		require.NoError(t, err)
		return out
	}
	err := s.Validate(doc("restic-backup", "paths: [/backups/mongo], keep_daily: 7"))
	require.Error(t, err, "keep_daily is a restic-forget param")
	assert.Contains(t, err.Error(), "keep_daily")
	assert.NoError(t, s.Validate(doc("restic-forget", "keep_daily: 7")))
	assert.NoError(t, s.Validate(doc("restic-backup", "paths: [/backups/mongo]")))

	var schema struct {
		Defs map[string]struct {
			Properties map[string]any `json:"properties"`
		} `json:"$defs"`
	}
	b, err := engine.Schema(steps.All())
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &schema))
	backup := schema.Defs["with-restic-backup"].Properties
	assert.Contains(t, backup, "paths")
	assert.NotContains(t, backup, "keep_daily", "an editor offers only restic-backup's params")
	assert.NotContains(t, backup, "command")
}

// The schema carries the plan format's declaration: editors see the same
// bounds, enums, patterns and defaults the loader applies.
func TestSchemaCarriesFormatDeclaration(t *testing.T) {
	s := compileSchema(t)
	base := "version: 1\nname: x\nsteps:\n  - id: a\n    type: exec\n    with: {command: [echo]}\n"
	for _, bad := range []string{
		base + "defaults: {retry: {attempts: 0}}\n",
		base + "defaults: {retry: {attempts: 101}}\n",
		base + "env_precedence: env\n",
		base + "vars: {bad-name: x}\n",
		base + "restore: {rto: soon}\n",
		base + "monitor: [{type: exec}]\n",
		"version: 2\nname: x\nsteps: [{id: a, type: exec, with: {command: [echo]}}]\n",
		"version: 1\nname: x\nsteps: []\n",
		"version: 1\nname: x y\nsteps: [{id: a, type: exec, with: {command: [echo]}}]\n",
		"version: 1\nname: x\nsteps: [{id: 1a, type: exec, with: {command: [echo]}}]\n",
	} {
		_, err := engine.Load("bad.yaml", []byte(bad), steps.All())
		assert.Error(t, err, "loader: %s", bad)
		assert.Error(t, s.Validate(yamlTextToJSON(t, []byte(bad))), "schema: %s", bad)
	}
	good := base + "defaults: {timeout: 1h, retry: {attempts: 100, delay: 1s, max_delay: 1m}}\nenv_precedence: process\nvars: {a_1: x}\n"
	_, err := engine.Load("good.yaml", []byte(good), steps.All())
	require.NoError(t, err)
	require.NoError(t, s.Validate(yamlTextToJSON(t, []byte(good))))

	b, err := engine.Schema(steps.All())
	require.NoError(t, err)
	var doc struct {
		Properties map[string]struct {
			Default    any `json:"default"`
			Properties map[string]struct {
				Default any `json:"default"`
			} `json:"properties"`
		} `json:"properties"`
		Defs map[string]struct {
			Properties map[string]struct {
				Default any `json:"default"`
			} `json:"properties"`
		} `json:"$defs"`
	}
	require.NoError(t, json.Unmarshal(b, &doc))
	assert.Equal(t, "file", doc.Properties["env_precedence"].Default)
	assert.Equal(t, "2h", doc.Properties["defaults"].Properties["timeout"].Default)
	assert.Equal(t, "5s", doc.Defs["retry"].Properties["delay"].Default)
	assert.Equal(t, 1.0, doc.Defs["retry"].Properties["attempts"].Default)
}
