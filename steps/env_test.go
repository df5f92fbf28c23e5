package steps

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

// testStepEnv is the one step Env of the step tests, as the runner builds
// it: the process environment (plus extraEnv), a redactor that knows the
// environment's secrets, a private temp dir removed after the test, and
// the step's log redacted into a buffer for assertions and into the test
// log for failures.
func testStepEnv(t testing.TB, extraEnv ...string) (*engine.Env, *testenv.SyncBuffer) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	secrets := engine.NewRedactor()
	environ := append(os.Environ(), extraEnv...)
	secrets.AddEnv(environ)
	env := &engine.Env{
		RunID: "test", PlanName: "test", StepID: "s1", Environ: environ, Secrets: secrets, Stats: &engine.Stats{},
		Log: slog.New(slog.NewTextHandler(secrets.Writer(io.MultiWriter(logs, testLogWriter{t})), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	env.Progress = engine.NewProgress(nil, env.Log) // as the runner gives every attempt
	t.Cleanup(env.Cleanup)
	return env, logs
}

// offsiteEnv is testStepEnv with a given run id (Healthchecks rid tests).
func offsiteEnv(t *testing.T, runID string) (*engine.Env, *testenv.SyncBuffer) {
	env, logs := testStepEnv(t)
	env.RunID = runID
	return env, logs
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// decodeWith decodes a `with:` YAML block through the type's spec (so
// defaults and Validate apply, as in a plan) and fails the test on problems.
func decodeWith[P any](t *testing.T, def engine.Def[P], with string) *P {
	t.Helper()
	p, probs := decodeWithProblems(t, def, with)
	if len(probs) > 0 {
		t.Fatalf("decode %s params: %v", def.Name, probs)
	}
	return p
}

func decodeWithProblems[P any](t *testing.T, def engine.Def[P], with string) (*P, []engine.Problem) {
	t.Helper()
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(with), &node); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	var m *yaml.Node
	if len(node.Content) > 0 {
		m = node.Content[0]
	}
	p, probs := def.Type().Decode(m, false)
	return p.(*P), probs
}
