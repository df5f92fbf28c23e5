package engine_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
)

// pfParams: a step whose params check something before the run.
type pfParams struct {
	Fail string `yaml:"fail"`
}

func (p *pfParams) Preflight(ctx context.Context, env *engine.PreflightEnv) []engine.PreflightCheck {
	if p.Fail != "" {
		return []engine.PreflightCheck{{Status: engine.CheckFail, Check: "service", Target: "db:5432", Reason: p.Fail}}
	}
	return []engine.PreflightCheck{{Status: engine.CheckOK, Check: "service", Target: "db:5432", Reason: "answers"}}
}

func TestApplyPreflightFailsTheRunBeforeAnyStep(t *testing.T) {
	ran := map[string]int{}
	step := engine.Def[pfParams]{Name: "svc", Summary: "checked first", Kind: engine.KindBackup,
		Run: func(ctx context.Context, env *engine.Env, p *pfParams) (engine.Outputs, error) {
			ran[env.StepID]++
			return nil, nil
		}}
	reg := engine.NewRegistry(step.Type())
	plan := func(fail string) string {
		return `version: 1
name: pf
preflight: true
steps:
  - id: dump
    type: svc
    with: {fail: "` + fail + `"}
  - id: report
    type: svc
    when: failure()
`
	}
	apply := func(src string) (engine.Result, *memRecorder, string) {
		p, err := engine.Load("pf.yaml", []byte(src), reg)
		require.NoError(t, err)
		scope, err := engine.Prepare(p, engine.Invocation{})
		require.NoError(t, err)
		rec := &memRecorder{}
		var log bytes.Buffer
		res := engine.Apply(context.Background(), p, scope, engine.Options{Recorder: rec, StateDir: t.TempDir(), Stderr: &log})
		return res, rec, log.String()
	}
	res, rec, log := apply(plan("connection refused"))
	assert.Equal(t, engine.ExitFailed, res.ExitCode)
	assert.Contains(t, res.Err.Error(), "preflight: fail  service (step dump) db:5432: connection refused")
	assert.Equal(t, []string{"failed"}, rec.statusOf(engine.PreflightStepID))
	assert.Equal(t, []string{"skipped"}, rec.statusOf("dump"))
	assert.Equal(t, "preflight failed", rec.attempts[1].Reason)
	assert.Equal(t, []string{"success"}, rec.statusOf("report"), "failure() steps still run")
	assert.Equal(t, 0, ran["dump"])
	assert.Contains(t, log, "level=ERROR msg=\"preflight: fail  service (step dump) db:5432: connection refused\"")

	res, rec, log = apply(plan(""))
	assert.Equal(t, engine.ExitOK, res.ExitCode, log)
	assert.Equal(t, []string{"success"}, rec.statusOf(engine.PreflightStepID))
	assert.Equal(t, 1, ran["dump"])
	assert.Contains(t, log, "preflight: ok    service (step dump) db:5432: answers")
}
