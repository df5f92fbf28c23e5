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
// Regenerate with: make schema
func TestSchemaIsFresh(t *testing.T) {
	want, err := engine.Schema(steps.All())
	require.NoError(t, err)
	got, err := os.ReadFile("../../schemas/plan.schema.json")
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "schemas/plan.schema.json is stale: run `make schema`")
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
