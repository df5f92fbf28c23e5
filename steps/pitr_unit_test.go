package steps

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/steps/walarchive"
)

func pitrBackups() []walarchive.BaseBackup {
	at := func(s string) time.Time { t, _ := time.Parse(time.RFC3339, s); return t }
	return []walarchive.BaseBackup{
		{Label: "20261201T010000Z", Timeline: 1, StartLSN: "0/2000028", StopLSN: "0/2000100", StopTime: at("2026-12-01T01:00:05Z")},
		{Label: "20261202T010000Z", Timeline: 1, StartLSN: "0/9000028", StopLSN: "0/9000100", StopTime: at("2026-12-02T01:00:05Z")},
		{Label: "20261203T010000Z", Timeline: 2, StartLSN: "0/F000028", StopLSN: "0/F000100", StopTime: at("2026-12-03T01:00:05Z")},
	}
}

func TestChooseBackup(t *testing.T) {
	bs := pitrBackups()
	tm := func(s string) recoveryTarget {
		v, _ := parseTargetTime(s)
		return recoveryTarget{kind: "time", time: v}
	}
	lsn := func(s string) recoveryTarget {
		v, _ := walarchive.ParseLSN(s)
		return recoveryTarget{kind: "lsn", lsn: v}
	}
	for _, tc := range []struct {
		name   string
		target recoveryTarget
		label  string
		want   string
		err    string
	}{
		{"time between", tm("2026-12-02T12:00:00Z"), "", "20261202T010000Z", ""},
		{"time at a stop time", tm("2026-12-02T01:00:05Z"), "", "20261202T010000Z", ""},
		{"time just before a stop time", tm("2026-12-02 01:00:04.999999+00"), "", "20261201T010000Z", ""},
		{"time after all", tm("2027-01-01T00:00:00+02:00"), "", "20261203T010000Z", ""},
		{"time before the oldest", tm("2026-12-01T01:00:04Z"), "", "", "target time 2026-12-01T01:00:04Z is before the oldest base backup's stop time 2026-12-01T01:00:05Z (backup 20261201T010000Z)"},
		{"lsn", lsn("0/A000000"), "", "20261202T010000Z", ""},
		{"lsn at a stop", lsn("0/9000100"), "", "20261202T010000Z", ""},
		{"lsn before the oldest", lsn("0/2000000"), "", "", "target LSN 0/2000000 is before the oldest base backup's stop LSN 0/2000100"},
		{"name: newest", recoveryTarget{kind: "name", name: "x"}, "", "20261203T010000Z", ""},
		{"latest: newest", recoveryTarget{kind: "latest"}, "", "20261203T010000Z", ""},
		{"immediate with a label", recoveryTarget{kind: "immediate"}, "20261201T010000Z", "20261201T010000Z", ""},
		{"label after the time", tm("2026-12-02T12:00:00Z"), "20261203T010000Z", "", "backup: backup 20261203T010000Z ended at 2026-12-03T01:00:05Z, after the target time"},
		{"unknown label", recoveryTarget{kind: "latest"}, "nope", "", `backup: no complete base backup "nope" in the archive (it has 20261201T010000Z, 20261202T010000Z, 20261203T010000Z)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := chooseBackup(bs, tc.target, tc.label)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, b.Label)
		})
	}
	_, err := chooseBackup(nil, recoveryTarget{kind: "latest"}, "")
	assert.ErrorContains(t, err, "no complete base backup")
}

func TestCheckTimeline(t *testing.T) {
	lsn := func(s string) walarchive.LSN { v, err := walarchive.ParseLSN(s); require.NoError(t, err); return v }
	// Timeline 2 left 1 at 0/5000000; 3 left 2 at 0/9000080 (during backup 2's run
	// on timeline 1? no: backup 2 is on timeline 1 after 2 branched).
	hist := map[uint32][]walarchive.HistoryEntry{
		2: {{TLI: 1, Switch: lsn("0/5000000")}},
		3: {{TLI: 1, Switch: lsn("0/5000000")}, {TLI: 2, Switch: lsn("0/C000000")}},
		4: {{TLI: 1, Switch: lsn("0/9000080")}},
	}
	history := func(tli uint32) ([]walarchive.HistoryEntry, bool, error) {
		h, ok := hist[tli]
		return h, ok, nil
	}
	bs := pitrBackups()
	for _, tc := range []struct {
		name   string
		backup walarchive.BaseBackup
		want   string
		tli    uint32
		err    string
	}{
		{"current", bs[1], "current", 1, ""},
		{"same timeline", bs[0], "1", 1, ""},
		{"child after the backup", bs[0], "2", 2, ""},
		{"grandchild", bs[0], "3", 3, ""},
		{"latest follows the newest", bs[0], "latest", 4, ""},
		{"branched before the backup started", bs[1], "2", 0, "timeline 2 branched off timeline 1 at 0/5000000, before base backup 20261202T010000Z started (0/9000028)"},
		{"branched during the backup", bs[1], "4", 0, "timeline 4 branched off timeline 1 at 0/9000080, while base backup 20261202T010000Z was running"},
		{"latest branched before", bs[1], "latest", 0, "timeline 4 branched off timeline 1 at 0/9000080"},
		{"not a descendant", bs[2], "4", 0, "timeline 4 does not descend from timeline 2 of base backup 20261203T010000Z (its history: 1 left at 0/9000080)"},
		{"no history", bs[0], "7", 0, "timeline 7 has no history file in the archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tli, err := checkTimeline(tc.backup, tc.want, history)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.tli, tli)
		})
	}
}

func TestRecoverySettings(t *testing.T) {
	p := &PitrRestoreParams{TargetAction: "pause", TargetInclusive: false, TargetTimeline: "latest", ArchiveMode: "off"}
	tm, err := parseTargetTime("2026-12-01T07:30:00.5+01:00")
	require.NoError(t, err)
	got := recoverySettings(p, recoveryTarget{kind: "time", time: tm}, "/opt/plan run/it's/planrun", "/etc/wal%.yaml")
	assert.Equal(t, []string{
		// shell-quoted for PostgreSQL's shell, % doubled, conf-quoted.
		`restore_command = '''/opt/plan run/it''\\''''s/planrun'' wal-fetch --config /etc/wal%%.yaml %f %p'`,
		"recovery_target_time = '2026-12-01 06:30:00.5+00'",
		"recovery_target_inclusive = off",
		"recovery_target_action = 'pause'",
		"recovery_target_timeline = 'latest'",
		"archive_mode = off",
	}, got)
	p.ArchiveMode = "preserve"
	got = recoverySettings(p, recoveryTarget{kind: "latest"}, "/usr/bin/planrun", "/etc/w.yaml")
	assert.Equal(t, []string{"restore_command = '/usr/bin/planrun wal-fetch --config /etc/w.yaml %f %p'", "recovery_target_timeline = 'latest'"}, got)
	got = recoverySettings(p, recoveryTarget{kind: "name", name: "before 'migration'"}, "planrun", "w.yaml")
	assert.Contains(t, got, `recovery_target_name = 'before ''migration'''`)
	got = recoverySettings(p, recoveryTarget{kind: "immediate"}, "planrun", "w.yaml")
	assert.Contains(t, got, "recovery_target = 'immediate'")
}

func TestPitrRestoreValidate(t *testing.T) {
	base := "archive_config: /etc/w.yaml\ndata_dir: /tmp/x\n"
	for with, want := range map[string]string{
		"target_time: 2026-12-01T05:00:00Z\ntarget_lsn: 0/1":         "give at most one of target_time",
		"target_time: '2026-12-01 05:00:00'":                         "is not a time with a zone",
		"target_lsn: 12345":                                          "target_lsn",
		"target_timeline: newest":                                    `target_timeline: "newest" is not latest`,
		"start: true\nport: 5433":                                    "start: true needs port and socket_dir",
		"stop_after: true":                                           "need start: true",
		"start: true\nport: 5433\nsocket_dir: /tmp\ncheck_expect: x": "check_expect needs check_query",
		"start: true\nport: 5433\nsocket_dir: /tmp\ncheck_query: SELECT 1\ntarget_action: shutdown": "use promote or pause",
		"start: true\nport: 5433\nsocket_dir: /tmp\nremove_after: true":                             "remove_after with start: true needs stop_after",
		"target_action: explode": "explode",
	} {
		_, probs := decodeWithProblems(t, PitrRestore, base+with)
		require.NotEmpty(t, probs, with)
		assert.Contains(t, probs[0].Msg, want, with)
	}
	p := decodeWith(t, PitrRestore, base+"target_time: '2026-12-01 05:00:00.25+00'\nstart: true\nport: 5433\nsocket_dir: /tmp")
	assert.Equal(t, "promote", p.TargetAction)
	assert.True(t, p.TargetInclusive)
	assert.Equal(t, "off", p.ArchiveMode)
}

func TestPgBasebackupValidate(t *testing.T) {
	p := decodeWith(t, PgBasebackup, "host: db\narchive_config: /etc/w.yaml")
	assert.Equal(t, "fetch", p.WALMethod)
	assert.Equal(t, "postgres", p.queryDB())
	_, probs := decodeWithProblems(t, PgBasebackup, "archive_config: /etc/w.yaml\ncontainer: {name: pg}")
	require.NotEmpty(t, probs)
	assert.Contains(t, probs[0].Msg, "not supported by pg_basebackup")
	_, probs = decodeWithProblems(t, PgBasebackup, "archive_config: /etc/w.yaml\nwal_method: stream")
	require.NotEmpty(t, probs, "stream cannot write a tar to stdout")
}

func TestParseBasebackupLog(t *testing.T) {
	stderr := `pg_basebackup: initiating base backup, waiting for checkpoint to complete
pg_basebackup: checkpoint completed
pg_basebackup: write-ahead log start point: 1/A2000028 on timeline 3
pg_basebackup: write-ahead log end point: 1/A2000138
pg_basebackup: base backup completed
`
	start, stop, tli, err := parseBasebackupLog(stderr)
	require.NoError(t, err)
	assert.Equal(t, "1/A2000028", start.String())
	assert.Equal(t, "1/A2000138", stop.String())
	assert.Equal(t, uint32(3), tli)
	// A stop LSN on a segment boundary ends in the previous segment.
	b, _ := walarchive.ParseLSN("0/3000000")
	assert.Equal(t, "000000010000000000000002", walarchive.SegmentName(1, b-1, 16<<20))
	_, _, _, err = parseBasebackupLog("pg_basebackup: error: connection lost\n")
	assert.ErrorContains(t, err, "start point")
}

func TestParseRecoveryLog(t *testing.T) {
	l := parseRecoveryLog(`2026-12-01 06:12:20.794 UTC [1] LOG:  starting point-in-time recovery to 2026-12-01 06:11:51.094721+00
2026-12-01 06:12:21.001 UTC [1] LOG:  restored log file "000000010000000000000003" from archive
2026-12-01 06:12:21.100 UTC [1] LOG:  recovery stopping before commit of transaction 745, time 2026-12-01 06:11:52.5+00
2026-12-01 06:12:21.101 UTC [1] LOG:  redo done at 0/3000148 system usage: CPU: user: 0.00 s, system: 0.00 s, elapsed: 0.10 s
2026-12-01 06:12:21.101 UTC [1] LOG:  last completed transaction was at log time 2026-12-01 06:11:51.01+00
2026-12-01 06:12:21.200 UTC [1] LOG:  selected new timeline ID: 2
`)
	assert.Equal(t, "recovery stopping before commit of transaction 745, time 2026-12-01 06:11:52.5+00", l.stop)
	assert.Equal(t, "0/3000148", l.redoDone)
	assert.Equal(t, "2026-12-01 06:11:51.01+00", l.lastXact)
	assert.Equal(t, "2", l.timeline)
	assert.False(t, l.shutdown)
	assert.Empty(t, l.fatal)
	l = parseRecoveryLog("x FATAL:  recovery ended before configured recovery target was reached\ny LOG:  database system is shut down\n")
	assert.Equal(t, "recovery ended before configured recovery target was reached", l.fatal)
	assert.True(t, l.shutdown)
}

func TestCheckEmptyDataDir(t *testing.T) {
	dir := t.TempDir()
	assert.NoError(t, checkEmptyDataDir(filepath.Join(dir, "missing")))
	assert.NoError(t, checkEmptyDataDir(dir))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600))
	assert.EqualError(t, checkEmptyDataDir(dir), "data_dir "+dir+" is not empty (it holds PG_VERSION): refusing to restore over it; give a missing or empty directory")
}

func TestTarTally(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range map[string]string{"backup_label": "START WAL LOCATION", "base/1/1234": strings.Repeat("x", 9000), "backup_manifest": "{}"} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(body)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "pg_wal/", Mode: 0o700, Typeflag: tar.TypeDir}))
	require.NoError(t, tw.Close())
	buf.Write(make([]byte, 4096)) // padding after the end blocks
	archive := buf.Bytes()
	// Written in odd-sized pieces, as a pipe delivers it.
	var out bytes.Buffer
	tt := &tarTally{out: &out}
	for rest := archive; len(rest) > 0; {
		n := min(len(rest), 333)
		_, err := tt.Write(rest[:n])
		require.NoError(t, err)
		rest = rest[n:]
	}
	require.NoError(t, tt.finish())
	assert.Equal(t, archive, out.Bytes(), "passed through unchanged")
	assert.Equal(t, [4]any{int64(3), int64(9020), true, true}, [4]any{tt.files, tt.bytes, tt.manifest, tt.label})
	assert.True(t, tt.ended)
	// ReadFrom (io.Copy) the same.
	tt2 := &tarTally{out: io.Discard}
	_, err := io.Copy(tt2, bytes.NewReader(archive))
	require.NoError(t, err)
	assert.Equal(t, tt.files, tt2.files)
	_, err = (&tarTally{out: io.Discard}).Write([]byte(strings.Repeat("not a tar ", 100)))
	assert.ErrorContains(t, err, "tar header at byte 0: bad checksum")
	cut := &tarTally{out: io.Discard}
	_, err = cut.Write(archive[:1000])
	require.NoError(t, err)
	assert.ErrorContains(t, cut.finish(), "ends inside a member")
}

func TestPgBasebackupPreview(t *testing.T) {
	env := dbEnv(t)
	p := decodeWith(t, PgBasebackup, "host: db\nport: 5433\nuser: repl\npassword: s3cret-pw\narchive_config: /nonexistent/w.yaml")
	env.Secrets.Add("s3cret-pw")
	lines := PgBasebackup.Preview(env, p)
	joined := strings.Join(lines, "\n")
	assert.Contains(t, joined, "run: pg_basebackup --format=tar --pgdata=- --wal-method=fetch --checkpoint=fast --verbose --no-password '--label=planrun <label>' --host=db --port=5433 --username=repl")
	assert.Contains(t, joined, "SELECT pg_walfile_name(pg_switch_wal())")
	assert.NotContains(t, joined, "s3cret-pw")
}
