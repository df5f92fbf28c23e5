package plans_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps"
)

// TestKaleemDailyBackupStepsOutliveAFailure: each component of the daily
// job is backed up whatever failed before it (a failed disk check must not
// skip the database dump while the other components still run), so every
// backup step of the plan runs unless the run was interrupted.
func TestKaleemDailyBackupStepsOutliveAFailure(t *testing.T) {
	p, err := engine.LoadFile("kaleem-daily.yaml", steps.All())
	require.NoError(t, err)
	var backups []string
	for _, s := range p.Steps {
		if s.Type.Kind != engine.KindBackup {
			continue
		}
		backups = append(backups, s.ID)
		assert.Contains(t, s.When, "!cancelled()", "backup step %s must run after another component failed", s.ID)
	}
	for _, id := range []string{"mongo", "qdrant-collections", "configs", "n8n"} {
		assert.Contains(t, backups, id)
	}
}

// TestChitlaqFullEveryUploadChecked: every prefix chitlaq-full copies to S3
// is checked after the upload and expired by a retention sync afterwards.
func TestChitlaqFullEveryUploadChecked(t *testing.T) {
	p, err := engine.LoadFile("chitlaq-full.yaml", steps.All())
	require.NoError(t, err)
	kinds := map[string][]string{} // dest → commands, in order
	for _, s := range p.Steps {
		if s.TypeName != "rclone" {
			continue
		}
		dest := param(s.With, "dest")
		kinds[dest] = append(kinds[dest], param(s.With, "command"))
	}
	require.Len(t, kinds, 4, "database/full, config, uploads, manifest: %v", kinds)
	for dest, cmds := range kinds {
		assert.Equal(t, "copy,check,sync", strings.Join(cmds, ","), "off-site %s", dest)
	}
}

// param is the raw text of a step's with: key.
func param(with *yaml.Node, key string) string {
	for i := 0; with != nil && i+1 < len(with.Content); i += 2 {
		if with.Content[i].Value == key {
			return with.Content[i+1].Value
		}
	}
	return ""
}
