package steps

import (
	"bytes"
	"log/slog"
	"os"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
)

// syncBuffer is a log sink safe for the concurrent writes of a step.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// offsiteEnv is a step Env for the restic/rclone/healthcheck tests: the
// process environment, a private temp dir, and a log captured (through
// the redactor, as the runner does) for assertions.
func offsiteEnv(t *testing.T, runID string) (*engine.Env, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	secrets := engine.NewRedactor()
	environ := os.Environ()
	secrets.AddEnv(environ)
	env := &engine.Env{
		RunID: runID, PlanName: "test", StepID: "s1",
		Environ: environ,
		Log:     slog.New(slog.NewTextHandler(secrets.Writer(logs), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Secrets: secrets,
		Stats:   &engine.Stats{},
	}
	t.Cleanup(env.Cleanup)
	return env, logs
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
