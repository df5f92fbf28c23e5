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
// is checked after the upload and expired by age afterwards.
func TestChitlaqFullEveryUploadChecked(t *testing.T) {
	p, err := engine.LoadFile("chitlaq-full.yaml", steps.All())
	require.NoError(t, err)
	kinds := map[string][]string{} // remote prefix → step types, in order
	for _, s := range p.Steps {
		if !strings.HasPrefix(s.TypeName, "rclone-") {
			continue
		}
		dest := param(s.With, "dest")
		if s.TypeName == "rclone-delete" {
			dest = param(s.With, "source")
		}
		kinds[dest] = append(kinds[dest], s.TypeName)
	}
	require.Len(t, kinds, 4, "database/full, config, uploads, manifest: %v", kinds)
	for dest, types := range kinds {
		assert.Equal(t, "rclone-copy,rclone-check,rclone-delete", strings.Join(types, ","), "off-site %s", dest)
	}
}

// TestKaleemOffsiteIsARepositoryCopy: R2 gets restic copies of the
// snapshots (which a damaged local repository cannot overwrite), never a
// file mirror of the local repository, and keeps its own retention.
func TestKaleemOffsiteIsARepositoryCopy(t *testing.T) {
	p, err := engine.LoadFile("kaleem-daily.yaml", steps.All())
	require.NoError(t, err)
	var offsite []string
	for _, s := range p.Steps {
		assert.False(t, strings.HasPrefix(s.TypeName, "rclone-"), "step %s mirrors files off-site", s.ID)
		if s.TypeName == "restic-copy" || strings.HasPrefix(param(s.With, "repository"), "rclone:") {
			offsite = append(offsite, s.TypeName)
		}
	}
	assert.Equal(t, []string{"restic-copy", "restic-forget"}, offsite)
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
