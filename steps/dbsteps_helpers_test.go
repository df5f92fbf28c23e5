package steps

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"
	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// dbEnv is testStepEnv for the database steps.
func dbEnv(t testing.TB, extraEnv ...string) *engine.Env {
	env, _ := testStepEnv(t, extraEnv...)
	return env
}

// dbDecode decodes a `with:` YAML block for a step type the way the engine
// does (defaults, validation), failing the test on problems.
func dbDecode[P any](t testing.TB, def engine.Def[P], with string) *P {
	t.Helper()
	p, probs := dbTryDecode(def, with)
	if len(probs) > 0 {
		t.Fatalf("%s: decode %q: %v", def.Name, with, probs)
	}
	return p
}

func dbTryDecode[P any](def engine.Def[P], with string) (*P, []engine.Problem) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(with), &doc); err != nil {
		return nil, []engine.Problem{{Msg: err.Error()}}
	}
	node := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		node = doc.Content[0]
	}
	p, probs := def.Type().Decode(node, false)
	return p.(*P), probs
}

// dbRun decodes and runs a step, registering its secret params first.
func dbRun[P any](t testing.TB, def engine.Def[P], env *engine.Env, with string) (engine.Outputs, error) {
	t.Helper()
	p := dbDecode(t, def, with)
	env.Secrets.Add(def.Type().SecretValues(p)...)
	return def.Run(context.Background(), env, p)
}

// dbAgeKeys writes a fresh age identity and returns (identity file, recipient).
func dbAgeKeys(t testing.TB) (string, string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id.key")
	if err := os.WriteFile(path, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, id.Recipient().String()
}

// dbReadArtifact returns an artifact's plaintext.
func dbReadArtifact(t testing.TB, path, identity string) []byte {
	t.Helper()
	r, err := artifact.Open(path, artifact.ReadOptions{IdentityFile: identity})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

// dbNoArtifact asserts that nothing (not even a temp file) is left in dir.
func dbNoArtifact(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left behind in %s: %s", dir, e.Name())
	}
}

// jsonRound normalises a value through JSON (numbers become float64).
func jsonRound(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// containerCases are the container/compose validation cases every
// database step shares: base (its own required params) plus a bad target,
// mapped to the problem it must report.
func containerCases(base string, more map[string]string) map[string]string {
	cases := map[string]string{
		base + "container: {name: c}\ncompose: {project_dir: /p, service: s}": "not both",
		base + "container: {name: c, engine: lxc}":                            "must be one of",
		base + "container: {engine: docker}":                                  "name",
		base + "compose: {service: s}":                                        "project_dir",
	}
	for k, v := range more {
		cases[k] = v
	}
	return cases
}
