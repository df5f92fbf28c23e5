package main

import (
	"context"
	"testing"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A bad setting names the variable the operator set, not a Go field.
func TestSettingsErrorNamesTheVariable(t *testing.T) {
	_, err := loadSettings(context.Background(), envconfig.MapLookuper(map[string]string{"PLANRUN_HISTORY_KEEP_DAYS": "abc"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `PLANRUN_HISTORY_KEEP_DAYS: `)
	assert.Contains(t, err.Error(), `"abc"`)
	assert.NotContains(t, err.Error(), "HistoryKeepDays")

	s, err := loadSettings(context.Background(), envconfig.MapLookuper(map[string]string{"PLANRUN_STATE_DIR": "/srv/planrun"}))
	require.NoError(t, err)
	assert.Equal(t, "/srv/planrun/runs.db", s.DB)
	assert.Equal(t, 400, s.HistoryKeepDays)
}
