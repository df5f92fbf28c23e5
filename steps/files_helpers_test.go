package steps

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

const keys = "../testdata/keys"

func stepEnv(t *testing.T) (*engine.Env, *testenv.SyncBuffer) { return testStepEnv(t) }

// decode builds params the way a plan does: YAML `with:` through the registry.
func decode(t *testing.T, typ, with string) (*engine.Type, any) {
	t.Helper()
	st := All().Lookup(typ)
	if st == nil {
		t.Fatalf("step type %q not registered", typ)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(with), &doc); err != nil {
		t.Fatal(err)
	}
	p, probs := st.Decode(doc.Content[0], false)
	if len(probs) > 0 {
		t.Fatalf("%s params: %v", typ, probs)
	}
	return st, p
}

func runStep(t *testing.T, ctx context.Context, env *engine.Env, typ, with string) (engine.Outputs, error) {
	t.Helper()
	st, p := decode(t, typ, with)
	return st.Run(ctx, env, p)
}

func mustRun(t *testing.T, typ, with string) engine.Outputs {
	t.Helper()
	env, log := stepEnv(t)
	out, err := runStep(t, context.Background(), env, typ, with)
	if err != nil {
		t.Fatalf("%s: %v\n%s", typ, err, log.String())
	}
	return out
}

// shell runs a pipeline with sh -c (test only: fixed strings and temp paths).
func shell(t *testing.T, script string, tools ...string) string {
	t.Helper()
	for _, tool := range tools {
		testenv.RequireTool(t, tool)
	}
	out, err := exec.Command("sh", "-ec", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// tree makes a small tree with text, a random file, a symlink, a hard
// link and an empty directory.
func tree(t *testing.T, randomBytes int) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "data")
	for _, d := range []string{"etc/app", "empty/dir", "var/cache"} {
		os.MkdirAll(filepath.Join(root, d), 0o750)
	}
	os.WriteFile(filepath.Join(root, "etc/app/app.conf"), []byte(strings.Repeat("key = value\n", 5000)), 0o640)
	os.WriteFile(filepath.Join(root, "var/cache/tmp.bin"), []byte("cache"), 0o600)
	rnd := make([]byte, randomBytes)
	rand.Read(rnd)
	os.WriteFile(filepath.Join(root, "etc/blob.bin"), rnd, 0o600)
	os.Symlink("app/app.conf", filepath.Join(root, "etc/link.conf"))
	os.Link(filepath.Join(root, "etc/app/app.conf"), filepath.Join(root, "etc/hard.conf"))
	return root
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

func pubKey(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(keys, "demo.agepub"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
