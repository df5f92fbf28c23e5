package restic

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/steps/internal/lines"
)

// Lines captured from Debian's restic 0.14.0 (backup --json, forget --json --prune).
const (
	restic014BackupOut = `{"message_type":"status","percent_done":0,"total_files":1,"total_bytes":6}
{"message_type":"status","percent_done":0.5,"total_files":2,"files_done":1,"total_bytes":12,"bytes_done":6}
{"message_type":"error","error":{"Op":"open","Path":"/data/locked","Err":13},"during":"archival","item":"/data/locked"}
{"message_type":"summary","files_new":2,"files_changed":0,"files_unmodified":0,"dirs_new":2,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":3,"data_added":1413,"total_files_processed":2,"total_bytes_processed":12,"total_duration":0.208623235,"snapshot_id":"3507bde2"}
`
	restic014ForgetOut = `[{"tags":null,"host":"","paths":null,"keep":[{"time":"2026-11-21T23:45:38.425409498Z","tree":"c48c","paths":["/db.dump"],"hostname":"vm","username":"root","id":"f86fd92618e28275d8aee10cef3d9fcdba336bf3a40088c1225a3e316eb03c4f","short_id":"f86fd926"}],"remove":[{"time":"2026-11-21T23:45:37.723527747Z","tree":"2070","paths":["/tmp/rx/data"],"hostname":"vm","username":"root","id":"85a0e20fd7bdeeb5d7340cd502562931b463742e47d55e1f0ed9377e2f886191","short_id":"85a0e20f"},{"time":"2026-11-21T23:45:37.026999049Z","tree":"6a18","paths":["/tmp/rx/data"],"hostname":"h1","username":"root","tags":["t1"],"id":"3507bde273e40feb2026ef686944ee46ba3785d648ab7f47db70629644625e5c","short_id":"3507bde2"}],"reasons":[]}]
loading indexes...
to delete:             8 blobs / 1.583 KiB
done
`
)

func TestBackupParser(t *testing.T) {
	var progress []int64
	p := &BackupParser{Progress: func(n int64) { progress = append(progress, n) }}
	lw := lines.New(p.Line)
	_, _ = lw.Write([]byte(restic014BackupOut[:100])) // split mid-line
	_, _ = lw.Write([]byte(restic014BackupOut[100:]))
	lw.Flush()
	require.NotNil(t, p.Summary)
	assert.Equal(t, "3507bde2", p.Summary.SnapshotID)
	assert.Equal(t, int64(1413), p.Summary.DataAdded)
	assert.Equal(t, int64(12), p.Summary.TotalBytesProcessed)
	assert.Equal(t, int64(2), p.Summary.FilesNew)
	assert.Equal(t, map[string]int64{"files": 2, "dirs": 2, "bytes": 12}, p.Summary.Counts())
	assert.Equal(t, []int64{6}, progress)
	assert.Len(t, p.Errors, 1)
	assert.True(t, strings.HasPrefix(p.Errors[0], "/data/locked"))

	// 0.18 reports the full id and exit errors as JSON.
	p2 := &BackupParser{}
	p2.Line([]byte(`{"message_type":"summary","files_new":1,"data_added":5,"snapshot_id":"` + strings.Repeat("ab", 32) + `"}`))
	p2.Line([]byte(`{"message_type":"exit_error","code":1,"message":"Fatal: boom"}`))
	assert.Len(t, p2.Summary.SnapshotID, 64)
	assert.Equal(t, []string{"Fatal: boom"}, p2.Errors)
}

func TestParseForgetIgnoresPruneText(t *testing.T) {
	removed, kept, err := ParseForget([]byte(restic014ForgetOut))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"85a0e20fd7bdeeb5d7340cd502562931b463742e47d55e1f0ed9377e2f886191",
		"3507bde273e40feb2026ef686944ee46ba3785d648ab7f47db70629644625e5c",
	}, removed)
	assert.Equal(t, []string{"f86fd92618e28275d8aee10cef3d9fcdba336bf3a40088c1225a3e316eb03c4f"}, kept)
	_, _, err = ParseForget([]byte("Fatal: something\n"))
	assert.Error(t, err)
	removed, kept, err = ParseForget(nil) // an empty repository
	require.NoError(t, err)
	assert.Empty(t, removed)
	assert.Empty(t, kept)
}

func TestParseInitID(t *testing.T) {
	assert.Equal(t, "08c8ec4c18", ParseInitID("created restic repository 08c8ec4c18 at /tmp/rx/repo\n\nPlease note..."))
	assert.Equal(t, "a1b2", ParseInitID(`{"message_type":"initialized","id":"a1b2","repository":"/r"}`))
	assert.Equal(t, "", ParseInitID("nothing"))
}

func TestNewestAndLocation(t *testing.T) {
	snaps := []Snapshot{{ID: "b", Time: "2026-11-21T23:45:38Z"}, {ID: "c", Time: "2026-11-22T00:00:00.5Z"}, {ID: "a", Time: "2026-11-20T00:00:00Z"}}
	assert.Equal(t, "c", Newest(snaps).ID)
	assert.Equal(t, "rest:https://u:***@h/repo", Location("rest:https://u:Pw-123@h/repo"))
	assert.Equal(t, "/backups/restic", Location("/backups/restic"))
}
