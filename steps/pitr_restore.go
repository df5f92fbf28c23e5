package steps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/childenv"
	"github.com/planrun/planrun/steps/internal/proc"
	"github.com/planrun/planrun/steps/internal/tarball"
	"github.com/planrun/planrun/steps/walarchive"
)

// PitrRestoreParams are the params of pitr-restore.
type PitrRestoreParams struct {
	ArchiveConfig   string          `yaml:"archive_config" required:"true" doc:"WAL archive config file: the archive holding the base backups and WAL (restore_command's wal-fetch reads it too)"`
	DataDir         string          `yaml:"data_dir" required:"true" doc:"data directory to restore into: must be missing or empty (created 0700)"`
	TargetTime      string          `yaml:"target_time" doc:"recover to this moment (recovery_target_time), with a zone: 2026-12-01T05:30:00Z or '2026-12-01 05:30:00+00'"`
	TargetLSN       string          `yaml:"target_lsn" doc:"recover to this WAL location (recovery_target_lsn), e.g. 0/3000060"`
	TargetName      string          `yaml:"target_name" doc:"recover to this named restore point (pg_create_restore_point; recovery_target_name)"`
	TargetImmediate bool            `yaml:"target_immediate" doc:"stop as soon as the base backup is consistent (recovery_target = 'immediate')"`
	Backup          string          `yaml:"backup" doc:"label of the base backup to restore; default: the newest one ending before target_time/target_lsn, or the newest one for the other targets"`
	TargetAction    string          `yaml:"target_action" enum:"promote|pause|shutdown" default:"promote" doc:"what the server does at the target (recovery_target_action); with no target it recovers all archived WAL and promotes"`
	TargetInclusive bool            `yaml:"target_inclusive" default:"true" doc:"stop just after (true) or just before (false) the target time or LSN (recovery_target_inclusive)"`
	TargetTimeline  string          `yaml:"target_timeline" default:"latest" doc:"timeline to recover along: latest, current (the backup's) or a number (recovery_target_timeline)"`
	ArchiveMode     string          `yaml:"archive_mode" enum:"off|preserve" default:"off" doc:"off: the restored server archives nothing (a drill must not push its new timeline into the production archive); preserve: keep the backup's archive settings, for a server that replaces the source"`
	Planrun         string          `yaml:"planrun" doc:"planrun program in restore_command (default: this planrun's own path)"`
	Start           bool            `yaml:"start" doc:"start the server with pg_ctl and wait until recovery reached the target (else: leave starting it to the operator)"`
	Port            int             `yaml:"port" doc:"port of the started server (required with start)"`
	SocketDir       string          `yaml:"socket_dir" doc:"unix socket directory of the started server (required with start); it listens on no TCP address"`
	RunAs           string          `yaml:"run_as" doc:"owner of the data directory and user running pg_ctl and psql (when planrun runs as root; default postgres)"`
	User            string          `yaml:"user" doc:"database role for the checks after recovery (default: libpq's, the OS user)"`
	RecoveryTimeout engine.Duration `yaml:"recovery_timeout" default:"1h" doc:"how long recovery may take once the server is started"`
	CheckQuery      string          `yaml:"check_query" doc:"SQL run on the recovered server (database postgres unless check_database), its output in outputs.check_result"`
	CheckDatabase   string          `yaml:"check_database" default:"postgres" doc:"database of check_query"`
	CheckExpect     string          `yaml:"check_expect" doc:"fail unless check_query's output (psql -At, trimmed) equals this"`
	StopAfter       bool            `yaml:"stop_after" doc:"stop the server (pg_ctl stop -m fast) after the checks (drills)"`
	RemoveAfter     bool            `yaml:"remove_after" doc:"remove the data directory once every check passed (drills; with start: true it needs stop_after; a failed one is left for inspection)"`
	PgCtl           string          `yaml:"pg_ctl" default:"pg_ctl" tool:"true" doc:"pg_ctl program (the backup's major version)"`
	Psql            string          `yaml:"psql" default:"psql" tool:"true" doc:"psql program"`
	// Keys to decrypt an encrypted base backup; default: the config's.
	artifact.ReadOptions `yaml:",inline"`
}

// Validate checks the target and start rules.
func (p *PitrRestoreParams) Validate() error {
	n := 0
	for _, set := range []bool{p.TargetTime != "", p.TargetLSN != "", p.TargetName != "", p.TargetImmediate} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("give at most one of target_time, target_lsn, target_name and target_immediate (none: recover all archived WAL)")
	}
	if p.TargetTime != "" && !strings.Contains(p.TargetTime, "${{") {
		if _, err := parseTargetTime(p.TargetTime); err != nil {
			return fmt.Errorf("target_time: %w", err)
		}
	}
	if p.TargetLSN != "" && !strings.Contains(p.TargetLSN, "${{") {
		if _, err := walarchive.ParseLSN(p.TargetLSN); err != nil {
			return fmt.Errorf("target_lsn: %w", err)
		}
	}
	switch tl := p.TargetTimeline; {
	case tl == "latest", tl == "current", strings.Contains(tl, "${{"):
	default:
		if v, err := strconv.ParseUint(tl, 10, 32); err != nil || v == 0 {
			return fmt.Errorf("target_timeline: %q is not latest, current or a timeline number", tl)
		}
	}
	if p.Start && (p.Port == 0 || p.SocketDir == "") {
		return errors.New("start: true needs port and socket_dir (the started server must not collide with a running one)")
	}
	if !p.Start && (p.StopAfter || p.CheckQuery != "") {
		return errors.New("stop_after and check_query need start: true")
	}
	if p.RemoveAfter && p.Start && !p.StopAfter {
		return errors.New("remove_after with start: true needs stop_after: true")
	}
	if p.CheckQuery != "" && p.TargetAction == "shutdown" {
		return errors.New("check_query: the server shuts down at the target with target_action: shutdown; use promote or pause")
	}
	if p.CheckExpect != "" && p.CheckQuery == "" {
		return errors.New("check_expect needs check_query")
	}
	return nil
}

// targetTimeLayouts are the forms target_time accepts; all carry a zone:
// a time without one would be read in the server's TimeZone.
var targetTimeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07"}

func parseTargetTime(s string) (time.Time, error) {
	for _, l := range targetTimeLayouts {
		if t, err := time.Parse(l, strings.TrimSpace(s)); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time with a zone (e.g. 2026-12-01T05:30:00Z or 2026-12-01 05:30:00+00)", s)
}

// recoveryTarget is the parsed target.
type recoveryTarget struct {
	kind string // time, lsn, name, immediate, latest
	time time.Time
	lsn  walarchive.LSN
	name string
}

func (p *PitrRestoreParams) target() (recoveryTarget, error) {
	switch {
	case p.TargetTime != "":
		t, err := parseTargetTime(p.TargetTime)
		if err != nil {
			return recoveryTarget{}, fmt.Errorf("target_time: %w", err)
		}
		return recoveryTarget{kind: "time", time: t}, nil
	case p.TargetLSN != "":
		l, err := walarchive.ParseLSN(p.TargetLSN)
		if err != nil {
			return recoveryTarget{}, fmt.Errorf("target_lsn: %w", err)
		}
		return recoveryTarget{kind: "lsn", lsn: l}, nil
	case p.TargetName != "":
		return recoveryTarget{kind: "name", name: p.TargetName}, nil
	case p.TargetImmediate:
		return recoveryTarget{kind: "immediate"}, nil
	}
	return recoveryTarget{kind: "latest"}, nil
}

func (t recoveryTarget) String() string {
	switch t.kind {
	case "time":
		return "time " + t.time.UTC().Format(time.RFC3339Nano)
	case "lsn":
		return "lsn " + t.lsn.String()
	case "name":
		return "restore point " + strconv.Quote(t.name)
	}
	return t.kind
}

// chooseBackup picks the base backup to restore from (backups oldest
// first): the newest that ends before the target, or the one labelled.
func chooseBackup(backups []walarchive.BaseBackup, t recoveryTarget, label string) (walarchive.BaseBackup, error) {
	if len(backups) == 0 {
		return walarchive.BaseBackup{}, errors.New("the archive holds no complete base backup")
	}
	usable := func(b walarchive.BaseBackup) error {
		switch t.kind {
		case "time":
			if b.StopTime.After(t.time) {
				return fmt.Errorf("backup %s ended at %s, after the target time %s", b.Label, b.StopTime.UTC().Format(time.RFC3339Nano), t.time.UTC().Format(time.RFC3339Nano))
			}
		case "lsn":
			stop, err := walarchive.ParseLSN(b.StopLSN)
			if err != nil {
				return fmt.Errorf("backup %s: stop_lsn: %w", b.Label, err)
			}
			if stop > t.lsn {
				return fmt.Errorf("backup %s ended at LSN %s, after the target LSN %s", b.Label, b.StopLSN, t.lsn)
			}
		}
		return nil
	}
	if label != "" {
		for _, b := range backups {
			if b.Label == label {
				if err := usable(b); err != nil {
					return b, fmt.Errorf("backup: %w: it cannot recover to that target", err)
				}
				return b, nil
			}
		}
		names := make([]string, len(backups))
		for i, b := range backups {
			names[i] = b.Label
		}
		return walarchive.BaseBackup{}, fmt.Errorf("backup: no complete base backup %q in the archive (it has %s)", label, strings.Join(names, ", "))
	}
	for i := len(backups) - 1; i >= 0; i-- {
		if usable(backups[i]) == nil {
			return backups[i], nil
		}
	}
	oldest := backups[0]
	if t.kind == "time" {
		return oldest, fmt.Errorf("target time %s is before the oldest base backup's stop time %s (backup %s): nothing in the archive can recover to it",
			t.time.UTC().Format(time.RFC3339Nano), oldest.StopTime.UTC().Format(time.RFC3339Nano), oldest.Label)
	}
	return oldest, fmt.Errorf("target LSN %s is before the oldest base backup's stop LSN %s (backup %s): nothing in the archive can recover to it",
		t.lsn, oldest.StopLSN, oldest.Label)
}

// timelineHistory reads a timeline's archived history; found is false when
// the archive has none.
type timelineHistory func(tli uint32) (entries []walarchive.HistoryEntry, found bool, err error)

// checkTimeline refuses a recovery_target_timeline whose history does not
// pass through the backup: it must descend from the backup's timeline and
// leave it only after the backup ended. It returns the timeline recovery
// will follow.
func checkTimeline(b walarchive.BaseBackup, want string, history timelineHistory) (uint32, error) {
	var tli uint32
	switch want {
	case "current":
		return b.Timeline, nil
	case "latest":
		// As PostgreSQL finds the newest timeline: probe history files
		// upwards until one is missing.
		tli = b.Timeline
		for probe := b.Timeline + 1; ; probe++ {
			_, found, err := history(probe)
			if err != nil {
				return 0, err
			}
			if !found {
				break
			}
			tli = probe
		}
	default:
		v, err := strconv.ParseUint(want, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("target_timeline: %q is not latest, current or a number", want)
		}
		tli = uint32(v)
	}
	if tli == b.Timeline {
		return tli, nil
	}
	entries, found, err := history(tli)
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("timeline %d has no history file in the archive: recovery cannot follow it", tli)
	}
	stop, err := walarchive.ParseLSN(b.StopLSN)
	if err != nil {
		return 0, fmt.Errorf("backup %s: stop_lsn: %w", b.Label, err)
	}
	start, _ := walarchive.ParseLSN(b.StartLSN)
	for _, e := range entries {
		if e.TLI != b.Timeline {
			continue
		}
		switch {
		case e.Switch < start:
			return 0, fmt.Errorf("timeline %d branched off timeline %d at %s, before base backup %s started (%s): that backup cannot recover along it; choose an older backup or another target_timeline",
				tli, b.Timeline, e.Switch, b.Label, b.StartLSN)
		case e.Switch < stop:
			return 0, fmt.Errorf("timeline %d branched off timeline %d at %s, while base backup %s was running (%s to %s): that backup cannot recover along it",
				tli, b.Timeline, e.Switch, b.Label, b.StartLSN, b.StopLSN)
		}
		return tli, nil
	}
	return 0, fmt.Errorf("timeline %d does not descend from timeline %d of base backup %s (its history: %s)", tli, b.Timeline, b.Label, describeHistory(entries))
}

func describeHistory(entries []walarchive.HistoryEntry) string {
	if len(entries) == 0 {
		return "empty"
	}
	parts := make([]string, len(entries))
	for i, e := range entries {
		parts[i] = fmt.Sprintf("%d left at %s", e.TLI, e.Switch)
	}
	return strings.Join(parts, ", ")
}

// archiveHistory reads history files from the archive.
func archiveHistory(ctx context.Context, cfg *walarchive.Config) timelineHistory {
	return func(tli uint32) ([]walarchive.HistoryEntry, bool, error) {
		h, err := walarchive.History(ctx, cfg, tli)
		if errors.Is(err, walarchive.ErrNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("history of timeline %d: %w", tli, err)
		}
		return h, true, nil
	}
}

// confQuote quotes a postgresql.conf string value.
func confQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// restoreCommand is the shell command PostgreSQL runs to fetch a WAL file
// (%f, %p are its placeholders, so a literal % is doubled).
func restoreCommand(planrun, config string) string {
	pct := strings.NewReplacer("%", "%%")
	return pct.Replace(proc.Quote(planrun)) + " wal-fetch --config " + pct.Replace(proc.Quote(config)) + " %f %p"
}

// recoverySettings are the lines pitr-restore appends to postgresql.auto.conf.
func recoverySettings(p *PitrRestoreParams, t recoveryTarget, planrun, config string) []string {
	lines := []string{"restore_command = " + confQuote(restoreCommand(planrun, config))}
	switch t.kind {
	case "time":
		lines = append(lines, "recovery_target_time = "+confQuote(t.time.UTC().Format("2006-01-02 15:04:05.999999")+"+00"))
	case "lsn":
		lines = append(lines, "recovery_target_lsn = "+confQuote(t.lsn.String()))
	case "name":
		lines = append(lines, "recovery_target_name = "+confQuote(t.name))
	case "immediate":
		lines = append(lines, "recovery_target = 'immediate'")
	}
	if t.kind == "time" || t.kind == "lsn" {
		lines = append(lines, "recovery_target_inclusive = "+map[bool]string{true: "on", false: "off"}[p.TargetInclusive])
	}
	if t.kind != "latest" {
		lines = append(lines, "recovery_target_action = "+confQuote(p.TargetAction))
	}
	lines = append(lines, "recovery_target_timeline = "+confQuote(p.TargetTimeline))
	if p.ArchiveMode == "off" {
		lines = append(lines, "archive_mode = off")
	}
	return lines
}

// PitrRestore restores a base backup and configures recovery to a target.
var PitrRestore = engine.Def[PitrRestoreParams]{
	Name:    "pitr-restore",
	Summary: "restore a PostgreSQL base backup from the WAL archive into an empty data directory and recover to a time, LSN, restore point or the end of the archive",
	Doc: `Point-in-time recovery from the archive that pg_basebackup and
planrun wal-push fill. The step picks the base backup: with target_time, the
newest complete backup whose stop time (server clock) is not after it; with
target_lsn, the newest whose stop LSN is not after it; with target_name,
target_immediate or no target (latest: all archived WAL), the newest backup;
backup: <label> picks one explicitly (it must still end before a time or LSN
target). Recovery to a time or LSN stops at the first commit past it, so
the archive must hold WAL beyond the target (PostgreSQL otherwise fails
with "recovery ended before configured recovery target was reached"). A
target before the oldest backup is refused. The timeline to
follow (target_timeline, default latest: the newest timeline whose history
file is archived) must descend from the backup's timeline and have left it
only after the backup ended; otherwise the step refuses before writing
anything.

data_dir must be missing or empty (a non-empty one is refused, never
merged). The tar is decrypted (identity_file/passphrase_file, or the
config's), decompressed, checked against its .sha256 sidecar and the sha256
and file count in backup.json, and extracted; the directory is 0700 and,
when planrun runs as root, owned by run_as (default postgres). Then
restore_command = '<planrun> wal-fetch --config <archive_config> %f %p',
the recovery target, recovery_target_action, recovery_target_inclusive,
recovery_target_timeline and (archive_mode: off, the default) archive_mode =
off are appended to postgresql.auto.conf and recovery.signal is created.
The server's user must be able to read the archive config, the archive and
its identity file, since PostgreSQL runs wal-fetch. A backup of a cluster
whose postgresql.conf/pg_hba.conf live elsewhere (Debian's /etc/postgresql)
gets a minimal postgresql.conf and a pg_hba.conf allowing local (peer)
connections only.

Without start: the operator starts the server (pg_ctl start -D data_dir,
with the port and sockets they want) and watches its log for "recovery
stopping". With start: true the step runs pg_ctl start as run_as on port and
socket_dir (no TCP), logging to <data_dir>/pitr-restore.log, and waits up to
recovery_timeout until recovery is over: promoted (pg_is_in_recovery false),
paused (pg_is_wal_replay_paused) or shut down, per target_action. It reports
the LSN and commit time recovery reached and the server's "recovery
stopping ..." line; check_query then runs (check_expect must match its
output), and stop_after stops the server. A server that fails to start or
to reach its target is stopped and its log tail reported; the data
directory is left for inspection.`,
	Kind: engine.KindOther,
	Outputs: []engine.Output{
		{Name: "data_dir", Doc: "the restored data directory"},
		{Name: "backup", Doc: "label of the base backup restored"},
		{Name: "backup_stop_time", Doc: "its stop time (RFC 3339)"},
		{Name: "backup_stop_lsn", Doc: "its stop LSN"},
		{Name: "target", Doc: "the recovery target (time ..., lsn ..., restore point ..., immediate, latest)"},
		{Name: "timeline", Doc: "timeline recovery follows (the new one after a promotion)"},
		{Name: "files", Doc: "files extracted"},
		{Name: "bytes", Doc: "file bytes extracted"},
		{Name: "counts", Doc: "files and bytes extracted, as pg_basebackup counted them in the tar (files, bytes): a drill compares them"},
		{Name: "state", Doc: "not started, promoted, paused or shut down"},
		{Name: "reached_lsn", Doc: "last WAL location replayed (pg_last_wal_replay_lsn, or the log's redo done)"},
		{Name: "reached_time", Doc: "commit time of the last transaction replayed (pg_last_xact_replay_timestamp, or the log's)"},
		{Name: "recovery_stop", Doc: "the server's \"recovery stopping ...\" log line, if it logged one"},
		{Name: "check_result", Doc: "output of check_query"},
		{Name: "duration_ms", Doc: "duration of the whole step in milliseconds"},
	},
	Example: "archive_config: /etc/planrun/wal.yaml\ndata_dir: /var/lib/postgresql/scratch/pitr\ntarget_time: \"2026-12-01T05:30:00Z\"\nidentity_file: /etc/planrun/age.key\nstart: true\nport: 54329\nsocket_dir: /tmp\ncheck_query: SELECT count(*) FROM orders\nstop_after: true",
	Preview: func(env *engine.Env, p *PitrRestoreParams) []string {
		t, err := p.target()
		if err != nil {
			// An earlier step's output, unknown in a dry run.
			t = recoveryTarget{kind: "<unknown until run>"}
		}
		planrun := p.Planrun
		if planrun == "" {
			planrun, _ = os.Executable()
		}
		which := "the one for target " + t.String()
		if p.Backup != "" {
			which = "backup " + p.Backup
		}
		out := []string{
			fmt.Sprintf("read: base backups in the archive of %s; choose %s", p.ArchiveConfig, which),
			"check: " + p.DataDir + " is missing or empty; timeline " + p.TargetTimeline + " passes through the backup",
			"write: files under " + p.DataDir + " (0700) from the backup's tar, checked against its sha256 and file count",
			"append to " + filepath.Join(p.DataDir, "postgresql.auto.conf") + ": " + strings.Join(recoverySettings(p, t, planrun, p.ArchiveConfig), "; "),
			"write: " + filepath.Join(p.DataDir, "recovery.signal"),
		}
		if p.Start {
			r := &pitrRun{p: p, env: env}
			if err := r.owner(); err != nil {
				out = append(out, "refuse: "+err.Error())
			}
			out = append(out, "run: "+r.commandLine(r.pgCtl("start", "-w", "-t", strconv.Itoa(int(time.Duration(p.RecoveryTimeout).Seconds())),
				"-l", filepath.Join(p.DataDir, pitrLogName), "-o", r.serverOptions())),
				"wait ≤"+time.Duration(p.RecoveryTimeout).String()+": recovery "+t.String()+", then "+p.TargetAction)
			if p.CheckQuery != "" {
				out = append(out, "run: "+r.commandLine(r.psql(p.CheckDatabase, p.CheckQuery)))
			}
			if p.StopAfter {
				out = append(out, "run: "+r.commandLine(r.pgCtl("stop", "-m", "fast", "-w")))
			}
			if p.RemoveAfter {
				out = append(out, "remove: "+p.DataDir+" (when every check passed)")
			}
		}
		return out
	},
	Run: func(ctx context.Context, env *engine.Env, p *PitrRestoreParams) (engine.Outputs, error) {
		r := &pitrRun{p: p, env: env}
		return r.run(ctx)
	},
}

const pitrLogName = "pitr-restore.log"

// pitrRun is one run of pitr-restore.
type pitrRun struct {
	p   *PitrRestoreParams
	env *engine.Env
	// uid/gid own the data directory (-1: leave as extracted).
	uid, gid int
	asUser   string // run_as when running as root, else ""
}

func (r *pitrRun) run(ctx context.Context) (engine.Outputs, error) {
	p, env := r.p, r.env
	t0 := time.Now()
	t, err := p.target()
	if err != nil {
		return nil, err
	}
	cfg, err := walarchive.LoadConfig(p.ArchiveConfig)
	if err != nil {
		return nil, fmt.Errorf("archive_config: %w", err)
	}
	// The step's keys win over the config's, for the backup, the history
	// files and (through a config of their own) restore_command.
	ownKeys := (p.IdentityFile != "" || p.PassphraseFile != "") && p.ReadOptions != cfg.ReadOptions
	if ownKeys {
		c := *cfg
		c.ReadOptions = p.ReadOptions
		cfg = &c
	}
	if err := checkEmptyDataDir(p.DataDir); err != nil {
		return nil, err
	}
	if err := r.owner(); err != nil {
		return nil, err
	}
	backups, err := walarchive.Backups(cfg)
	if err != nil {
		return nil, fmt.Errorf("listing base backups: %w", err)
	}
	b, err := chooseBackup(backups, t, p.Backup)
	if err != nil {
		return nil, err
	}
	tli, err := checkTimeline(b, p.TargetTimeline, archiveHistory(ctx, cfg))
	if err != nil {
		return nil, err
	}
	env.Log.Info("restoring base backup", "backup", b.Label, "stop_time", b.StopTime, "stop_lsn", b.StopLSN, "target", t.String(), "timeline", tli)
	planrun := p.Planrun
	if planrun == "" {
		if planrun, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("planrun: finding this program for restore_command: %w (give planrun:)", err)
		}
	}
	cfgPath, err := filepath.Abs(cfg.File)
	if err != nil {
		return nil, err
	}
	st, err := r.extract(ctx, cfg, b)
	if err != nil {
		return nil, err
	}
	if ownKeys {
		if cfgPath, err = writeFetchConfig(p.DataDir, cfg); err != nil {
			return nil, err
		}
	}
	if err := r.configure(recoverySettings(p, t, planrun, cfgPath), b); err != nil {
		return nil, err
	}
	out := engine.Outputs{"data_dir": p.DataDir, "backup": b.Label, "backup_stop_time": b.StopTime.UTC().Format(time.RFC3339Nano),
		"backup_stop_lsn": b.StopLSN, "target": t.String(), "timeline": int64(tli), "files": int64(st.Files), "bytes": st.Bytes,
		"state": "not started", "reached_lsn": "", "reached_time": "", "recovery_stop": "", "check_result": "",
		"counts": map[string]int64{"files": int64(st.Files), "bytes": st.Bytes}}
	if env.Stats != nil {
		env.Stats.BytesOut.Add(st.Bytes)
	}
	if p.Start {
		if err := r.startAndWait(ctx, t, out); err != nil {
			return nil, err
		}
	} else if p.RemoveAfter {
		if err := os.RemoveAll(p.DataDir); err != nil {
			return nil, fmt.Errorf("remove_after: %w", err)
		}
	} else {
		env.Log.Info("restored; start the server to recover", "data_dir", p.DataDir, "hint", "pg_ctl start -D "+p.DataDir+", then watch its log for \"recovery stopping\"")
	}
	out["duration_ms"] = time.Since(t0).Milliseconds()
	return out, nil
}

// checkEmptyDataDir refuses a data directory that holds anything.
func checkEmptyDataDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data_dir %s: %w", dir, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("data_dir %s is not empty (it holds %s%s): refusing to restore over it; give a missing or empty directory",
			dir, ents[0].Name(), map[bool]string{true: ", ...", false: ""}[len(ents) > 1])
	}
	return nil
}

// owner resolves who owns the data directory and runs the server.
func (r *pitrRun) owner() error {
	r.uid, r.gid = -1, -1
	if os.Geteuid() != 0 {
		if r.p.RunAs != "" {
			if u, err := user.Current(); err != nil || u.Username != r.p.RunAs {
				return fmt.Errorf("run_as: %s needs planrun to run as root", r.p.RunAs)
			}
		}
		return nil
	}
	name := r.p.RunAs
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("run_as: %w (as root, the data directory must belong to the server's user)", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("run_as: %s has no numeric uid/gid", name)
	}
	if uid == 0 {
		return errors.New("run_as: PostgreSQL refuses to run as root; give its user (e.g. postgres)")
	}
	r.uid, r.gid, r.asUser = uid, gid, name
	return nil
}

// mkdirOwned creates dir and its missing parents 0700, owned by the
// server's user: the server must reach the data directory and its socket
// through the directories the step made.
func (r *pitrRun) mkdirOwned(dir string) error {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !os.IsNotExist(err) {
			return err
		}
		missing = append(missing, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o700); err != nil && !os.IsExist(err) {
			return err
		}
		if r.uid >= 0 {
			if err := os.Chown(missing[i], r.uid, r.gid); err != nil {
				return err
			}
		}
	}
	return nil
}

// extract unpacks the backup's tar into the data directory and checks it
// against the backup's record.
func (r *pitrRun) extract(ctx context.Context, cfg *walarchive.Config, b walarchive.BaseBackup) (tarball.Stats, error) {
	p := r.p
	var st tarball.Stats
	path := filepath.Join(b.Dir, b.File)
	keys := p.ReadOptions
	if keys.IdentityFile == "" && keys.PassphraseFile == "" {
		keys = cfg.ReadOptions
	}
	if b.SHA256 != "" {
		if side, err := artifact.ReadSidecar(path); err == nil && side != b.SHA256 {
			return st, fmt.Errorf("backup %s: %s.sha256 (%s) disagrees with backup.json (%s)", b.Label, path, side[:12], b.SHA256[:12])
		}
	}
	rd, err := artifact.OpenWith(ctx, r.env, path, keys, artifact.Plain|artifact.VerifySidecar|artifact.HashRaw)
	if err != nil {
		return st, fmt.Errorf("backup %s: %w", b.Label, err)
	}
	defer rd.Close()
	if err := r.mkdirOwned(p.DataDir); err != nil {
		return st, fmt.Errorf("data_dir: %w", err)
	}
	if err := os.Chmod(p.DataDir, 0o700); err != nil {
		return st, fmt.Errorf("data_dir: %w", err)
	}
	st, err = tarball.Extract(ctx, rd, p.DataDir, tarball.ExtractOptions{Log: r.env.Log})
	if err != nil {
		return st, fmt.Errorf("backup %s: extracting %s into %s: %w", b.Label, path, p.DataDir, err)
	}
	if _, err := io.Copy(io.Discard, rd); err != nil {
		return st, fmt.Errorf("backup %s: after the tar: %w", b.Label, err)
	}
	if b.SHA256 != "" && rd.SHA256() != b.SHA256 {
		return st, fmt.Errorf("backup %s: %s has sha256 %s, backup.json says %s", b.Label, path, rd.SHA256()[:12], b.SHA256[:12])
	}
	r.env.Log.Info("base backup extracted", "files", st.Files, "bytes", st.Bytes, "data_dir", p.DataDir)
	return st, nil
}

// fetchConfigName is the archive config pitr-restore writes into the data
// directory when the step's keys are not the config's: wal-fetch, run by
// the server, needs them too.
const fetchConfigName = "planrun-wal-fetch.yaml"

func writeFetchConfig(dataDir string, cfg *walarchive.Config) (string, error) {
	abs := func(p string) (string, error) {
		if p == "" {
			return "", nil
		}
		return filepath.Abs(p)
	}
	dir, err := abs(cfg.Dir)
	if err != nil {
		return "", err
	}
	m := map[string]string{"dir": dir}
	if m["identity_file"], err = abs(cfg.IdentityFile); err != nil {
		return "", err
	}
	if m["passphrase_file"], err = abs(cfg.PassphraseFile); err != nil {
		return "", err
	}
	for k, v := range m {
		if v == "" {
			delete(m, k)
		}
	}
	body, err := yaml.Marshal(m)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dataDir, fetchConfigName)
	text := "# written by planrun pitr-restore: " + cfg.File + " with the restore's keys, for restore_command (wal-fetch)\n" + string(body)
	if _, err := walarchive.ParseConfig(path, []byte(text)); err != nil {
		return "", fmt.Errorf("the archive config for wal-fetch: %w", err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// minimalConf are written when the backup has no such file (the cluster
// kept its configuration outside the data directory).
var minimalConf = map[string]string{
	"postgresql.conf": "# written by planrun pitr-restore: the base backup had no postgresql.conf\n",
	"pg_hba.conf":     "# written by planrun pitr-restore: the base backup had no pg_hba.conf\nlocal all all peer\n",
	"pg_ident.conf":   "",
}

// configure writes the recovery settings and recovery.signal and hands
// the directory to its owner.
func (r *pitrRun) configure(settings []string, b walarchive.BaseBackup) error {
	dir := r.p.DataDir
	names := make([]string, 0, len(minimalConf))
	for n := range minimalConf {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := filepath.Join(dir, n)
		if _, err := os.Lstat(f); os.IsNotExist(err) {
			if err := os.WriteFile(f, []byte(minimalConf[n]), 0o600); err != nil {
				return err
			}
			r.env.Log.Warn("the base backup has no "+n+"; wrote a minimal one", "file", f)
		}
	}
	auto := filepath.Join(dir, "postgresql.auto.conf")
	f, err := os.OpenFile(auto, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	text := fmt.Sprintf("\n# planrun pitr-restore %s: recovery from base backup %s\n%s\n",
		time.Now().UTC().Format(time.RFC3339), b.Label, strings.Join(settings, "\n"))
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", auto, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", auto, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", auto, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "recovery.signal"), nil, 0o600); err != nil {
		return err
	}
	// A standby.signal would make it a standby, never reaching the target.
	if err := os.Remove(filepath.Join(dir, "standby.signal")); err != nil && !os.IsNotExist(err) {
		return err
	}
	if r.uid >= 0 {
		err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, r.uid, r.gid)
		})
		if err != nil {
			return fmt.Errorf("data_dir: handing it to %s: %w", r.asUser, err)
		}
	}
	if err := artifact.SyncDir(dir); err != nil {
		return err
	}
	r.env.Log.Info("recovery configured", "file", auto, "settings", strings.Join(settings, "; "))
	return nil
}

// as wraps a command to run as the data directory's owner.
func (r *pitrRun) as(c proc.Cmd) proc.Cmd {
	// The plan's PG* variables name the source server: the restored one
	// is reached only through the explicit socket, port and role.
	c.Env = childenv.Set(childenv.Unset(append([]string(nil), r.env.Environ...),
		"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE", "PGOPTIONS", "PGDATA"), "LC_MESSAGES", "C")
	c.Secrets = r.env.Secrets
	if r.asUser == "" {
		return c
	}
	// runuser keeps the environment; the program is resolved here, in
	// the plan's PATH, not in the other user's.
	if abs, err := engine.LookPath(c.Name, c.Env); err == nil {
		c.Name = abs
	}
	c.Args = append([]string{"-u", r.asUser, "--", c.Name}, c.Args...)
	c.Name = "runuser"
	return c
}

func (r *pitrRun) commandLine(c proc.Cmd) string {
	return proc.CommandLine(r.env.Secrets, c.Name, c.Args...)
}

func (r *pitrRun) pgCtl(action string, args ...string) proc.Cmd {
	return r.as(proc.Cmd{Name: r.p.PgCtl, Args: append([]string{action, "-D", r.p.DataDir}, args...)})
}

func (r *pitrRun) psql(db, sql string) proc.Cmd {
	args := []string{"-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", r.p.SocketDir, "-p", strconv.Itoa(r.p.Port), "-d", db}
	if r.p.User != "" {
		args = append(args, "-U", r.p.User)
	}
	return r.as(proc.Cmd{Name: r.p.Psql, Args: append(args, "-c", sql)})
}

// serverOptions are postgres options for pg_ctl -o (which a shell reads):
// the port and socket asked for, no TCP, and the log on stderr so that the
// recovery lines reach pg_ctl's log file whatever the backup's settings.
func (r *pitrRun) serverOptions() string {
	return fmt.Sprintf("-p %d -k %s -c listen_addresses= -c logging_collector=off -c log_destination=stderr",
		r.p.Port, proc.Quote(r.p.SocketDir))
}

// recoveryLog is what the server's log says about recovery.
type recoveryLog struct {
	stop      string // "recovery stopping ..." message
	redoDone  string // LSN of "redo done at"
	lastXact  string // "last completed transaction was at log time ..."
	timeline  string // "selected new timeline ID: N"
	shutdown  bool   // "database system is shut down"
	fatal     string // first FATAL/PANIC message
	tailLines []string
}

var (
	logStopRE     = regexp.MustCompile(`LOG:\s+(recovery stopping .*)$`)
	logRedoRE     = regexp.MustCompile(`redo done at ([0-9A-F]+/[0-9A-F]+)`)
	logLastXactRE = regexp.MustCompile(`last completed transaction was at log time (.+)$`)
	logTimelineRE = regexp.MustCompile(`selected new timeline ID: (\d+)`)
	logFatalRE    = regexp.MustCompile(`(FATAL|PANIC):\s+(.*)$`)
)

// parseRecoveryLog reads the server log pg_ctl wrote.
func parseRecoveryLog(text string) recoveryLog {
	var l recoveryLog
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		l.tailLines = append(l.tailLines, line)
		if len(l.tailLines) > 20 {
			l.tailLines = l.tailLines[1:]
		}
		if m := logStopRE.FindStringSubmatch(line); m != nil {
			l.stop = m[1]
		}
		if m := logRedoRE.FindStringSubmatch(line); m != nil {
			l.redoDone = m[1]
		}
		if m := logLastXactRE.FindStringSubmatch(line); m != nil {
			l.lastXact = m[1]
		}
		if m := logTimelineRE.FindStringSubmatch(line); m != nil {
			l.timeline = m[1]
		}
		if strings.Contains(line, "database system is shut down") {
			l.shutdown = true
		}
		if m := logFatalRE.FindStringSubmatch(line); m != nil && l.fatal == "" {
			l.fatal = m[2]
		}
	}
	return l
}

func (r *pitrRun) readLog() recoveryLog {
	b, _ := os.ReadFile(filepath.Join(r.p.DataDir, pitrLogName))
	return parseRecoveryLog(string(b))
}

// running reports whether the postmaster of the data directory is alive.
func (r *pitrRun) running() bool {
	b, err := os.ReadFile(filepath.Join(r.p.DataDir, "postmaster.pid"))
	if err != nil {
		return false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

// failed stops a server that did not reach its target and explains why.
func (r *pitrRun) failed(what string) error {
	if r.running() {
		if _, err := proc.Run(context.Background(), r.pgCtl("stop", "-m", "immediate", "-w")); err != nil {
			r.env.Log.Warn("stopping the failed server", "err", err)
		}
	}
	l := r.readLog()
	msg := what
	if l.fatal != "" {
		msg += ": " + l.fatal
	}
	return fmt.Errorf("%s (log %s; last lines:\n%s)", msg, filepath.Join(r.p.DataDir, pitrLogName), strings.Join(l.tailLines, "\n"))
}

// startAndWait starts the server and waits until recovery is over.
func (r *pitrRun) startAndWait(ctx context.Context, t recoveryTarget, out engine.Outputs) error {
	p := r.p
	timeout := time.Duration(p.RecoveryTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := r.mkdirOwned(p.SocketDir); err != nil {
		return fmt.Errorf("socket_dir: %w", err)
	}
	logFile := filepath.Join(p.DataDir, pitrLogName)
	if err := os.WriteFile(logFile, nil, 0o600); err != nil {
		return err
	}
	if r.uid >= 0 {
		if err := os.Chown(logFile, r.uid, r.gid); err != nil {
			return err
		}
	}
	// shutdown: wait for the server to stop after its target; else for
	// pg_ctl's ready (consistent, hot standby), then for the end state.
	action := p.TargetAction
	if t.kind == "latest" {
		action = "promote"
	}
	secs := strconv.Itoa(int(timeout.Seconds()))
	_, startErr := proc.Run(ctx, r.pgCtl("start", "-w", "-t", secs, "-l", logFile, "-o", r.serverOptions()))
	if startErr != nil && action != "shutdown" {
		return r.failed("the restored server did not start: " + startErr.Error())
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	state := ""
	for state == "" {
		switch action {
		case "shutdown":
			if !r.running() {
				l := r.readLog()
				if !l.shutdown || l.stop == "" {
					return r.failed("the restored server stopped before reaching its target")
				}
				state = "shut down"
			}
		default:
			if !r.running() {
				return r.failed("the restored server stopped during recovery")
			}
			res, err := proc.Run(ctx, r.psql("postgres", "SELECT pg_is_in_recovery(), pg_is_in_recovery() AND pg_is_wal_replay_paused()"))
			if err == nil {
				f := strings.Split(strings.TrimSpace(res.Stdout), "|")
				switch {
				case len(f) == 2 && f[0] == "f":
					state = "promoted"
				case len(f) == 2 && f[1] == "t" && action == "pause":
					state = "paused"
				}
			}
		}
		if state != "" {
			break
		}
		select {
		case <-ctx.Done():
			return r.failed(fmt.Sprintf("recovery did not finish within %s (recovery_timeout)", timeout))
		case <-tick.C:
		}
	}
	out["state"] = state
	l := r.readLog()
	out["recovery_stop"] = l.stop
	out["reached_lsn"], out["reached_time"] = l.redoDone, l.lastXact
	if l.timeline != "" {
		if n, err := strconv.ParseInt(l.timeline, 10, 64); err == nil {
			out["timeline"] = n
		}
	}
	if state != "shut down" {
		res, err := proc.Run(ctx, r.psql("postgres", "SELECT coalesce(pg_last_wal_replay_lsn()::text, ''), coalesce(pg_last_xact_replay_timestamp()::text, '')"))
		if err != nil {
			return r.failed("reading where recovery stopped: " + err.Error())
		}
		if f := strings.Split(strings.TrimSpace(res.Stdout), "|"); len(f) == 2 {
			if f[0] != "" {
				out["reached_lsn"] = f[0]
			}
			if f[1] != "" {
				out["reached_time"] = f[1]
			}
		}
	}
	r.env.Log.Info("recovery finished", "state", state, "recovery_stop", l.stop, "reached_lsn", out["reached_lsn"], "reached_time", out["reached_time"])
	if p.CheckQuery != "" {
		if state == "shut down" {
			return errors.New("check_query: the server shut down at its target (target_action: shutdown); use promote or pause to query it")
		}
		res, err := proc.Run(ctx, r.psql(p.CheckDatabase, p.CheckQuery))
		if err != nil {
			return r.failed("check_query: " + err.Error())
		}
		got := strings.TrimSpace(res.Stdout)
		out["check_result"] = got
		if p.CheckExpect != "" && got != p.CheckExpect {
			if p.StopAfter {
				r.stop()
			}
			return fmt.Errorf("check_query returned %q, check_expect is %q", got, p.CheckExpect)
		}
	}
	if p.StopAfter && state != "shut down" {
		if err := r.stop(); err != nil {
			return err
		}
	}
	if p.RemoveAfter {
		if err := os.RemoveAll(p.DataDir); err != nil {
			return fmt.Errorf("remove_after: %w", err)
		}
		r.env.Log.Info("drill data directory removed", "data_dir", p.DataDir)
	}
	return nil
}

func (r *pitrRun) stop() error {
	if _, err := proc.Run(context.Background(), r.pgCtl("stop", "-m", "fast", "-w")); err != nil {
		return fmt.Errorf("stopping the restored server: %w", err)
	}
	return nil
}
