package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps"
)

// Each broken plan under testdata/plans/bad lists the exact problems it
// must produce in `# want:` lines (file:line:col: message).
func TestLoadBadPlans(t *testing.T) {
	files, err := filepath.Glob("../testdata/plans/bad/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			var want []string
			for _, line := range strings.Split(string(data), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					want = append(want, w)
				}
			}
			require.NotEmpty(t, want, "fixture has no # want: lines")
			_, err = engine.Load(filepath.Base(f), data, steps.All())
			require.Error(t, err)
			var probs engine.Problems
			require.ErrorAs(t, err, &probs)
			var got []string
			for _, p := range probs {
				got = append(got, p.Error())
			}
			assert.Equal(t, want, got)
		})
	}
}

func TestLoadShippedAndGoodPlans(t *testing.T) {
	files, _ := filepath.Glob("../plans/*.yaml")
	good, _ := filepath.Glob("../testdata/plans/good/*.yaml")
	files = append(files, good...)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			p, err := engine.LoadFile(f, steps.All())
			require.NoError(t, err)
			assert.NotEmpty(t, p.Steps)
			assert.Len(t, p.SHA256, 64)
		})
	}
}

func TestLoadDefaultsAndStepSettings(t *testing.T) {
	src := `version: 1
name: d
defaults:
  timeout: 5m
  retry: {attempts: 3, delay: 2s, max_delay: 1m}
timeout: 1h
steps:
  - id: a
    type: exec
    with: {command: ["true"]}
  - id: b
    type: exec
    timeout: 7d
    retry: {attempts: 1}
    continue_on_error: true
    with: {shell: "true"}
`
	p, err := engine.Load("d.yaml", []byte(src), steps.All())
	require.NoError(t, err)
	assert.Equal(t, "5m0s", p.Steps[0].Timeout.String())
	assert.Equal(t, 3, p.Steps[0].Retry.Attempts)
	assert.Equal(t, "2s", p.Steps[0].Retry.Delay.String())
	assert.Equal(t, "168h0m0s", p.Steps[1].Timeout.String())
	assert.Equal(t, 1, p.Steps[1].Retry.Attempts)
	assert.Equal(t, "2s", p.Steps[1].Retry.Delay.String(), "retry inherits unset fields from defaults")
	assert.True(t, p.Steps[1].ContinueOnError)
	assert.Equal(t, "1h0m0s", p.Timeout.String())
}

// The defaults a user observes are the declared ones (and documented in
// the schema and README from the same declaration).
func TestLoadDeclaredDefaults(t *testing.T) {
	src := `version: 1
name: d
steps:
  - id: a
    type: exec
    with: {command: ["true"]}
  - id: b
    type: exec
    retry: {attempts: 3, max_delay: 2s}
    with: {command: ["true"]}
monitor:
  - type: healthcheck-ping
    with: {url: "https://hc.example/x"}
`
	p, err := engine.Load("d.yaml", []byte(src), steps.All())
	require.NoError(t, err)
	assert.Equal(t, "file", p.EnvPrecedence)
	assert.Equal(t, 2*time.Hour, p.Steps[0].Timeout)
	assert.Equal(t, engine.Retry{Attempts: 1, Delay: 5 * time.Second}, p.Steps[0].Retry)
	assert.Equal(t, engine.Retry{Attempts: 3, Delay: 2 * time.Second, MaxDelay: 2 * time.Second}, p.Steps[1].Retry,
		"the default delay never exceeds max_delay")
	assert.Equal(t, 30*time.Second, p.Monitor[0].Timeout)
	assert.Equal(t, 1, p.Monitor[0].Retry.Attempts)

	format := engine.PlanFormat()
	retry := format.Lookup("defaults").Fields.Lookup("retry").Fields
	assert.Equal(t, "5s", retry.Lookup("delay").Default)
	assert.Equal(t, "1", retry.Lookup("attempts").Default)
	assert.Equal(t, "2h", format.Lookup("defaults").Fields.Lookup("timeout").Default)
	assert.Contains(t, format.Lookup("monitor").Doc, "30s timeout")
}

func TestLoadAcceptsAnchorsAndMergeKeys(t *testing.T) {
	src := `version: 1
name: anchors
steps:
  - id: a
    type: exec
    with: &base {command: [echo, hi], env: {A: "1"}}
  - id: b
    type: exec
    with:
      <<: *base
      dir: /tmp
`
	p, err := engine.Load("a.yaml", []byte(src), steps.All())
	require.NoError(t, err)
	assert.Len(t, p.Steps, 2)
}

func TestLoadHyphenatedStepReference(t *testing.T) {
	src := `version: 1
name: hy
steps:
  - id: make-dump
    type: exec
    with: {command: [echo, hi]}
  - id: use
    type: exec
    with: {command: [echo, "${{ steps.make-dump.outputs.stdout }}"]}
`
	_, err := engine.Load("h.yaml", []byte(src), steps.All())
	require.NoError(t, err)
}

func TestLoadUnknownOutputAndStatusFuncInVars(t *testing.T) {
	src := `version: 1
name: x
vars:
  a: ${{ failure() }}
steps:
  - id: s1
    type: exec
    with: {command: [echo]}
  - id: s2
    type: exec
    with: {command: [echo, "${{ steps.s1.outputs.nope }}"]}
`
	_, err := engine.Load("x.yaml", []byte(src), steps.All())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `x.yaml:4:6: vars.a: failure() only makes sense in a step's when`)
	assert.Contains(t, err.Error(), `x.yaml:11:28: step "s2": step "s1" (exec) has no output "nope"`)
}

func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("../testdata/plans/*/*.yaml")
	shipped, _ := filepath.Glob("../plans/*.yaml")
	for _, s := range append(seeds, shipped...) {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("version: 1\nname: a\nsteps: [{id: a, type: exec, with: {command: [x]}, when: '${{'}]"))
	reg := steps.All()
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := engine.Load("fuzz.yaml", data, reg)
		if err == nil && p == nil {
			t.Fatal("nil plan without error")
		}
		if err != nil && p != nil {
			t.Fatal("plan and error")
		}
	})
}

type boundedParams struct {
	Jobs  int      `yaml:"jobs" min:"1" max:"8" doc:"parallel jobs"`
	Label string   `yaml:"label" pattern:"^[a-z]+$" doc:"a label"`
	Tags  []string `yaml:"tags" max:"2" doc:"tags"`
}

// The min, max and pattern tags work for step params too: validation and
// the schema read them from the same declaration.
func TestParamBoundsAndPattern(t *testing.T) {
	typ := engine.Def[boundedParams]{Name: "bounded", Summary: "bounded params",
		Run: func(context.Context, *engine.Env, *boundedParams) (engine.Outputs, error) { return nil, nil }}.Type()
	reg := engine.NewRegistry(typ)
	src := "version: 1\nname: b\nsteps:\n  - id: a\n    type: bounded\n    with: {jobs: 9, label: Abc, tags: [a, b, c]}\n"
	_, err := engine.Load("b.yaml", []byte(src), reg)
	require.Error(t, err)
	assert.Equal(t, `b.yaml:6:18: step "a" (bounded): param "jobs": must be 1..8, got 9
b.yaml:6:28: step "a" (bounded): param "label": "Abc" does not match ^[a-z]+$
b.yaml:6:39: step "a" (bounded): param "tags": must be at most 2 entries, got 3`, err.Error())
	_, err = engine.Load("b.yaml", []byte(strings.Replace(src, "{jobs: 9, label: Abc, tags: [a, b, c]}", "{jobs: 8, label: abc, tags: [a]}", 1)), reg)
	require.NoError(t, err)

	b, err := engine.Schema(reg)
	require.NoError(t, err)
	for _, want := range []string{`"maximum": 8`, `"minimum": 1`, `"pattern": "^[a-z]+$"`, `"maxItems": 2`} {
		assert.Contains(t, string(b), want)
	}
}
