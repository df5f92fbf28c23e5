package steps

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/walarchive"
)

// pitrApply runs a plan through the engine (loader, runner, recorder) and
// returns its result and the attempts it recorded.
func pitrApply(t *testing.T, src string) (engine.Result, []engine.AttemptRecord, string) {
	t.Helper()
	p, err := engine.Load("plan.yaml", []byte(src), All())
	require.NoError(t, err)
	scope, err := engine.Prepare(p, engine.Invocation{Environ: os.Environ()})
	require.NoError(t, err)
	log := &runLog{}
	var stderr bytes.Buffer
	res := engine.Apply(context.Background(), p, scope, engine.Options{Recorder: log, StateDir: t.TempDir(), Stderr: &stderr})
	return res, log.attempts, stderr.String()
}

// pitrSource is a private cluster archiving into a planrun WAL archive
// whose segments and base backups are age-encrypted to a key the
// database host does not hold.
type pitrSource struct {
	c        *testenv.PGCluster
	bin      string
	cfg      string // archive config (recipients only), as archive_command uses it
	archive  string
	identity string // age identity, readable by the server's user (restore_command)
}

func newPITRSource(t *testing.T) *pitrSource {
	t.Helper()
	testenv.RequireTool(t, "pg_basebackup")
	s := &pitrSource{bin: testenv.PlanrunBin(t)}
	s.c = testenv.NewPG(t, testenv.PGOptions{})
	s.archive = s.c.MkdirOwned(t, "archive")
	idFile, recip := dbAgeKeys(t)
	key, err := os.ReadFile(idFile)
	require.NoError(t, err)
	s.identity = s.c.WriteOwned(t, "keys/age.key", key)
	s.cfg = s.c.WriteOwned(t, "wal.yaml", []byte(fmt.Sprintf("dir: %s\ncompress: zstd\nencrypt: {recipients: [%s]}\n", s.archive, recip)))
	s.c.SetArchiveCommand(t, s.bin+" wal-push --config "+s.cfg+" %p")
	s.c.Start(t)
	return s
}

// basebackupPlan is a plan with one pg_basebackup step.
func (s *pitrSource) basebackupPlan(extra string) string {
	return fmt.Sprintf(`version: 1
name: pitr-base
steps:
  - id: base
    type: pg_basebackup
    with: {host: %s, port: %d, user: postgres, archive_config: %s, archive_check_timeout: 30s%s}
`, s.c.Sock, s.c.Port, s.cfg, extra)
}

// backup takes a base backup through the engine and returns its outputs.
func (s *pitrSource) backup(t *testing.T) map[string]any {
	t.Helper()
	res, attempts, logs := pitrApply(t, s.basebackupPlan(""))
	require.Equal(t, engine.ExitOK, res.ExitCode, "%v\n%s", res.Err, logs)
	require.Len(t, attempts, 1)
	a := attempts[0]
	require.Len(t, a.Records, 1, "the tar is the step's one artifact")
	rec := a.Records[0]
	assert.Equal(t, "postgres-basebackup", rec.Source["kind"])
	assert.Equal(t, a.Outputs["label"], rec.Source["label"])
	assert.Equal(t, a.Outputs["stop_lsn"], rec.Source["stop_lsn"])
	assert.Equal(t, "age-x25519", rec.Encryption.Method)
	assert.Positive(t, rec.Counts["files"])
	return a.Outputs
}

// moment is what the test remembers after writing marker n.
type moment struct {
	n       int
	time    string
	lsn     string
	point   string
	dumpall string
}

func (s *pitrSource) mark(t *testing.T, n int) moment {
	t.Helper()
	s.c.Psql(t, fmt.Sprintf("INSERT INTO marker(id) VALUES (%d)", n))
	m := moment{n: n, point: fmt.Sprintf("marker-%d", n)}
	m.time = s.c.Psql(t, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`)
	m.lsn = s.c.Psql(t, "SELECT pg_current_wal_lsn()")
	s.c.Psql(t, "SELECT pg_create_restore_point('"+m.point+"')")
	// Nothing writes between the marker and the dump: it is the state
	// at every target of this moment.
	m.dumpall = pgDumpall(t, s.c.Sock, s.c.Port)
	return m
}

func pgDumpall(t *testing.T, sock string, port int) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(testenv.PGBin(), "pg_dumpall"), "-h", sock, "-p", strconv.Itoa(port), "-U", "postgres", "--no-password")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "pg_dumpall: %s", stderr.String())
	// \restrict lines carry a random key per run (PostgreSQL 15.14+).
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, `\restrict `) && !strings.HasPrefix(line, `\unrestrict `) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// sameDump compares two dumps, showing only where they first differ.
func sameDump(t *testing.T, want, got string) {
	t.Helper()
	if want == got {
		return
	}
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			t.Errorf("pg_dumpall of the recovered server differs from the source's at the target, first at line %d (of %d/%d):\nwant %q\ngot  %q", i+1, len(w), len(g), wl, gl)
			return
		}
	}
}

func (s *pitrSource) pgbench(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(testenv.PGBin(), "pgbench"), append([]string{"-h", s.c.Sock, "-p", strconv.Itoa(s.c.Port), "-U", "postgres", "-d", "postgres"}, args...)...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "pgbench %v: %s", args, out)
}

func pitrFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// restored is one pitr-restore run through the engine.
type restored struct {
	res     engine.Result
	outputs map[string]any
	logs    string
	dataDir string
	sock    string
	port    int
}

// restore runs pitr-restore into a fresh data dir and leaves the
// server running (stopped at cleanup) so the test can look inside.
func (s *pitrSource) restore(t *testing.T, with string) restored {
	t.Helper()
	r := restored{port: pitrFreePort(t)}
	r.dataDir = filepath.Join(s.c.MkdirOwned(t, fmt.Sprintf("restore-%d", r.port)), "data")
	r.sock = s.c.MkdirOwned(t, fmt.Sprintf("restore-%d-sock", r.port))
	plan := fmt.Sprintf(`version: 1
name: pitr-restore
steps:
  - id: restore
    type: pitr-restore
    timeout: 5m
    with: {archive_config: %s, identity_file: %s, planrun: %s, data_dir: %s, start: true, port: %d, socket_dir: %s, user: postgres, recovery_timeout: 3m%s}
`, s.cfg, s.identity, s.bin, r.dataDir, r.port, r.sock, with)
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(r.dataDir, "postmaster.pid")); err == nil {
			s.c.Command(context.Background(), filepath.Join(testenv.PGBin(), "pg_ctl"), "stop", "-D", r.dataDir, "-m", "immediate", "-w").Run()
		}
	})
	var attempts []engine.AttemptRecord
	r.res, attempts, r.logs = pitrApply(t, plan)
	if len(attempts) > 0 {
		r.outputs = attempts[len(attempts)-1].Outputs
	}
	return r
}

func (r restored) psql(t *testing.T, sql string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(testenv.PGBin(), "psql"), "-X", "-A", "-t", "-q", "-h", r.sock, "-p", strconv.Itoa(r.port),
		"-U", "postgres", "-d", "postgres", "-c", sql).CombinedOutput()
	require.NoError(t, err, "psql %q: %s", sql, out)
	return strings.TrimSpace(string(out))
}

func markers(upTo ...int) string {
	parts := make([]string, len(upTo))
	for i, n := range upTo {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

// Modeled on pgBackRest's integration test: markers written at several
// moments, base backups between them, pgbench WAL, and a restore to each
// kind of target into a fresh data dir, checked for exactly the markers
// that existed at the target and against pg_dumpall of the source then.
func TestPITRRestoreToEachTarget(t *testing.T) {
	s := newPITRSource(t)
	s.c.Psql(t, "CREATE TABLE marker(id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
	m1 := s.mark(t, 1)
	a := s.backup(t)
	m2 := s.mark(t, 2)
	s.pgbench(t, "-i", "-s", "2", "-q")
	s.pgbench(t, "-n", "-c", "2", "-t", "300")
	m3 := s.mark(t, 3)
	b := s.backup(t)
	m4 := s.mark(t, 4)
	s.pgbench(t, "-n", "-c", "2", "-t", "300")
	m5 := s.mark(t, 5)
	s.c.WaitArchived(t, time.Minute)

	cfg, err := walarchive.LoadConfig(s.cfg)
	require.NoError(t, err)
	backups, err := walarchive.Backups(cfg)
	require.NoError(t, err)
	require.Len(t, backups, 2)
	assert.Equal(t, a["label"], backups[0].Label)
	assert.Equal(t, b["label"], backups[1].Label)
	for _, bb := range backups {
		assert.True(t, bb.WALIncluded)
		assert.Equal(t, uint32(1), bb.Timeline)
		assert.True(t, bb.Encrypted)
		assert.Equal(t, int64(16<<20), bb.WALSegmentSize)
		assert.True(t, bb.StartTime.Before(bb.StopTime))
		ok, err := walarchive.Archived(cfg, bb.StopWAL)
		require.NoError(t, err)
		assert.True(t, ok, "the backup's last segment %s is archived before backup.json is written", bb.StopWAL)
	}
	// The tar is what pg_basebackup -Ft made, manifest included.
	tarList := tarMembers(t, filepath.Join(backups[1].Dir, backups[1].File), s.identity)
	assert.Contains(t, tarList, "backup_manifest")
	assert.Contains(t, tarList, "backup_label")
	assert.Contains(t, tarList, "PG_VERSION")

	for _, tc := range []struct {
		name    string
		with    string
		backup  any
		markers string
		dumpall string
	}{
		// pgbench's WAL between backup A and the target is replayed.
		{"time", ", target_time: " + m3.time, a["label"], markers(1, 2, 3), m3.dumpall},
		{"lsn", ", target_lsn: " + m4.lsn, b["label"], markers(1, 2, 3, 4), m4.dumpall},
		// A restore point written before the newest backup needs an older one.
		{"name", fmt.Sprintf(", target_name: %s, backup: %s", m3.point, a["label"]), a["label"], markers(1, 2, 3), m3.dumpall},
		{"immediate", ", target_immediate: true", b["label"], markers(1, 2, 3), m3.dumpall},
		{"latest", "", b["label"], markers(1, 2, 3, 4, 5), m5.dumpall},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.restore(t, tc.with)
			require.Equal(t, engine.ExitOK, r.res.ExitCode, "%v\n%s", r.res.Err, r.logs)
			assert.Equal(t, tc.backup, r.outputs["backup"])
			assert.Equal(t, "promoted", r.outputs["state"])
			assert.Equal(t, tc.markers, r.psql(t, "SELECT string_agg(id::text, ',' ORDER BY id) FROM marker"))
			assert.Equal(t, "f", r.psql(t, "SELECT pg_is_in_recovery()"))
			assert.NotEmpty(t, r.outputs["reached_lsn"])
			if tc.name != "latest" && tc.name != "immediate" {
				assert.Contains(t, r.outputs["recovery_stop"], "recovery stopping")
			}
			fi, err := os.Stat(r.dataDir)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
			// archive_mode = off: the drill's new timeline stays out of the archive.
			assert.Equal(t, "off", r.psql(t, "SHOW archive_mode"))
			sameDump(t, tc.dumpall, pgDumpall(t, r.sock, r.port))
		})
	}
	_, _ = m1, m2

	// The other target actions: paused in recovery at the target (still
	// read-only, markers as at the target), or shut down there.
	t.Run("pause", func(t *testing.T) {
		r := s.restore(t, ", target_lsn: "+m2.lsn+", target_action: pause")
		require.Equal(t, engine.ExitOK, r.res.ExitCode, "%v\n%s", r.res.Err, r.logs)
		assert.Equal(t, "paused", r.outputs["state"])
		assert.Equal(t, a["label"], r.outputs["backup"])
		assert.Equal(t, "t", r.psql(t, "SELECT pg_is_in_recovery()"))
		assert.Equal(t, markers(1, 2), r.psql(t, "SELECT string_agg(id::text, ',' ORDER BY id) FROM marker"))
		assert.Contains(t, r.outputs["recovery_stop"], "recovery stopping after WAL location (LSN) \""+m2.lsn+"\"")
	})
	t.Run("shutdown", func(t *testing.T) {
		r := s.restore(t, ", target_name: "+m4.point+", target_action: shutdown")
		require.Equal(t, engine.ExitOK, r.res.ExitCode, "%v\n%s", r.res.Err, r.logs)
		assert.Equal(t, "shut down", r.outputs["state"])
		assert.Contains(t, r.outputs["recovery_stop"], `recovery stopping at restore point "marker-4"`)
		assert.NoFileExists(t, filepath.Join(r.dataDir, "postmaster.pid"))
	})
	// The server cannot reach a restore point older than the backup it
	// starts from: the step reports PostgreSQL's reason and stops it.
	t.Run("unreachable", func(t *testing.T) {
		r := s.restore(t, ", target_name: "+m1.point)
		require.Equal(t, engine.ExitFailed, r.res.ExitCode, r.logs)
		assert.Contains(t, r.res.Err.Error(), "recovery ended before configured recovery target was reached")
		assert.NoFileExists(t, filepath.Join(r.dataDir, "postmaster.pid"), "the failed server is stopped")
	})

	// planrun drill of a pg_basebackup run: the tar's sha256 against the
	// manifest, then pitr-restore extracts it into scratch and its file
	// count and bytes are compared with what pg_basebackup streamed.
	t.Run("drill", func(t *testing.T) {
		p, res, m := applyPlan(t, s.basebackupPlan(""))
		require.Equal(t, engine.ExitOK, res.ExitCode, "%v", res.Err)
		require.Len(t, m.Artifacts, 1)
		rp, err := engine.BuildRestore(engine.RestoreRequest{Plan: p, Manifest: m, Drill: true, IdentityFile: s.identity}, All())
		require.NoError(t, err)
		scope, err := engine.Prepare(rp.Plan, engine.Invocation{Environ: os.Environ()})
		require.NoError(t, err)
		log := &runLog{}
		var stderr bytes.Buffer
		dres := engine.Restore(context.Background(), rp, scope, engine.Options{Recorder: log, StateDir: t.TempDir(), Stderr: &stderr})
		require.Equal(t, engine.ExitOK, dres.ExitCode, "%v\n%s", dres.Err, stderr.String())
		require.Len(t, log.finished, 1)
		rep := log.finished[0].Report
		require.True(t, rep.Passed, "%v", rep.Problems)
		var what []string
		for _, c := range rep.Checks {
			what = append(what, c.What)
			if c.What == "counts" {
				assert.Equal(t, 2, c.Compared, "files and bytes")
			}
		}
		assert.Equal(t, []string{"sha256", "counts"}, what)
		_, err = os.Stat(rp.Scratch)
		assert.True(t, os.IsNotExist(err), "scratch removed")
	})

	t.Run("refusals", func(t *testing.T) {
		// Before the oldest backup ended: refused before anything is written.
		r := s.restore(t, ", target_time: "+m1.time)
		require.Equal(t, engine.ExitFailed, r.res.ExitCode)
		assert.Contains(t, r.res.Err.Error(), "before the oldest base backup's stop time")
		_, err := os.Stat(r.dataDir)
		assert.True(t, os.IsNotExist(err), "nothing written")
		// A non-empty data dir is named and left alone.
		full := s.c.MkdirOwned(t, "full")
		require.NoError(t, os.WriteFile(filepath.Join(full, "keep.txt"), []byte("x"), 0o600))
		res, _, logs := pitrApply(t, fmt.Sprintf(`version: 1
name: pitr-full
steps:
  - id: restore
    type: pitr-restore
    with: {archive_config: %s, identity_file: %s, data_dir: %s}
`, s.cfg, s.identity, full))
		require.Equal(t, engine.ExitFailed, res.ExitCode, logs)
		assert.Contains(t, res.Err.Error(), "data_dir "+full+" is not empty (it holds keep.txt)")
		ents, _ := os.ReadDir(full)
		assert.Len(t, ents, 1)
	})
}

// tarMembers lists the names in an (encrypted, compressed) tar artifact.
func tarMembers(t *testing.T, path, identity string) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(dbReadArtifact(t, path, identity)))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		require.NoError(t, err)
		names = append(names, h.Name)
	}
}

// A broken archive_command fails the archive check before any artifact
// exists: failing (a config that does not exist) with the failing
// segment named, and archiving elsewhere (another archive's config).
func TestPgBasebackupArchiveCheckRefuses(t *testing.T) {
	s := newPITRSource(t)
	other := s.c.MkdirOwned(t, "other-archive")
	otherCfg := s.c.WriteOwned(t, "other.yaml", []byte("dir: "+other+"\n"))
	for _, tc := range []struct {
		name, command, want string
	}{
		{"failing", s.bin + " wal-push --config " + s.cfg + ".missing %p", "archive_command fails: 3 failures since the check began, last on 0000000100000000000000"},
		{"elsewhere", s.bin + " wal-push --config " + otherCfg + " %p", "but it is not in " + s.archive + ": archive_command must be planrun wal-push --config " + s.cfg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.c.Psql(t, "ALTER SYSTEM SET archive_command = '"+tc.command+"'")
			s.c.Psql(t, "SELECT pg_reload_conf()")
			t.Cleanup(func() {
				s.c.Psql(t, "ALTER SYSTEM RESET archive_command")
				s.c.Psql(t, "SELECT pg_reload_conf()")
			})
			res, attempts, logs := pitrApply(t, s.basebackupPlan(""))
			require.Equal(t, engine.ExitFailed, res.ExitCode, logs)
			t.Log(res.Err)
			assert.Contains(t, res.Err.Error(), tc.want)
			require.Len(t, attempts, 1)
			assert.Empty(t, attempts[0].Records, "no artifact")
			_, err := os.Stat(filepath.Join(s.archive, "base"))
			assert.True(t, os.IsNotExist(err), "nothing under base/")
		})
	}
	t.Run("archive_mode off", func(t *testing.T) {
		s.c.Psql(t, "ALTER SYSTEM SET archive_mode = off")
		s.c.Restart(t)
		t.Cleanup(func() {
			s.c.Psql(t, "ALTER SYSTEM RESET archive_mode")
			s.c.Restart(t)
		})
		res, _, logs := pitrApply(t, s.basebackupPlan(""))
		require.Equal(t, engine.ExitFailed, res.ExitCode, logs)
		assert.Contains(t, res.Err.Error(), "WAL archiving is off (archive_mode = off)")
	})
	// A failing pg_basebackup (a wrong program stands in for one dying
	// mid-stream) leaves no tar and no backup.json.
	t.Run("pg_basebackup fails", func(t *testing.T) {
		fake := filepath.Join(t.TempDir(), "pg_basebackup")
		require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\nhead -c 100000 /dev/urandom\necho 'pg_basebackup: error: connection lost' >&2\nexit 1\n"), 0o755))
		res, attempts, logs := pitrApply(t, s.basebackupPlan(", pg_basebackup: "+fake))
		require.Equal(t, engine.ExitFailed, res.ExitCode, logs)
		assert.Contains(t, res.Err.Error(), "connection lost")
		assert.Empty(t, attempts[0].Records)
		ents, _ := filepath.Glob(filepath.Join(s.archive, "base", "*"))
		assert.Empty(t, ents, "no backup directory, tar, temp file or backup.json")
	})
}
