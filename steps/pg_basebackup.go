package steps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/childenv"
	"github.com/planrun/planrun/steps/internal/pgconn"
	"github.com/planrun/planrun/steps/internal/proc"
	"github.com/planrun/planrun/steps/walarchive"
)

// PgBasebackupParams are the params of pg_basebackup.
type PgBasebackupParams struct {
	pgconn.Conn         `yaml:",inline"`
	ArchiveConfig       string          `yaml:"archive_config" required:"true" doc:"WAL archive config file (the one archive_command's planrun wal-push --config names); the backup goes to its base/<label>/"`
	WALMethod           string          `yaml:"wal_method" enum:"fetch|none" default:"fetch" doc:"fetch: the tar holds the WAL written during the backup, so it restores on its own (pg_basebackup -X fetch); none: recovery needs the archive (-X stream cannot write a tar to stdout)"`
	Checkpoint          string          `yaml:"checkpoint" enum:"fast|spread" default:"fast" doc:"checkpoint at the start: fast (immediate I/O burst) or spread (as the server's checkpoints, slower to start)"`
	ArchiveCheckTimeout engine.Duration `yaml:"archive_check_timeout" default:"60s" doc:"how long to wait for a WAL segment to reach the archive, before the backup (archive check) and after it (its last segment)"`
	PgBasebackup        string          `yaml:"pg_basebackup" default:"pg_basebackup" tool:"true" doc:"pg_basebackup program (the server's major version)"`
	Psql                string          `yaml:"psql" default:"psql" tool:"true" doc:"psql program, for the archive check and the server's facts"`
}

// Validate checks the connection rules; the database is optional here.
func (p *PgBasebackupParams) Validate() error {
	if p.Conn.Target.Enabled() {
		return errors.New("container/compose: not supported by pg_basebackup (run it on the host, connecting over the network)")
	}
	c := p.Conn
	if c.URI == "" && c.Database == "" {
		c.Database = "postgres" // only for the rule check: the default psql database
	}
	return c.Check()
}

// queryDB is the database of the step's psql sessions: the given one, the
// URI's, or postgres.
func (p *PgBasebackupParams) queryDB() string {
	if p.URI == "" && p.Database == "" {
		return "postgres"
	}
	return ""
}

func (p *PgBasebackupParams) args(s *pgconn.Session, label string) []string {
	args := []string{"--format=tar", "--pgdata=-", "--wal-method=" + p.WALMethod, "--checkpoint=" + p.Checkpoint,
		"--verbose", "--no-password", "--label=planrun " + label}
	return append(args, s.ServerArgs()...)
}

// PgBasebackup streams a physical base backup into the WAL archive.
var PgBasebackup = engine.Def[PgBasebackupParams]{
	Name:    "pg_basebackup",
	Summary: "stream a physical base backup (pg_basebackup -Ft -D -) into the WAL archive for point-in-time recovery, after checking that WAL archiving works",
	Doc: `The base backup half of PostgreSQL point-in-time recovery (the WAL
half is archive_command = planrun wal-push --config F %p). Before backing up,
the step refuses unless WAL archiving works (pgBackRest's archive check):
archive_mode must be on and archive_command set; it forces a WAL switch
(pg_switch_wal) and waits, up to archive_check_timeout, until that segment
is both reported archived by pg_stat_archiver and present in the archive
named by archive_config. A failing archive_command (failed_count rising) is
reported with the segment it fails on; a segment the server archived that
is not in this archive means archive_command uses another config.

pg_basebackup -Ft -D - streams one tar (PostgreSQL 13+ puts backup_manifest
in it) through the config's compression and encryption into
base/<label>/base.tar.<zst|gz|raw>[.age] of the archive, with a .sha256
sidecar. Only clusters without extra tablespaces can be written to one tar:
others are refused before anything is written. With wal_method: fetch (the
default) the tar holds the WAL written during the backup. After
pg_basebackup the step waits for the backup's last WAL segment to be
archived (recovery to any later time needs it), then publishes the tar and
writes backup.json (start/stop LSN and WAL segment, timeline, start/stop
time by the server's clock, WAL segment size, server_version_num, system
identifier, the tar's sha256), last: a backup without it is incomplete and
ignored by pitr-restore, wal-verify and wal-expire. If pg_basebackup fails
at any point the artifact is discarded and no backup.json is written.

The role needs REPLICATION (and a replication line in pg_hba.conf) plus,
unless superuser: pg_read_all_settings, pg_read_all_stats and EXECUTE on
pg_switch_wal(). A standby is refused (point the step at the primary).
The password (password, password_env or the uri's) goes to a 0600 PGPASSFILE.`,
	Kind: engine.KindBackup,
	Outputs: append(append([]engine.Output(nil), artifact.StandardOutputs...),
		engine.Output{Name: "label", Doc: "backup label (its start time, 20060102T150405Z)"},
		engine.Output{Name: "backup_dir", Doc: "the backup's directory in the archive (base.tar.*, backup.json)"},
		engine.Output{Name: "start_lsn", Doc: "WAL location where the backup starts"},
		engine.Output{Name: "stop_lsn", Doc: "WAL location where the backup ends: recovery must replay at least to here"},
		engine.Output{Name: "start_wal", Doc: "WAL segment of start_lsn"},
		engine.Output{Name: "stop_wal", Doc: "last WAL segment the backup needs"},
		engine.Output{Name: "timeline", Doc: "timeline of the backup"},
		engine.Output{Name: "start_time", Doc: "server time before the backup started (RFC 3339)"},
		engine.Output{Name: "stop_time", Doc: "server time after it ended: the earliest recovery target time it serves"},
		engine.Output{Name: "server_version", Doc: "server_version_num"},
		engine.Output{Name: "system_identifier", Doc: "the cluster's system identifier"},
		engine.Output{Name: "wal_segment_size", Doc: "WAL segment size in bytes"},
		engine.Output{Name: "duration_ms", Doc: "pg_basebackup duration in milliseconds"},
		engine.Output{Name: "counts", Doc: "files and bytes in the tar (files, bytes), for the restore's check"},
	),
	Example: "host: db.internal\nuser: replicator\npassword_env: PGPASSWORD_REPL\narchive_config: /etc/planrun/wal.yaml",
	Preview: func(env *engine.Env, p *PgBasebackupParams) []string {
		s := p.Conn.PreviewSession(env)
		psql := func(sqls ...string) string {
			args := append([]string{"-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"}, s.ConnArgs(p.queryDB())...)
			for _, q := range sqls {
				args = append(args, "-c", q)
			}
			return "run: " + s.CommandLine(env, proc.Cmd{Name: p.Psql, Args: args})
		}
		dest := filepath.Join("<archive dir of "+p.ArchiveConfig+">", "base", "<label>", "base.tar.<comp>[.age]")
		if cfg, err := walarchive.LoadConfig(p.ArchiveConfig); err == nil {
			dest = baseTarPath(cfg, "<label>")
		}
		return []string{
			psql(bbFactsSQL),
			"check: archive_mode on, archive_command set, no tablespaces besides pg_default/pg_global, not a standby",
			psql(archiverSQL, "SELECT txid_current()", bbSwitchSQL) + " (a commit, so the switch has WAL to close)",
			fmt.Sprintf("wait ≤%s, polling %s: pg_stat_archiver reports that segment archived and it is in the archive (%s)",
				time.Duration(p.ArchiveCheckTimeout), strings.TrimPrefix(psql(archiverSQL, serverNowSQL), "run: "), p.ArchiveConfig),
			"run: " + s.CommandLine(env, proc.Cmd{Name: p.PgBasebackup, Args: p.args(s, "<label>")}) + " (password via PGPASSFILE)",
			fmt.Sprintf("wait ≤%s: the backup's last WAL segment is archived (same polling)", time.Duration(p.ArchiveCheckTimeout)),
			"write: " + dest + " (+ .sha256), then backup.json beside it",
		}
	},
	Inverse: &engine.Inverse{Type: "pitr-restore", With: pgBasebackupInverse,
		Targets: []string{"data_dir", "start", "port", "socket_dir", "archive_mode", "stop_after", "remove_after"}},
	Run: func(ctx context.Context, env *engine.Env, p *PgBasebackupParams) (engine.Outputs, error) {
		out, _, err := runPgBasebackup(ctx, env, p)
		return out, err
	},
}

// bbFactsSQL reads what the backup record needs and what the checks
// refuse; archive_command last, as it may contain the separator.
const bbFactsSQL = `SELECT current_setting('server_version_num'), (SELECT system_identifier FROM pg_control_system()), ` +
	`(SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), pg_is_in_recovery(), ` +
	`(SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')), ` +
	`current_setting('archive_mode'), current_setting('archive_command')`

const bbSwitchSQL = "SELECT pg_walfile_name(pg_switch_wal())"

// bbFacts are the server's facts read before the backup.
type bbFacts struct {
	version     int
	systemID    string
	segSize     int64
	tablespaces int
}

// pgBasebackup is one run of the step.
type pgBasebackup struct {
	p   *PgBasebackupParams
	env *engine.Env
	s   *pgconn.Session
	cfg *walarchive.Config
}

func (b *pgBasebackup) query(ctx context.Context, sqls ...string) ([]string, error) {
	return b.s.Query(ctx, b.env, b.p.Psql, b.p.queryDB(), sqls...)
}

// runPgBasebackup also returns the backup record (for tests).
func runPgBasebackup(ctx context.Context, env *engine.Env, p *PgBasebackupParams) (engine.Outputs, *walarchive.BaseBackup, error) {
	cfg, err := walarchive.LoadConfig(p.ArchiveConfig)
	if err != nil {
		return nil, nil, fmt.Errorf("archive_config: %w", err)
	}
	s, err := p.Conn.Session(env)
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()
	// The -v lines parsed below must not be translated.
	s.Environ = childenv.Set(s.Environ, "LC_MESSAGES", "C")
	b := &pgBasebackup{p: p, env: env, s: s, cfg: cfg}
	facts, err := b.check(ctx)
	if err != nil {
		return nil, nil, err
	}
	startTime, err := b.archiveCheck(ctx)
	if err != nil {
		return nil, nil, err
	}
	return b.backup(ctx, facts, startTime)
}

// check reads the server's facts and refuses what cannot be backed up
// here or archived.
func (b *pgBasebackup) check(ctx context.Context) (*bbFacts, error) {
	lines, err := b.query(ctx, bbFactsSQL)
	if err != nil {
		return nil, fmt.Errorf("reading the server's settings: %w", err)
	}
	if len(lines) == 0 {
		return nil, errors.New("reading the server's settings: no answer")
	}
	// archive_command may hold "|" (and even newlines): it is the rest.
	f := strings.SplitN(strings.Join(lines, "\n"), "|", 7)
	if len(f) != 7 {
		return nil, fmt.Errorf("reading the server's settings: unexpected answer %q", lines[0])
	}
	facts := &bbFacts{systemID: f[1]}
	if facts.version, err = strconv.Atoi(f[0]); err != nil {
		return nil, fmt.Errorf("server_version_num %q: %w", f[0], err)
	}
	if facts.segSize, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return nil, fmt.Errorf("wal_segment_size %q: %w", f[2], err)
	}
	if facts.tablespaces, err = strconv.Atoi(f[4]); err != nil {
		return nil, fmt.Errorf("tablespace count %q: %w", f[4], err)
	}
	switch {
	case f[3] == "t":
		return nil, errors.New("the server is a standby (pg_is_in_recovery): run pg_basebackup against the primary, whose archiver the archive check can watch")
	case facts.tablespaces > 0:
		return nil, fmt.Errorf("the cluster has %d tablespace(s) besides pg_default and pg_global: pg_basebackup can stream only one tablespace into a single tar", facts.tablespaces)
	case f[5] != "on" && f[5] != "always":
		return nil, fmt.Errorf("WAL archiving is off (archive_mode = %s): set archive_mode = on and archive_command = 'planrun wal-push --config %s %%p' and restart the server; a base backup without archived WAL cannot be recovered to a point in time", f[5], b.cfg.File)
	case strings.TrimSpace(f[6]) == "" || f[6] == "(disabled)":
		return nil, fmt.Errorf("archive_command is empty: set archive_command = 'planrun wal-push --config %s %%p' (and reload)", b.cfg.File)
	}
	b.env.Log.Info("server facts", "server_version_num", facts.version, "system_identifier", facts.systemID,
		"wal_segment_size", facts.segSize, "archive_command", f[6])
	return facts, nil
}

// archiveCheck forces a WAL switch and waits until the closed segment is
// in the archive: pgBackRest's archive-check.
// It returns the server's time at the last look: the backup starts right
// after it.
func (b *pgBasebackup) archiveCheck(ctx context.Context) (time.Time, error) {
	// A commit record guarantees there is WAL to close: a switch in an
	// empty segment does nothing.
	before, lines, err := b.archiver(ctx, "SELECT txid_current()", bbSwitchSQL)
	if err != nil {
		return time.Time{}, fmt.Errorf("archive check: forcing a WAL switch: %w", err)
	}
	if len(lines) != 2 {
		return time.Time{}, fmt.Errorf("archive check: unexpected answer %q to the WAL switch", lines)
	}
	seg := lines[1]
	b.env.Log.Info("archive check: WAL switched, waiting for the segment to be archived", "segment", seg, "archive", b.cfg.Dir)
	now, err := b.waitArchived(ctx, seg, before)
	if err != nil {
		return time.Time{}, fmt.Errorf("archive check failed, no backup taken: %w", err)
	}
	b.env.Log.Info("archive check passed", "segment", seg)
	return now, nil
}

// archiverStat is a row of pg_stat_archiver.
type archiverStat struct {
	archivedCount, failedCount int64
	lastArchived, lastFailed   string
	lastFailedTime             string
}

const archiverSQL = `SELECT archived_count, coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, ''), ` +
	`coalesce(last_failed_time::text, '') FROM pg_stat_archiver`

// archiver reads pg_stat_archiver, then runs more statements in the same
// psql and returns their output lines: each psql started costs time on
// the backup's critical path.
func (b *pgBasebackup) archiver(ctx context.Context, more ...string) (archiverStat, []string, error) {
	var st archiverStat
	lines, err := b.query(ctx, append([]string{archiverSQL}, more...)...)
	if err != nil {
		return st, nil, fmt.Errorf("reading pg_stat_archiver: %w", err)
	}
	if len(lines) < 1 {
		return st, nil, fmt.Errorf("pg_stat_archiver: unexpected answer %q", lines)
	}
	f := strings.Split(lines[0], "|")
	if len(f) != 5 {
		return st, nil, fmt.Errorf("pg_stat_archiver: unexpected answer %q", lines[0])
	}
	st.archivedCount, _ = strconv.ParseInt(f[0], 10, 64)
	st.failedCount, _ = strconv.ParseInt(f[2], 10, 64)
	st.lastArchived, st.lastFailed, st.lastFailedTime = f[1], f[3], f[4]
	return st, lines[1:], nil
}

// archiverRetries is how often PostgreSQL's archiver tries a segment
// before pausing for a minute: after that many new failures archiving is
// broken, not hiccuping.
const archiverRetries = 3

// archivedAtLeast reports whether the archiver's last archived file is
// segment seg or a later one (history files say nothing about segments).
func archivedAtLeast(last, seg string) bool {
	return len(last) >= 24 && isHex(last[:24]) && last[:24] >= seg
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// waitArchived polls pg_stat_archiver and the archive until segment seg is
// in the archive, the archiver fails repeatedly, or the timeout passes.
// It returns the server's time when it found it.
func (b *pgBasebackup) waitArchived(ctx context.Context, seg string, before archiverStat) (time.Time, error) {
	timeout := time.Duration(b.p.ArchiveCheckTimeout)
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// The stat first: archive_command returns only once the file is
		// stored, so a segment reported archived must be found after.
		st, now, err := b.archiver(ctx, serverNowSQL)
		if err != nil {
			return time.Time{}, err
		}
		found, err := walarchive.Archived(b.cfg, seg)
		if err != nil {
			return time.Time{}, err
		}
		if found {
			return parseServerNow(now)
		}
		if archivedAtLeast(st.lastArchived, seg) {
			return time.Time{}, fmt.Errorf("the server archived %s (pg_stat_archiver: last archived %s) but it is not in %s: archive_command must be planrun wal-push --config %s",
				seg, st.lastArchived, b.cfg.Dir, b.cfg.File)
		}
		if n := st.failedCount - before.failedCount; n >= archiverRetries {
			return time.Time{}, fmt.Errorf("archive_command fails: %d failures since the check began, last on %s at %s (see the server log for its error)",
				n, st.lastFailed, st.lastFailedTime)
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("segment %s not archived within %s (pg_stat_archiver: last archived %q", seg, timeout, st.lastArchived)
			if st.failedCount > before.failedCount {
				msg += fmt.Sprintf(", %d failure(s), last on %s", st.failedCount-before.failedCount, st.lastFailed)
			}
			return time.Time{}, errors.New(msg + ")")
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// baseTarPath is where the tar of the backup with this label goes.
func baseTarPath(cfg *walarchive.Config, label string) string {
	return filepath.Join(walarchive.BackupDir(cfg, label), "base.tar"+cfg.Ext())
}

var (
	bbStartRE = regexp.MustCompile(`write-ahead log start point: ([0-9A-Fa-f]+/[0-9A-Fa-f]+) on timeline (\d+)`)
	bbStopRE  = regexp.MustCompile(`write-ahead log end point: ([0-9A-Fa-f]+/[0-9A-Fa-f]+)`)
)

// parseBasebackupLog reads the start/stop LSN and timeline from
// pg_basebackup -v's stderr.
func parseBasebackupLog(stderr string) (start, stop walarchive.LSN, tli uint32, err error) {
	m := bbStartRE.FindStringSubmatch(stderr)
	if m == nil {
		return 0, 0, 0, errors.New("pg_basebackup -v printed no \"write-ahead log start point\"")
	}
	if start, err = walarchive.ParseLSN(m[1]); err != nil {
		return 0, 0, 0, err
	}
	t, err := strconv.ParseUint(m[2], 10, 32)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("timeline %q: %w", m[2], err)
	}
	m = bbStopRE.FindStringSubmatch(stderr)
	if m == nil {
		return 0, 0, 0, errors.New("pg_basebackup -v printed no \"write-ahead log end point\"")
	}
	if stop, err = walarchive.ParseLSN(m[1]); err != nil {
		return 0, 0, 0, err
	}
	return start, stop, uint32(t), nil
}

// tarTally counts the members of the tar written through it to out, as
// the restore's extraction counts them. It reads the ustar headers in
// line (pg_basebackup writes plain ustar: no long-name extensions) rather
// than through archive/tar in another goroutine: the stream is the
// backup's critical path.
type tarTally struct {
	out      io.Writer
	files    int64
	bytes    int64
	manifest bool
	label    bool
	hdr      [512]byte
	hn       int   // header bytes collected
	skip     int64 // member data and padding still to pass
	zeros    int   // consecutive zero blocks: two end the archive
	ended    bool
	offset   int64
}

func (t *tarTally) Write(p []byte) (int, error) {
	if err := t.scan(p); err != nil {
		return 0, err
	}
	return t.out.Write(p)
}

// ReadFrom keeps the large reads of out's own ReadFrom (io.Copy from
// pg_basebackup's stdout), scanning what passes.
func (t *tarTally) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := t.out.(io.ReaderFrom); ok {
		return rf.ReadFrom(io.TeeReader(r, tallyScan{t}))
	}
	return io.Copy(struct{ io.Writer }{t}, r)
}

// tallyScan is the tally without the copy to out.
type tallyScan struct{ t *tarTally }

func (s tallyScan) Write(p []byte) (int, error) {
	if err := s.t.scan(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (t *tarTally) scan(p []byte) error {
	for len(p) > 0 && !t.ended { // after the end: padding
		if t.skip > 0 {
			k := int64(len(p))
			if k > t.skip {
				k = t.skip
			}
			t.skip -= k
			t.offset += k
			p = p[k:]
			continue
		}
		k := copy(t.hdr[t.hn:], p)
		t.hn += k
		p = p[k:]
		if t.hn < len(t.hdr) {
			return nil
		}
		t.hn = 0
		if err := t.header(); err != nil {
			return fmt.Errorf("tar header at byte %d: %w", t.offset, err)
		}
		t.offset += int64(len(t.hdr))
	}
	return nil
}

func (t *tarTally) header() error {
	h := t.hdr[:]
	if bytes.Count(h, []byte{0}) == len(h) {
		t.zeros++
		t.ended = t.zeros == 2
		return nil
	}
	t.zeros = 0
	// The checksum counts its own field as spaces.
	var sum int64
	for i, c := range h {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	want, err := tarNumber(h[148:156])
	if err != nil || want != sum {
		return errors.New("bad checksum: not a tar")
	}
	size, err := tarNumber(h[124:136])
	if err != nil || size < 0 {
		return fmt.Errorf("bad size field %q", h[124:136])
	}
	name := string(h[:100])
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	if typ := h[156]; typ == '0' || typ == 0 {
		t.files++
		t.bytes += size
		switch name {
		case "backup_manifest":
			t.manifest = true
		case "backup_label":
			t.label = true
		}
	}
	t.skip = (size + 511) &^ 511
	return nil
}

// tarNumber reads an octal tar field, or the base-256 form of large sizes.
func tarNumber(f []byte) (int64, error) {
	if len(f) > 0 && f[0]&0x80 != 0 {
		var v int64
		for i, c := range f {
			if i == 0 {
				c &= 0x7f
			}
			v = v<<8 | int64(c)
		}
		return v, nil
	}
	s := strings.Trim(string(f), " \x00")
	if s == "" {
		return 0, nil
	}
	return strconv.ParseInt(s, 8, 64)
}

// finish reports a stream cut inside a member.
func (t *tarTally) finish() error {
	if t.hn != 0 || t.skip != 0 {
		return fmt.Errorf("the tar ends inside a member (byte %d)", t.offset)
	}
	return nil
}

// serverNowSQL reads the server's clock, in UTC.
const serverNowSQL = `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`

func parseServerNow(lines []string) (time.Time, error) {
	if len(lines) != 1 {
		return time.Time{}, fmt.Errorf("reading the server's clock: unexpected answer %q", lines)
	}
	return time.Parse(time.RFC3339Nano, lines[0])
}

// backup runs pg_basebackup into the archive and writes its record.
// startTime is the server's clock just before: the backup's start time.
func (b *pgBasebackup) backup(ctx context.Context, facts *bbFacts, startTime time.Time) (engine.Outputs, *walarchive.BaseBackup, error) {
	p, env, s := b.p, b.env, b.s
	label := walarchive.Label(startTime)
	dest := baseTarPath(b.cfg, label)
	// A failed backup leaves no directory behind either (only if empty:
	// never anything another writer put there).
	published := false
	defer func() {
		if !published {
			os.Remove(filepath.Dir(dest))
		}
	}()
	w, err := artifact.Create(ctx, env, b.cfg.WriteOptions(dest))
	if err != nil {
		return nil, nil, err
	}
	defer w.Abort()
	// The tar is read as it streams by, for the counts and the checks.
	tally := &tarTally{out: w}
	t0 := time.Now()
	res, err := proc.Run(ctx, s.Cmd(proc.Cmd{Name: p.PgBasebackup, Args: p.args(s, label), Env: s.Environ,
		Secrets: env.Secrets, Stdout: tally}))
	if err != nil {
		return nil, nil, fmt.Errorf("pg_basebackup failed, no backup written: %w", err)
	}
	if err := tally.finish(); err != nil {
		return nil, nil, fmt.Errorf("pg_basebackup's output is not a complete tar, no backup written: %w", err)
	}
	duration := time.Since(t0)
	if !tally.label {
		return nil, nil, errors.New("pg_basebackup's tar has no backup_label, no backup written")
	}
	if !tally.manifest {
		env.Log.Warn("pg_basebackup's tar has no backup_manifest (PostgreSQL before 13?): pg_verifybackup cannot check a restore")
	}
	// The clock after the stream, and the archiver's failures so far, in
	// one psql.
	before, now, err := b.archiver(ctx, serverNowSQL)
	if err != nil {
		return nil, nil, err
	}
	stopTime, err := parseServerNow(now)
	if err != nil {
		return nil, nil, err
	}
	start, stop, tli, err := parseBasebackupLog(res.Stderr)
	if err != nil {
		return nil, nil, fmt.Errorf("no backup written: %w", err)
	}
	rec := &walarchive.BaseBackup{
		Label: label, Timeline: tli, StartLSN: start.String(), StopLSN: stop.String(),
		StartWAL: walarchive.SegmentName(tli, start, facts.segSize),
		// The backup ends inside the segment before stop when stop is a
		// segment's first byte (as PostgreSQL's own wait computes it).
		StopWAL:   walarchive.SegmentName(tli, stop-1, facts.segSize),
		StartTime: startTime, StopTime: stopTime, WALSegmentSize: facts.segSize,
		WALIncluded: p.WALMethod == "fetch", ServerVersion: facts.version, SystemID: facts.systemID,
		Compression: b.cfg.Compress, Encrypted: b.cfg.Encrypt != nil, Dir: filepath.Dir(dest),
	}
	if rec.Compression == "" {
		rec.Compression = "zstd"
	}
	// PITR past the backup needs its last segment in the archive: the tar
	// is published only once it is there.
	env.Log.Info("base backup streamed, waiting for its last WAL segment to be archived", "stop_wal", rec.StopWAL)
	if _, err := b.waitArchived(ctx, rec.StopWAL, before); err != nil {
		return nil, nil, fmt.Errorf("no backup written: the backup's last WAL segment: %w", err)
	}
	committed, err := w.Commit()
	if err != nil {
		return nil, nil, err
	}
	published = true
	rec.File, rec.Size, rec.SHA256 = filepath.Base(committed.Path), committed.Size, committed.SHA256
	if err := walarchive.WriteBackupRecord(rec); err != nil {
		return nil, nil, fmt.Errorf("backup %s: the tar is written but its backup.json is not, so the backup counts as incomplete: %w", label, err)
	}
	counts := map[string]int64{"files": tally.files, "bytes": tally.bytes}
	a := committed.Record
	a.Source = p.source(env, rec, b.cfg)
	a.Counts = counts
	if v, err := proc.Run(ctx, proc.Cmd{Name: p.PgBasebackup, Args: []string{"--version"}, Env: s.Environ, Secrets: env.Secrets}); err == nil {
		a.Tools = map[string]string{"pg_basebackup": strings.TrimSpace(v.Stdout)}
	}
	env.Log.Info("base backup complete", "label", label, "start_lsn", rec.StartLSN, "stop_lsn", rec.StopLSN,
		"timeline", tli, "files", tally.files, "stream_ms", duration.Milliseconds())
	out := committed.Outputs()
	out["label"] = label
	out["backup_dir"] = rec.Dir
	out["start_lsn"], out["stop_lsn"] = rec.StartLSN, rec.StopLSN
	out["start_wal"], out["stop_wal"] = rec.StartWAL, rec.StopWAL
	out["timeline"] = int64(tli)
	out["start_time"] = rec.StartTime.Format(time.RFC3339Nano)
	out["stop_time"] = rec.StopTime.Format(time.RFC3339Nano)
	out["server_version"] = int64(facts.version)
	out["system_identifier"] = facts.systemID
	out["wal_segment_size"] = facts.segSize
	out["duration_ms"] = duration.Milliseconds()
	out["counts"] = counts
	return out, rec, nil
}

// source describes the backup for the manifest, without secrets.
func (p *PgBasebackupParams) source(env *engine.Env, rec *walarchive.BaseBackup, cfg *walarchive.Config) map[string]string {
	src := p.Conn.Source(env)
	for k, v := range map[string]string{"kind": "postgres-basebackup",
		"archive_config": cfg.File, "archive_dir": cfg.Dir, "label": rec.Label,
		"timeline": strconv.FormatUint(uint64(rec.Timeline), 10), "start_lsn": rec.StartLSN, "stop_lsn": rec.StopLSN,
		"start_time": rec.StartTime.Format(time.RFC3339Nano), "stop_time": rec.StopTime.Format(time.RFC3339Nano),
		"server_version": strconv.Itoa(rec.ServerVersion), "system_identifier": rec.SystemID,
		"wal_method": p.WALMethod} {
		if v != "" {
			src[k] = v
		}
	}
	return src
}

// pgBasebackupInverse restores a base backup with pitr-restore, from the
// archive its record names (its tar is read there, by label). A drill
// extracts it into the scratch directory and compares the file count
// without starting a server; a restore recovers all archived WAL into the
// data_dir the operator names (the plan's restore section), keeping the
// backup's archive settings, and leaves starting it to the operator.
func pgBasebackupInverse(a engine.ArtifactRecord, t engine.RestoreTarget) (map[string]any, error) {
	src := a.Source
	if src["kind"] != "postgres-basebackup" || src["archive_config"] == "" || src["label"] == "" {
		return nil, fmt.Errorf("base backup %s: no archive config and label recorded", a.Path)
	}
	with := map[string]any{"archive_config": src["archive_config"], "backup": src["label"]}
	if t.Scratch {
		if t.Dir == "" {
			return nil, errors.New("scratch restore of a base backup needs a directory")
		}
		with["data_dir"] = t.Dir
		with["target_immediate"] = true
	} else {
		if t.Dir != "" {
			with["data_dir"] = t.Dir
		}
		with["archive_mode"] = "preserve"
	}
	artifact.AddReadKeys(with, t)
	return with, nil
}
