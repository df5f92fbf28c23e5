package steps

import (
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
)

// recorded returns the artifact records a step reported through env (what
// the runner would put in the manifest).
func recorded(t testing.TB, env *engine.Env) []*engine.ArtifactRecord {
	t.Helper()
	return env.Artifacts()
}

// inverseDecode builds the restore step an Inverse derives for a record and
// target and decodes it through the restore type's own Decode (defaults,
// enums, Validate), as the engine does after merging overrides. It returns
// the type name and the decoded params.
func inverseDecode(t testing.TB, backup *engine.Type, a engine.ArtifactRecord, tgt engine.RestoreTarget) (string, any) {
	t.Helper()
	inv := backup.Inverse
	if inv == nil {
		t.Fatalf("%s declares no inverse", backup.Name)
	}
	with, err := inv.With(a, tgt)
	if err != nil {
		t.Fatalf("%s inverse: %v", backup.Name, err)
	}
	name := inv.Type
	if tgt.Scratch && inv.ScratchType != "" {
		name = inv.ScratchType
	}
	typ := All().Lookup(name)
	if typ == nil {
		t.Fatalf("inverse type %s is not registered", name)
	}
	b, err := yaml.Marshal(with)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	p, probs := typ.Decode(doc.Content[0], false)
	if len(probs) > 0 {
		t.Fatalf("%s params %s do not decode: %v", name, b, probs)
	}
	return name, p
}
