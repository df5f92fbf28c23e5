package steps

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
)

func TestOffsiteExamplesDecode(t *testing.T) {
	for _, typ := range []*engine.Type{
		ResticInit.Type(), ResticBackup.Type(), ResticForget.Type(), ResticCheck.Type(), ResticSnapshots.Type(),
		ResticRestore.Type(), ResticDump.Type(), ResticUnlock.Type(), ResticCopy.Type(),
		RcloneSync.Type(), RcloneCopy.Type(), RcloneCheck.Type(), RcloneLsf.Type(), RcloneSize.Type(), RcloneDelete.Type(),
		HealthcheckPing.Type(),
	} {
		var node yaml.Node
		require.NoError(t, yaml.Unmarshal([]byte(typ.Example), &node), typ.Name)
		_, probs := typ.Decode(node.Content[0], true)
		assert.Empty(t, probs, typ.Name)
		for _, o := range typ.Outputs {
			assert.NotEmpty(t, o.Doc, typ.Name+"."+o.Name)
		}
		assert.NotNil(t, All().Lookup(typ.Name), "registered in steps.All")
	}
}
