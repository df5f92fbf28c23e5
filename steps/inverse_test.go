package steps

import (
	"testing"

	"github.com/planrun/planrun/engine"
)

// Every backup step type declares how it is restored, to a registered
// type, and the params it names as targets (kept out of scratch restores)
// exist in that type: a typo there would let a drill reach the original.
func TestBackupTypesDeclareInverses(t *testing.T) {
	reg := All()
	for _, name := range reg.Names() {
		typ := reg.Lookup(name)
		inv := typ.Inverse
		if inv == nil {
			// Copies of backups are restored from with the copy's own tool
			// (restic-restore from the second repository, rclone-copy back).
			if typ.Kind == engine.KindBackup && name != "restic-copy" && name != "rclone-copy" {
				t.Errorf("%s: a backup type without an inverse", name)
			}
			continue
		}
		var known []string
		for _, rt := range []string{inv.Type, inv.ScratchType} {
			if rt == "" {
				continue
			}
			r := reg.Lookup(rt)
			if r == nil {
				t.Errorf("%s: inverse type %q is not registered", name, rt)
				continue
			}
			known = append(known, r.Params.Names()...)
		}
		if len(inv.Targets) == 0 {
			t.Errorf("%s: the inverse names no target params", name)
		}
		for _, p := range inv.Targets {
			found := false
			for _, k := range known {
				found = found || k == p
			}
			if !found {
				t.Errorf("%s: target param %q is not a param of %s/%s", name, p, inv.Type, inv.ScratchType)
			}
		}
	}
}
