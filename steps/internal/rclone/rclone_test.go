package rclone

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/steps/internal/lines"
)

// Lines captured from Debian's rclone 1.60 (sync --dry-run, then a sync
// stopped by --max-delete).
const rclone160Log = `{"level":"warning","msg":"Config file \"/root/.config/rclone/rclone.conf\" not found - using defaults","source":"config/config.go:362","time":"2026-11-21T23:46:08.70+00:00"}
{"level":"warning","msg":"Skipped delete as --dry-run is set (size 3)","object":"extra2","objectType":"*s3.Object","size":3,"skipped":"delete","source":"operations/operations.go:2404","time":"2026-11-21T23:46:08.707054+00:00"}
{"level":"warning","msg":"Skipped delete as --dry-run is set (size 3)","object":"extra1","objectType":"*s3.Object","size":3,"skipped":"delete","source":"operations/operations.go:2404","time":"2026-11-21T23:46:08.707072+00:00"}
{"level":"error","msg":"Got fatal error on delete: --max-delete threshold reached","source":"operations/operations.go:754","time":"2026-11-21T23:46:08.755138+00:00"}
{"level":"warning","msg":"          14 B / 14 B, 100%, 0 B/s, ETA -\n","source":"accounting/stats.go:482","stats":{"bytes":14,"checks":4,"deletedDirs":0,"deletes":2,"elapsedTime":0.04,"errors":2,"eta":null,"fatalError":true,"lastError":"failed to delete 1 files","renames":0,"retryError":false,"speed":0,"totalBytes":14,"totalChecks":4,"totalTransfers":3,"transferTime":0,"transfers":3},"time":"2026-11-21T23:46:08.70716+00:00"}
2026/11/21 23:46:08 Failed to sync with 2 errors: last error was: failed to delete 1 files
`

func TestLogParser(t *testing.T) {
	var progress []int64
	l := &Log{Progress: func(n int64) { progress = append(progress, n) }}
	w := lines.New(l.Line)
	_, _ = w.Write([]byte(rclone160Log))
	w.Flush()
	require.NotNil(t, l.Stats)
	assert.Equal(t, int64(14), l.Stats.Bytes)
	assert.Equal(t, int64(3), l.Stats.Transfers)
	assert.Equal(t, int64(2), l.Stats.Deletes)
	assert.True(t, l.Stats.FatalError)
	assert.Equal(t, int64(2), l.SkippedDeletes)
	assert.Equal(t, []string{"Got fatal error on delete: --max-delete threshold reached"}, l.Errors)
	assert.Equal(t, []int64{14}, progress)
}
