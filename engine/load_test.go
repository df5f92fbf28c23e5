package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
