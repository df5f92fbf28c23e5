package steps

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
)

func decodeProbs(t *testing.T, typ, with string) (any, []engine.Problem) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(with), &doc); err != nil {
		t.Fatal(err)
	}
	return All().Lookup(typ).Decode(doc.Content[0], false)
}

// The file steps' declarations: examples decode, and Preview describes
// without touching anything.
func TestFileStepDeclarations(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"tar", "untar", "encrypt", "decrypt", "compress", "decompress", "verify", "prune", "disk-check"} {
		st := All().Lookup(name)
		if st == nil {
			t.Fatalf("%s not registered", name)
		}
		if st.Summary == "" || st.Example == "" {
			t.Errorf("%s: summary or example missing", name)
		}
		ex := strings.ReplaceAll(st.Example, "/backups", dir+"/backups")
		ex = strings.ReplaceAll(ex, "/tmp/restore", dir+"/restore")
		p, probs := decodeProbs(t, name, ex)
		if len(probs) > 0 {
			t.Errorf("%s example: %v", name, probs)
			continue
		}
		for _, line := range st.Preview(nil, p) {
			if !strings.HasPrefix(line, "read: ") && !strings.HasPrefix(line, "write: ") && !strings.HasPrefix(line, "delete: ") && !strings.HasPrefix(line, "keep: ") {
				t.Errorf("%s preview line %q", name, line)
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("%s preview created %v", name, entries)
		}
	}
	if All().Lookup("prune").Kind != engine.KindDestructive || All().Lookup("tar").Kind != engine.KindBackup {
		t.Error("kinds")
	}
	_ = filepath.Join
}
