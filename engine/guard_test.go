package engine_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
)

func TestGuardCheck(t *testing.T) {
	lim := &engine.GuardLimit{MinRatio: 0.5, MaxRatio: 3, Window: 14, MinHistory: 3}
	hist := func(sizes ...int64) []engine.Sample {
		var out []engine.Sample
		for _, s := range sizes {
			out = append(out, engine.Sample{Size: s, Counts: map[string]int64{"rows:public.users": s / 10}})
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		g       engine.Guard
		cur     engine.Sample
		hist    []engine.Sample
		verdict string
		summary string
	}{
		{"first runs", engine.Guard{Size: lim}, engine.Sample{Size: 10}, hist(1000, 1000),
			engine.VerdictNoHistory, "2 successful run(s) recorded, min_history 3"},
		{"normal variation", engine.Guard{Size: lim}, engine.Sample{Size: 900}, hist(1000, 1100, 950, 1200),
			engine.VerdictPass, "size 900.0 B is 0.86× the median"},
		{"shrank", engine.Guard{Size: lim}, engine.Sample{Size: 200}, hist(1000, 1100, 950),
			engine.VerdictFail, "size 200.0 B is 0.20× the median 1000.0 B of the last 3 runs (min_ratio 0.5)"},
		{"grew", engine.Guard{Size: lim, Action: engine.GuardWarn}, engine.Sample{Size: 5000}, hist(1000, 1100, 950),
			engine.VerdictWarn, "(max_ratio 3)"},
		{"window", engine.Guard{Size: &engine.GuardLimit{MinRatio: 0.5, Window: 2, MinHistory: 2}}, engine.Sample{Size: 400},
			hist(500, 600, 5000, 5000), engine.VerdictPass, "median 550.0 B of the last 2 runs"},
		{"a count lost", engine.Guard{Counts: lim}, engine.Sample{Counts: map[string]int64{"rows:public.users": 20}},
			hist(1000, 1000, 1000), engine.VerdictFail, "rows:public.users 20 is 0.20× the median 100"},
		{"a table gone", engine.Guard{Counts: lim}, engine.Sample{Counts: map[string]int64{}},
			hist(1000, 1000, 1000), engine.VerdictFail, "rows:public.users 0 is 0.00×"},
		{"empty baseline", engine.Guard{Counts: lim}, engine.Sample{Counts: map[string]int64{"rows:public.users": 5}},
			hist(0, 0, 0), engine.VerdictNoHistory, "the median of the last 3 runs is 0"},
		{"duration", engine.Guard{Duration: &engine.GuardLimit{MaxRatio: 5, Window: 14, MinHistory: 3}},
			engine.Sample{Duration: time.Minute}, []engine.Sample{{Duration: time.Second}, {Duration: time.Second}, {Duration: 2 * time.Second}},
			engine.VerdictFail, "duration 1m0s is 60.00× the median 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.g.Check(tc.cur, tc.hist)
			assert.Equal(t, tc.verdict, res.Verdict, res.Summary)
			assert.Contains(t, res.Summary, tc.summary)
		})
	}
}

// guardDumpParams: a fake backup that records one artifact with a row count.
type guardDumpParams struct {
	Rows int `yaml:"rows"`
}

type guardPruneParams struct{}

func guardRegistry(pruned *int) *engine.Registry {
	dump := engine.Def[guardDumpParams]{
		Name: "fakedump", Summary: "records an artifact", Kind: engine.KindBackup,
		Outputs: []engine.Output{{Name: "rows"}},
		Run: func(ctx context.Context, env *engine.Env, p *guardDumpParams) (engine.Outputs, error) {
			env.RecordArtifact(&engine.ArtifactRecord{Path: "/backups/" + env.RunID, Size: int64(p.Rows) * 100,
				Counts: map[string]int64{"rows:public.users": int64(p.Rows)}})
			return engine.Outputs{"rows": p.Rows}, nil
		},
	}
	prune := engine.Def[guardPruneParams]{
		Name: "fakeprune", Summary: "deletes old backups", Kind: engine.KindDestructive,
		Run: func(ctx context.Context, env *engine.Env, p *guardPruneParams) (engine.Outputs, error) {
			*pruned++
			return nil, nil
		},
	}
	return engine.NewRegistry(dump.Type(), prune.Type())
}

// guardPlan has a count guard on the dump and a prune after it.
const guardPlan = `version: 1
name: guarded
defaults:
  guard: {counts: {min_ratio: 0.8, max_ratio: 3}, size: {min_ratio: 0.5}, action: ACTION}
steps:
  - id: dump
    type: fakedump
    with:
      rows: ${{ vars.rows }}
  - id: prune
    type: fakeprune
    when: always()
vars:
  rows: 0
`

func TestGuardTripsTheInterlockAgainstTheRunStore(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "runs.db"))
	require.NoError(t, err)
	defer st.Close()
	pruned := 0
	reg := guardRegistry(&pruned)
	apply := func(action string, rows string) (engine.Result, *bytes.Buffer, []engine.AttemptRecord) {
		t.Helper()
		p, err := engine.Load("g.yaml", []byte(strings.Replace(guardPlan, "ACTION", action, 1)), reg)
		require.NoError(t, err)
		scope, err := engine.Prepare(p, engine.Invocation{Vars: map[string]string{"rows": rows}})
		require.NoError(t, err)
		var stderr bytes.Buffer
		res := engine.Apply(context.Background(), p, scope, engine.Options{Recorder: st, StateDir: t.TempDir(), Stderr: &stderr})
		_, atts, err := st.Run(context.Background(), res.RunID)
		require.NoError(t, err)
		return res, &stderr, atts
	}
	dumpOf := func(atts []engine.AttemptRecord) engine.AttemptRecord {
		for _, a := range atts {
			if a.StepID == "dump" {
				return a
			}
		}
		t.Fatal("no dump attempt")
		return engine.AttemptRecord{}
	}

	// The first runs pass without a verdict, and say so.
	for i, rows := range []string{"1000", "1040", "980"} {
		res, stderr, atts := apply("fail", rows)
		require.Equal(t, engine.ExitOK, res.ExitCode, stderr.String())
		d := dumpOf(atts)
		assert.Equal(t, engine.VerdictNoHistory, d.Outputs["guard"], "run %d", i+1)
		assert.Contains(t, d.Reason, "not checked yet")
		assert.Contains(t, stderr.String(), "guard passed without a verdict")
	}
	assert.Equal(t, 3, pruned)

	// Normal day-to-day variation passes.
	res, stderr, atts := apply("fail", "1100")
	require.Equal(t, engine.ExitOK, res.ExitCode, stderr.String())
	assert.Equal(t, engine.VerdictPass, dumpOf(atts).Outputs["guard"])
	assert.Contains(t, dumpOf(atts).Reason, "rows:public.users 1100 is 1.10× the median 1000 of the last 3 runs")
	assert.Equal(t, 4, pruned)

	// The source lost 80 % of its rows: the dump fails, prune is held back.
	res, stderr, atts = apply("fail", "210")
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	d := dumpOf(atts)
	assert.Equal(t, engine.StatusFailed, d.Status)
	assert.Equal(t, engine.VerdictFail, d.Outputs["guard"])
	assert.Contains(t, d.Error, "rows:public.users 210 is 0.21× the median 1020 of the last 4 runs (min_ratio 0.8)")
	assert.Contains(t, d.Error, "size 20.5 KiB is 0.21×")
	assert.Len(t, d.Records, 1, "the failed attempt still lists what it wrote")
	assert.Equal(t, 4, pruned, "prune did not run")
	last := atts[len(atts)-1]
	assert.Equal(t, "prune", last.StepID)
	assert.Equal(t, engine.StatusSkipped, last.Status)
	assert.Contains(t, last.Reason, "safety interlock")
	m, err := st.Manifest(context.Background(), res.RunID)
	require.NoError(t, err)
	assert.Empty(t, m.Artifacts, "a tripped guard's artifact is not in the manifest")

	// With action: warn the run goes on, but prune is still held back.
	res, stderr, atts = apply("warn", "200")
	assert.Equal(t, engine.ExitOK, res.ExitCode, stderr.String())
	assert.Equal(t, engine.VerdictWarn, dumpOf(atts).Outputs["guard"])
	assert.Contains(t, stderr.String(), "destructive steps of this run are held back")
	last = atts[len(atts)-1]
	assert.Equal(t, engine.StatusSkipped, last.Status)
	assert.Contains(t, last.Reason, `the guard of step "dump" tripped`)
	assert.Equal(t, 4, pruned)

	// The failed run is not history: the next normal run compares with
	// the good ones (and the warned one, which succeeded) and passes.
	res, stderr, atts = apply("fail", "1000")
	require.Equal(t, engine.ExitOK, res.ExitCode, stderr.String())
	assert.Equal(t, engine.VerdictPass, dumpOf(atts).Outputs["guard"])
	assert.Equal(t, 5, pruned)

	// Expressions read the same history: successful runs 1000, 1040, 980,
	// 1100, 200 (warned), 1000, newest first.
	p, err := engine.Load("h.yaml", []byte(`version: 1
name: guarded
steps:
  - id: report
    type: fakedump
    with: {rows: 1}
    assert:
      - history.count("dump", 14) == 6
      - history.count("dump", 2) == 2
      - history.median("dump", "rows:public.users", 14) == 1000
      - history.median("dump", "rows:public.users", 3) == 1000
      - history.last("dump", "rows:public.users") == 1000
      - history.last("dump", "size") == 100000
      - history.median("nosuch", "size", 14) == 0
      - history.median("dump", "rows:public.users", 2) > 2000
`), reg)
	require.NoError(t, err)
	scope, err := engine.Prepare(p, engine.Invocation{})
	require.NoError(t, err)
	var out bytes.Buffer
	res = engine.Apply(context.Background(), p, scope, engine.Options{Recorder: st, StateDir: t.TempDir(), Stderr: &out})
	require.Equal(t, engine.ExitFailed, res.ExitCode)
	// Only the last assertion is false (the median of 1000 and 200 is 600).
	assert.Regexp(t, `step report: assert failed: history.median\("dump", "rows:public.users", 2\) > 2000$`, res.Err.Error())
}

func TestGuardDeclaration(t *testing.T) {
	reg := guardRegistry(new(int))
	for _, tc := range []struct{ name, guard, want string }{
		{"no bound", "guard: {size: {window: 3}}", "step \"dump\": guard.size: give min_ratio and/or max_ratio"},
		{"inverted", "guard: {counts: {min_ratio: 2, max_ratio: 1}}", "min_ratio 2 is above max_ratio 1"},
		{"nothing", "guard: {action: warn}", "guard: give size, counts and/or duration (or action: off)"},
		{"typo", "guard: {size: {min_ration: 0.5}}", `unknown key "min_ration" (did you mean "min_ratio"?)`},
		{"not a number", "guard: {size: {min_ratio: half}}", "guard.size.min_ratio: expected a number"},
		{"negative", "guard: {size: {min_ratio: -1}}", "must be at least 0"},
		{"action", "guard: {size: {min_ratio: 1}, action: panic}", "must be one of fail, warn, off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := engine.Load("g.yaml", []byte("version: 1\nname: g\nsteps:\n  - id: dump\n    type: fakedump\n    "+tc.guard+"\n"), reg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// A step's keys replace the defaults' (action: off turns it off), and
	// outputs.guard is known where a guard may run.
	p, err := engine.Load("g.yaml", []byte(`version: 1
name: g
defaults:
  guard: {size: {min_ratio: 0.5}, counts: {min_ratio: 0.9, window: 7}}
steps:
  - id: dump
    type: fakedump
    guard: {size: {max_ratio: 2}, action: warn}
  - id: other
    type: fakedump
    guard: {action: off}
  - id: prune
    type: fakeprune
    when: steps.dump.outputs.guard == "pass"
`), reg)
	require.NoError(t, err)
	g := p.Steps[0].Guard
	assert.Equal(t, engine.GuardWarn, g.Action)
	assert.Equal(t, &engine.GuardLimit{MaxRatio: 2, Window: 14, MinHistory: 3}, g.Size)
	assert.Equal(t, &engine.GuardLimit{MinRatio: 0.9, Window: 7, MinHistory: 3}, g.Counts)
	assert.Equal(t, engine.GuardOff, p.Steps[1].Guard.Action)

	_, err = engine.Load("g.yaml", []byte(`version: 1
name: g
steps:
  - id: dump
    type: fakedump
    guard: {action: off}
  - id: x
    type: fakeprune
    when: steps.dump.outputs.guard == "pass"
`), reg)
	require.Error(t, err, "a step no guard checks has no guard output")
}
