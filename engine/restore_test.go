package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
)

// Fakes for restore tests: "dump" writes one artifact per item with a
// count per item; "load" restores one and measures counts, optionally
// losing one row (what a drill must catch).
type dumpParams struct {
	Dir   string   `yaml:"dir" required:"true"`
	Items []string `yaml:"items"`
}

type loadParams struct {
	Input   string `yaml:"input" required:"true"`
	Target  string `yaml:"target" required:"true"`
	Scratch bool   `yaml:"scratch"`
	Lose    string `yaml:"lose" doc:"measure one row less of this key"`
	Touch   string `yaml:"touch" doc:"file created when the step runs"`
}

func restoreRegistry() *engine.Registry {
	dump := engine.Def[dumpParams]{
		Name: "dump", Summary: "writes artifacts", Kind: engine.KindBackup,
		Outputs: []engine.Output{{Name: "n"}},
		Inverse: &engine.Inverse{Type: "load", Targets: []string{"target"}, With: func(a engine.ArtifactRecord, t engine.RestoreTarget) (map[string]any, error) {
			target := a.Source["db"]
			if t.Scratch {
				target += t.ScratchSuffix
			}
			return map[string]any{"input": t.Input, "target": target, "scratch": t.Scratch}, nil
		}},
		Run: func(ctx context.Context, env *engine.Env, p *dumpParams) (engine.Outputs, error) {
			for i, item := range p.Items {
				path := filepath.Join(p.Dir, item+".dump")
				if err := os.WriteFile(path, []byte(item), 0o600); err != nil {
					return nil, err
				}
				env.RecordArtifact(&engine.ArtifactRecord{Path: path, Size: int64(len(item)), SHA256: fmt.Sprint(i),
					Compression: "none", Source: map[string]string{"db": item},
					Counts: map[string]int64{"rows:" + item: int64(10 + i)}})
			}
			return engine.Outputs{"n": len(p.Items)}, nil
		},
	}
	load := engine.Def[loadParams]{
		Name: "load", Summary: "restores one artifact",
		Outputs: []engine.Output{{Name: "counts"}, {Name: "target"}},
		Run: func(ctx context.Context, env *engine.Env, p *loadParams) (engine.Outputs, error) {
			if p.Touch != "" {
				_ = os.WriteFile(p.Touch, nil, 0o600)
			}
			b, err := os.ReadFile(p.Input)
			if err != nil {
				return nil, err
			}
			item := string(b)
			n := int64(10)
			if item == "b" {
				n = 11
			}
			if p.Lose == item {
				n--
			}
			return engine.Outputs{"counts": map[string]int64{"rows:" + item: n}, "target": p.Target}, nil
		},
	}
	// verify as the drill uses it: the file's digest equals the manifest's.
	verify := engine.Def[verifyParams]{
		Name: "verify", Summary: "checks an artifact",
		Run: func(ctx context.Context, env *engine.Env, p *verifyParams) (engine.Outputs, error) {
			if _, err := os.Stat(p.Path); err != nil {
				return nil, err
			}
			return nil, nil
		},
	}
	return engine.NewRegistry(dump.Type(), load.Type(), verify.Type())
}

type verifyParams struct {
	Path    string `yaml:"path" required:"true"`
	SHA256  string `yaml:"sha256"`
	Sidecar string `yaml:"sidecar"`
}

func yamlScalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }

func nodeText(n *yaml.Node) string {
	b, _ := yaml.Marshal(n)
	return string(b)
}

// backup runs a dump of items a and b and returns the run's manifest.
func backup(t *testing.T, dir, restoreSection string) (*engine.Plan, *engine.Manifest) {
	t.Helper()
	src := fmt.Sprintf("version: 1\nname: db\nsteps:\n  - id: dump\n    type: dump\n    with: {dir: %q, items: [a, b]}\n%s", dir, restoreSection)
	p, err := engine.Load("db.yaml", []byte(src), restoreRegistry())
	require.NoError(t, err)
	scope, err := engine.Prepare(p, engine.Invocation{})
	require.NoError(t, err)
	rec := &memRecorder{}
	res := engine.Apply(context.Background(), p, scope, engine.Options{Recorder: rec, StateDir: t.TempDir(), Stderr: &bytes.Buffer{}})
	require.Equal(t, engine.ExitOK, res.ExitCode)
	m := &engine.Manifest{Format: engine.ManifestFormat, RunID: res.RunID, Plan: "db", Started: scope.Started}
	for _, a := range rec.attempts {
		m.Artifacts = append(m.Artifacts, a.Records...)
	}
	return p, m
}

func TestRunRecordsEveryArtifactOfAStep(t *testing.T) {
	_, m := backup(t, t.TempDir(), "")
	require.Len(t, m.Artifacts, 2, "a step that writes two artifacts records both")
	for i, a := range m.Artifacts {
		assert.Equal(t, "dump", a.StepID)
		assert.Equal(t, "dump", a.StepType)
		assert.False(t, a.Created.IsZero())
		assert.Equal(t, int64(10+i), a.Counts["rows:"+a.Source["db"]])
	}
}

func drill(t *testing.T, p *engine.Plan, m *engine.Manifest, lose string) (engine.Result, *engine.RestoreReport, *memRecorder) {
	t.Helper()
	rp, err := engine.BuildRestore(engine.RestoreRequest{Plan: p, Manifest: m, Drill: true}, restoreRegistry())
	require.NoError(t, err)
	if lose != "" {
		for _, s := range rp.Plan.Steps {
			if s.TypeName == "load" {
				s.With.Content = append(s.With.Content, yamlScalar("lose"), yamlScalar(lose))
			}
		}
	}
	scope, err := engine.Prepare(rp.Plan, engine.Invocation{})
	require.NoError(t, err)
	rec := &memRecorder{}
	res := engine.Restore(context.Background(), rp, scope, engine.Options{Recorder: rec, StateDir: t.TempDir(), Stderr: &bytes.Buffer{}})
	require.Len(t, rec.finished, 1)
	return res, rec.finished[0].Report, rec
}

func TestDrillPassesWhenCountsMatch(t *testing.T) {
	p, m := backup(t, t.TempDir(), "")
	res, rep, rec := drill(t, p, m, "")
	require.Equal(t, engine.ExitOK, res.ExitCode, "%v", res.Err)
	require.NotNil(t, rep)
	assert.True(t, rep.Passed)
	assert.Equal(t, engine.KindDrill, rec.runs[0].Kind)
	assert.Equal(t, m.RunID, rec.runs[0].SourceRun)
	assert.Positive(t, rep.RTO)
	assert.Positive(t, rep.RPO)
	var counts int
	for _, c := range rep.Checks {
		if c.What == "counts" {
			counts++
			assert.Equal(t, 1, c.Compared)
			assert.Empty(t, c.Diffs)
		}
	}
	assert.Equal(t, 2, counts, "one comparison per artifact")
	// Scratch targets carry the suffix: a drill never names the original.
	for _, a := range rec.attempts {
		if a.StepType == "load" {
			assert.Contains(t, a.Outputs["target"], "_scratch_")
		}
	}
}

func TestDrillFailsNamingTheDifference(t *testing.T) {
	p, m := backup(t, t.TempDir(), "")
	res, rep, _ := drill(t, p, m, "b")
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	require.NotNil(t, rep)
	assert.False(t, rep.Passed)
	assert.Contains(t, strings.Join(rep.Problems, "\n"), "rows:b: backup 11, restored 10")
	assert.Contains(t, res.Err.Error(), "rows:b")
}

func TestDrillFailsOverTheRTOBudget(t *testing.T) {
	p, m := backup(t, t.TempDir(), "restore: {rto: 1ns}\n")
	res, rep, _ := drill(t, p, m, "")
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	assert.Contains(t, strings.Join(rep.Problems, "\n"), "exceeds the plan's budget 1ns")
}

func TestDrillChecksEveryArtifactAgainstTheManifest(t *testing.T) {
	p, m := backup(t, t.TempDir(), "")
	rp, err := engine.BuildRestore(engine.RestoreRequest{Plan: p, Manifest: m, Drill: true}, restoreRegistry())
	require.NoError(t, err)
	var types []string
	for _, s := range rp.Plan.Steps {
		types = append(types, s.ID+":"+s.TypeName)
	}
	assert.Equal(t, []string{"check-dump:verify", "restore-dump:load", "check-dump-2:verify", "restore-dump-2:load"}, types)
}

func TestRestoreOverridesAndOnly(t *testing.T) {
	dir := t.TempDir()
	p, m := backup(t, dir, "restore:\n  steps:\n    dump: {target: elsewhere}\n")
	rp, err := engine.BuildRestore(engine.RestoreRequest{Plan: p, Manifest: m, Only: []string{"dump"}}, restoreRegistry())
	require.NoError(t, err)
	require.Len(t, rp.Plan.Steps, 4, "a sha256 check and a restore per artifact")
	assert.Equal(t, "verify", rp.Plan.Steps[0].TypeName)
	assert.Contains(t, nodeText(rp.Plan.Steps[1].With), "target: elsewhere")
	assert.Empty(t, rp.Scratch, "a restore over the originals has no scratch dir")

	_, err = engine.BuildRestore(engine.RestoreRequest{Plan: p, Manifest: m, Only: []string{"nope"}}, restoreRegistry())
	assert.ErrorContains(t, err, `no artifact of step "nope"`)
}

// The restore section serves both modes; in a scratch restore overrides
// of the params that name the target are not applied.
func TestScratchIgnoresTargetOverrides(t *testing.T) {
	p, m := backup(t, t.TempDir(), "restore:\n  steps:\n    dump: {target: production}\n")
	rp, err := engine.BuildRestore(engine.RestoreRequest{Plan: p, Manifest: m, Drill: true}, restoreRegistry())
	require.NoError(t, err)
	for _, s := range rp.Plan.Steps {
		if s.TypeName == "load" {
			assert.NotContains(t, nodeText(s.With), "production")
			assert.Contains(t, nodeText(s.With), "_scratch_")
		}
	}
}

func TestRestoreDryRunRunsNothing(t *testing.T) {
	dir := t.TempDir()
	p, m := backup(t, dir, "")
	touch := filepath.Join(dir, "ran")
	rp, err := engine.BuildRestore(engine.RestoreRequest{Plan: p, Manifest: m, Scratch: true}, restoreRegistry())
	require.NoError(t, err)
	for _, s := range rp.Plan.Steps {
		if s.TypeName == "load" {
			s.With.Content = append(s.With.Content, yamlScalar("touch"), yamlScalar(touch))
		}
	}
	scope, err := engine.Prepare(rp.Plan, engine.Invocation{})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, engine.DryRun(&out, rp.Plan, scope))
	assert.Contains(t, out.String(), "restore-dump (load): would run")
	assert.NoFileExists(t, touch)
	assert.NoDirExists(t, rp.Scratch, "the dry run created the scratch dir")
}

// A restore over the original targets compares counts too: a DR restore
// that lost rows fails.
func TestRestoreComparesCountsToo(t *testing.T) {
	p, m := backup(t, t.TempDir(), "")
	rp, err := engine.BuildRestore(engine.RestoreRequest{Plan: p, Manifest: m}, restoreRegistry())
	require.NoError(t, err)
	for _, s := range rp.Plan.Steps {
		if s.TypeName == "load" {
			s.With.Content = append(s.With.Content, yamlScalar("lose"), yamlScalar("a"))
		}
	}
	scope, err := engine.Prepare(rp.Plan, engine.Invocation{})
	require.NoError(t, err)
	rec := &memRecorder{}
	res := engine.Restore(context.Background(), rp, scope, engine.Options{Recorder: rec, StateDir: t.TempDir(), Stderr: &bytes.Buffer{}})
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	assert.Equal(t, engine.KindRestore, rec.runs[0].Kind)
	assert.Contains(t, res.Err.Error(), "rows:a: backup 10, restored 9")
}

// An inverse may decline an artifact (ErrNoRestore): it is listed as not
// restored and the others are restored.
func TestInverseMayDecline(t *testing.T) {
	p, m := backup(t, t.TempDir(), "")
	m.Artifacts[0].Source["db"] = "full"
	reg := restoreRegistry()
	inv := reg.Lookup("dump").Inverse
	with := inv.With
	inv.With = func(a engine.ArtifactRecord, t engine.RestoreTarget) (map[string]any, error) {
		if a.Source["db"] == "full" {
			return nil, fmt.Errorf("a full dump: %w", engine.ErrNoRestore)
		}
		return with(a, t)
	}
	defer func() { inv.With = with }()
	rp, err := engine.BuildRestore(engine.RestoreRequest{Plan: p, Manifest: m, Drill: true}, reg)
	require.NoError(t, err)
	require.Len(t, rp.Skipped, 1)
	assert.Contains(t, rp.Skipped[0], "a full dump: not restored by planrun restore")
	assert.Len(t, rp.Plan.Steps, 2)
}

func TestRestoreSectionIsValidated(t *testing.T) {
	for _, tc := range []struct{ section, want string }{
		{"restore:\n  steps:\n    dumb: {target: x}\n", `restore.steps: unknown step "dumb" (did you mean "dump"?)`},
		{"restore:\n  steps:\n    dump: {targte: x}\n", `restore.steps.dump: load has no param "targte" (did you mean "target"?)`},
		{"restore:\n  rto: soon\n", `restore.rto`},
		{"restore:\n  identiy_file: k\n", `restore: unknown key "identiy_file"`},
	} {
		src := "version: 1\nname: db\nsteps:\n  - id: dump\n    type: dump\n    with: {dir: /tmp}\n" + tc.section
		_, err := engine.Load("db.yaml", []byte(src), restoreRegistry())
		require.Error(t, err, tc.section)
		assert.Contains(t, err.Error(), tc.want)
		assert.Contains(t, err.Error(), "db.yaml:", "errors name the file and line")
	}
}

func TestCompareCounts(t *testing.T) {
	diffs := engine.CompareCounts(map[string]int64{"a": 1, "b": 2, "c": 3}, map[string]int64{"a": 1, "b": 3, "extra": 9})
	require.Len(t, diffs, 2)
	assert.Equal(t, "b: backup 2, restored 3", diffs[0].String())
	assert.Equal(t, "c: backup 3, not found in the restore", diffs[1].String())
	assert.Empty(t, engine.CompareCounts(map[string]int64{"a": 1}, map[string]int64{"a": 1}))
}

// Records are stored and travel off-site: a secret that reached a record's
// source is masked like in every log line.
func TestRecordsAreRedacted(t *testing.T) {
	src := fmt.Sprintf("version: 1\nname: db\nsecrets: [DB_NAME_SECRET]\nsteps:\n  - id: dump\n    type: dump\n    with: {dir: %q, items: [\"${{ env.DB_NAME_SECRET }}\"]}\n", t.TempDir())
	p, err := engine.Load("db.yaml", []byte(src), restoreRegistry())
	require.NoError(t, err)
	scope, err := engine.Prepare(p, engine.Invocation{Environ: []string{"DB_NAME_SECRET=Canary-Rec-4417"}})
	require.NoError(t, err)
	rec := &memRecorder{}
	res := engine.Apply(context.Background(), p, scope, engine.Options{Recorder: rec, StateDir: t.TempDir(), Stderr: &bytes.Buffer{}})
	require.Equal(t, engine.ExitOK, res.ExitCode, "%v", res.Err)
	require.Len(t, rec.attempts[0].Records, 1)
	assert.Equal(t, engine.Mask, rec.attempts[0].Records[0].Source["db"])
}
