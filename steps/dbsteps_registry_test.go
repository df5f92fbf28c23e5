package steps

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
)

// Every step type of this area is registered, has the declared kind, and its
// Example decodes and validates.
func TestDBStepsRegisteredWithValidExamples(t *testing.T) {
	reg := All()
	for name, kind := range map[string]engine.Kind{
		"pg_dump": engine.KindBackup, "pg_restore": engine.KindOther,
		"mongodump": engine.KindBackup, "mongorestore": engine.KindOther,
		"qdrant-snapshot": engine.KindBackup, "qdrant-restore": engine.KindOther,
		"http-get": engine.KindBackup, "http-post": engine.KindOther,
	} {
		typ := reg.Lookup(name)
		if typ == nil {
			t.Errorf("%s not registered", name)
			continue
		}
		if typ.Kind != kind {
			t.Errorf("%s: kind %v, want %v", name, typ.Kind, kind)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(typ.Example), &doc); err != nil {
			t.Errorf("%s: example: %v", name, err)
			continue
		}
		p, probs := typ.Decode(doc.Content[0], true)
		if len(probs) > 0 {
			t.Errorf("%s: example problems: %v", name, probs)
			continue
		}
		env := dbEnv(t)
		for _, line := range typ.Preview(env, p) {
			if strings.TrimSpace(line) == "" {
				t.Errorf("%s: empty preview line", name)
			}
		}
	}
}
