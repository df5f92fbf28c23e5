package steps

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
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

func TestRcloneLogParser(t *testing.T) {
	var progress []int64
	l := &rcloneLog{progress: func(n int64) { progress = append(progress, n) }}
	w := lines.New(l.line)
	_, _ = w.Write([]byte(rclone160Log))
	w.Flush()
	require.NotNil(t, l.stats)
	assert.Equal(t, int64(14), l.stats.Bytes)
	assert.Equal(t, int64(3), l.stats.Transfers)
	assert.Equal(t, int64(2), l.stats.Deletes)
	assert.True(t, l.stats.FatalError)
	assert.Equal(t, int64(2), l.skippedDeletes)
	assert.Equal(t, []string{"Got fatal error on delete: --max-delete threshold reached"}, l.errors)
	assert.Equal(t, []int64{14}, progress)
}

func TestRcloneArgs(t *testing.T) {
	p := decodeWith(t, Rclone, "command: sync\nsource: /backups\ndest: offsite:b/db1\nconfig: /etc/rclone.conf\nexclude: ['*.tmp']\nflags: [--transfers=8]")
	assert.Equal(t, []string{"sync", "--config", "/etc/rclone.conf", "--use-json-log", "--stats-one-line", "--stats", "10s",
		"--stats-log-level", "NOTICE", "--dry-run", "--exclude", "*.tmp", "--transfers=8", "/backups", "offsite:b/db1"}, p.transferArgs(true, -1))
	assert.Contains(t, p.transferArgs(false, 7), "--max-delete")
	assert.Equal(t, 50, p.MaxDeletePercent, "default guard")

	p = decodeWith(t, Rclone, "command: check\nsource: /a\ndest: r:b\none_way: true")
	assert.Equal(t, []string{"check", "--use-json-log", "--combined", "-", "--one-way", "/a", "r:b"}, p.checkArgs())
	p = decodeWith(t, Rclone, "command: lsf\nsource: r:b")
	assert.Equal(t, []string{"lsf", "--files-only", "-R", "r:b"}, p.lsfArgs())
	assert.Equal(t, []string{"size", "--json", "r:b"}, p.sizeArgs(p.Source))
}

func TestRcloneValidate(t *testing.T) {
	for with, want := range map[string]string{
		"command: sync\nsource: /a":                                                "sync needs dest",
		"command: size\nsource: /a\ndest: /b":                                      "dest does not apply to size",
		"command: sync\nsource: /a\ndest: /b\nmax_delete_percent: 101":             "max_delete_percent must be 0-100",
		"command: copy\nsource: /a\ndest: /b\none_way: true":                       "one_way applies to check",
		"command: copy\nsource: /a\ndest: ':s3,secret_access_key=abc:bucket'":      `"secret_access_key" in a connection string`,
		"command: copy\nsource: /a\ndest: /b\nflags: ['--s3-secret-access-key=x']": "would put a credential",
		"command: sync\nsource: /a\ndest: /b\nflags: ['--max-delete=100']":         "managed by the step",
		"command: move\nsource: /a":                                                "must be one of",
	} {
		_, probs := decodeWithProblems(t, Rclone, with)
		require.NotEmpty(t, probs, with)
		assert.Contains(t, probs[0].Msg, want, with)
	}
	_, probs := decodeWithProblems(t, Rclone, "command: copy\nsource: /a\ndest: ':s3,provider=Other,env_auth=true:bucket'")
	assert.Empty(t, probs, "non-secret connection-string params are fine")
}

func TestRcloneKindAndPreview(t *testing.T) {
	typ := Rclone.Type()
	for cmd, want := range map[string]engine.Kind{"sync": engine.KindDestructive, "copy": engine.KindBackup,
		"check": engine.KindOther, "lsf": engine.KindOther, "size": engine.KindOther} {
		assert.Equal(t, want, typ.KindFor(&RcloneParams{Command: cmd}), cmd)
	}
	env, _ := offsiteEnv(t, "r")
	p := decodeWith(t, Rclone, "command: sync\nsource: /backups\ndest: offsite:b")
	lines := Rclone.Preview(env, p)
	require.Len(t, lines, 3)
	assert.Contains(t, lines[0], "--dry-run")
	assert.Contains(t, lines[1], "rclone size --json offsite:b")
	assert.Contains(t, lines[2], "--max-delete <50% of dest files>")
}
