package steps

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/argv"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/childenv"
	"github.com/planrun/planrun/steps/internal/container"
	"github.com/planrun/planrun/steps/internal/pgconn"
	"github.com/planrun/planrun/steps/internal/pgsnap"
	"github.com/planrun/planrun/steps/internal/proc"
)

// PgDumpParams are the params of pg_dump.
type PgDumpParams struct {
	pgconn.Conn           `yaml:",inline"`
	Format                string   `yaml:"format" enum:"custom|plain|tar" default:"custom" doc:"pg_dump output format (directory format cannot be streamed)"`
	Schemas               []string `yaml:"schemas" doc:"dump only these schemas (pg_dump --schema, patterns allowed)"`
	ExcludeSchemas        []string `yaml:"exclude_schemas" doc:"skip these schemas (--exclude-schema)"`
	Tables                []string `yaml:"tables" doc:"dump only these tables (--table, patterns allowed)"`
	ExcludeTables         []string `yaml:"exclude_tables" doc:"skip these tables (--exclude-table)"`
	ExtraArgs             []string `yaml:"extra_args" doc:"more pg_dump options, e.g. [--no-owner, --exclude-table-data=audit_*]"`
	Counts                bool     `yaml:"counts" default:"true" doc:"count every dumped table's rows in the dump's own snapshot, for the manifest and drills; it reads each table once more, while pg_dump runs: false for databases too large for that (drills then compare checksums only)"`
	PgDump                string   `yaml:"pg_dump" default:"pg_dump" tool:"true" doc:"pg_dump program (name in PATH or path; use the server's major version or newer)"`
	Psql                  string   `yaml:"psql" default:"psql" tool:"true" doc:"psql program, used to read the server version"`
	artifact.WriteOptions `yaml:",inline"`
}

// Validate checks connection and argument rules.
func (p *PgDumpParams) Validate() error {
	if err := p.Conn.Check(); err != nil {
		return err
	}
	if err := argv.Reject("extra_args", p.ExtraArgs, "-f", "--file", "-F", "--format", "-Z", "--compress",
		"-W", "--password", "-d", "--dbname", "-h", "--host", "-U", "--username",
		"--snapshot", "--serializable-deferrable"); err != nil {
		return err
	}
	if _, err := p.selection(); err != nil {
		return err
	}
	return p.WriteOptions.Validate()
}

// selection is what the dump holds, for the row counts.
func (p *PgDumpParams) selection() (*pgsnap.Selection, error) {
	sel := &pgsnap.Selection{Schemas: p.Schemas, ExcludeSchemas: p.ExcludeSchemas, Tables: p.Tables, ExcludeTables: p.ExcludeTables}
	if err := sel.AddArgs(p.ExtraArgs); err != nil {
		return nil, fmt.Errorf("extra_args: %w", err)
	}
	if _, err := sel.Query(); err != nil {
		return nil, err
	}
	return sel, nil
}

// snapshotPsql is the snapshot session's psql (before wrapping for a
// container): pg_dump's connection, named so a DBA knows what it is.
func (p *PgDumpParams) snapshotPsql(s *pgconn.Session) proc.Cmd {
	return proc.Cmd{Name: p.Psql, Args: append(append([]string(nil), pgsnap.PsqlArgs...), s.ConnArgs("")...),
		Env: childenv.Set(s.Environ, "PGAPPNAME", pgsnap.AppName)}
}

func (p *PgDumpParams) args(s *pgconn.Session, snapshot string) []string {
	args := []string{"--format=" + p.Format, "--no-password"}
	if snapshot != "" {
		args = append(args, "--snapshot="+snapshot)
	}
	// The custom format compresses by itself; when planrun compresses too,
	// turn pg_dump's off so the data is compressed once (zstd, multi-core).
	if p.Format == "custom" && p.Compress != "none" {
		args = append(args, "--compress=0")
	}
	for _, v := range p.Schemas {
		args = append(args, "--schema="+v)
	}
	for _, v := range p.ExcludeSchemas {
		args = append(args, "--exclude-schema="+v)
	}
	for _, v := range p.Tables {
		args = append(args, "--table="+v)
	}
	for _, v := range p.ExcludeTables {
		args = append(args, "--exclude-table="+v)
	}
	args = append(args, p.ExtraArgs...)
	if s != nil {
		args = append(args, s.ConnArgs("")...)
	}
	return args
}

// PgDump streams pg_dump's output into an artifact.
var PgDump = engine.Def[PgDumpParams]{
	Name:    "pg_dump",
	Summary: "dump a PostgreSQL database with pg_dump, streamed into a compressed, encrypted artifact, with row counts taken in the dump's snapshot",
	Doc: `pg_dump's stdout is streamed through compression and encryption into
the artifact: no plaintext dump ever touches the disk. Formats: custom
(default; restore with pg_restore, selective and parallel restore possible),
plain (SQL, restore with psql) or tar. With the custom format and planrun
compression on, pg_dump runs with --compress=0 so the data is compressed once
(planrun's zstd is faster and parallel); with compress: none, pg_dump's own
compression applies. The password (password, password_env or the uri's) goes
to a 0600 PGPASSFILE in the step's private temp dir, never on a command line.
With container: (docker/podman exec -i) or compose: (docker compose exec
-T), pg_dump and psql run inside that container, connecting with libpq's
defaults there (its unix socket) unless host/port are given; their stdout
still streams into the artifact on the host. The password then crosses as
-e PGPASSWORD (the value only in the engine client's environment, never in
an argv, no file in the container); jobs and programs name things inside
the container. The snapshot session's psql also runs pg_dump --version
(psql's \!) for the record, so it costs no exec of its own. If pg_dump
exits non-zero at any point, even after streaming most of the data, the
artifact is discarded and the step fails with pg_dump's stderr.

Row counts: before the dump, a psql session (same connection arguments and
PGPASSFILE as pg_dump) begins a REPEATABLE READ transaction, exports its
snapshot and runs SELECT count(*) on every table whose rows the dump holds;
pg_dump then runs with --snapshot, so the counts (output counts, and the
manifest's rows:<schema>.<table>) are exactly what the dump contains, also
while the database is being written to. The transaction ends after pg_dump.
The tables counted follow pg_dump's rules for schemas, exclude_schemas,
tables, exclude_tables and the same options in extra_args (patterns
included, translated as pg_dump translates them; --table-and-children,
--exclude-table-data, --no-unlogged-table-data, --schema-only and --section
are followed, --filter is refused). Ordinary and partitioned tables are
counted; not counted are foreign tables, tables of extensions, and a table
with an inheritance child or partition whose rows the dump does not hold.
Counting reads every dumped table once more before the dump starts; its
locks are released (a rolled-back savepoint) before pg_dump starts, so a DDL
statement queued behind them cannot leave pg_dump waiting forever. The race
left is pg_dump's own: a table truncated or rewritten between then and
pg_dump's lock is dumped empty (a drill's count comparison shows it). A count
the role may not read (permission, or row-level security, which the counts
keep off as pg_dump does unless --enable-row-security) fails the step before
any artifact exists; pg_dump would fail on it too. A standby works (snapshot
export there needs PostgreSQL 10 or newer; the step fails otherwise).`,
	Kind: engine.KindBackup,
	Outputs: append(append([]engine.Output(nil), artifact.StandardOutputs...),
		engine.Output{Name: "server_version", Doc: "PostgreSQL server version (SHOW server_version)"},
		engine.Output{Name: "duration_ms", Doc: "dump duration in milliseconds"},
		engine.Output{Name: "format", Doc: "pg_dump format of the artifact"},
		engine.Output{Name: "counts", Doc: "rows per dumped table, rows:<schema>.<table>, counted in the dump's snapshot"},
	),
	Example: "host: db.internal\nuser: backup\npassword_env: PGPASSWORD_PROD\ndatabase: app\nformat: custom\noutput: /backups/app-${{ run.started.Format(\"20060102\") }}.dump.zst.age\nencrypt: {recipients_file: /etc/planrun/backup.pub}",
	Preview: func(env *engine.Env, p *PgDumpParams) []string {
		s := p.Conn.PreviewSession(env)
		how := " (password via PGPASSFILE)"
		if p.Conn.Target.Enabled() {
			how = " (password via the engine client's PGPASSWORD)"
		}
		return []string{
			"run: " + s.CommandLine(env, p.snapshotPsql(s)) +
				" (stdin: BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pg_export_snapshot(); \\! " + proc.Quote(p.PgDump) + " --version; SELECT count(*) per dumped table; held open during pg_dump)",
			"run: " + s.CommandLine(env, proc.Cmd{Name: p.PgDump, Args: p.args(s, "<exported snapshot>"), Env: s.Environ}) + how,
			"write: " + p.WriteOptions.Describe(),
		}
	},
	Inverse: &engine.Inverse{Type: "pg_restore", With: pgDumpInverse,
		Targets: []string{"database", "uri", "recreate_database", "clean", "create", "drop_after", "extra_args"}},
	Run: func(ctx context.Context, env *engine.Env, p *PgDumpParams) (engine.Outputs, error) {
		out, _, err := runPgDump(ctx, env, p)
		return out, err
	},
}

// runPgDump also returns the artifact's record (for tests).
func runPgDump(ctx context.Context, env *engine.Env, p *PgDumpParams) (engine.Outputs, *engine.ArtifactRecord, error) {
	sel, err := p.selection()
	if err != nil {
		return nil, nil, err
	}
	s, err := p.Conn.Session(env)
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()
	// The snapshot session also fails fast on a bad connection, before any
	// artifact exists. It is named, so a DBA who sees it idle in
	// transaction knows what it is.
	snapPsql := p.snapshotPsql(s)
	snapPsql.Secrets = env.Secrets
	snapCmd := s.Cmd(snapPsql)
	// In a container, the probe and the snapshot session each start with an
	// exec of about 0.2 s and do not need each other: they overlap. The
	// session's command is built first, so only the dump's stream takes the
	// FIFO root the probe finds.
	var probeErr error
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		probeErr = s.Probe(ctx, env)
	}()
	// Cancelling sctx stops the snapshot session (and its counts) when the
	// dump fails.
	sctx, stopSnap := context.WithCancel(ctx)
	defer stopSnap()
	snap, err := pgsnap.Open(sctx, snapCmd, sel)
	<-probed
	if err == nil {
		defer snap.Close()
	}
	// A missing container fails every exec: the probe's error names it.
	if probeErr != nil {
		return nil, nil, probeErr
	}
	if err != nil {
		return nil, nil, err
	}
	// The version is for the record: not knowing it is no reason to skip a
	// backup. The session asks for it, saving another exec in a container.
	toolVersion, err := snap.ToolVersion(p.PgDump)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot session: %w", err)
	}
	if toolVersion == "" {
		env.Log.Warn("pg_dump --version printed nothing; the record will not name its version", "program", p.PgDump)
	}
	w, err := artifact.Create(ctx, env, p.WriteOptions)
	if err != nil {
		return nil, nil, err
	}
	defer w.Abort()
	// The counts read the same snapshot as pg_dump, so they run while it
	// dumps: the backup takes max(dump, counts), not their sum.
	counted := make(chan error, 1)
	countStart := time.Now()
	if p.Counts {
		go func() { counted <- snap.Count() }()
	} else {
		counted <- nil
	}
	start := time.Now()
	_, err = proc.Run(ctx, s.Cmd(proc.Cmd{
		Name: p.PgDump, Args: p.args(s, snap.ID), Env: s.Environ, Secrets: env.Secrets,
		Stdout: w,
	}))
	if err != nil {
		// A count that fails (a table the role may not read) aborts the
		// snapshot's transaction, and pg_dump then cannot import it: the
		// count's error is the one to report. Otherwise stop the counts.
		if !strings.Contains(err.Error(), "invalid snapshot identifier") {
			stopSnap()
		}
		if cerr := <-counted; cerr != nil && !errors.Is(sctx.Err(), context.Canceled) {
			return nil, nil, fmt.Errorf("no artifact written: %w", cerr)
		}
		return nil, nil, fmt.Errorf("pg_dump failed, no artifact written: %w", err)
	}
	if err := <-counted; err != nil {
		return nil, nil, fmt.Errorf("no artifact written: %w", err)
	}
	if p.Counts {
		env.Log.Info("rows counted in the dump's snapshot", "tables", len(snap.Counts), "elapsed", time.Since(countStart).Round(time.Millisecond))
	}
	// pg_dump has its own copy of the snapshot: ending ours cannot change
	// the dump or the counts, so a failure here is only worth a warning.
	if err := snap.Close(); err != nil {
		env.Log.Warn("ending the snapshot transaction", "err", err)
	}
	res, err := w.Commit()
	if err != nil {
		return nil, nil, err
	}
	rec := res.Record
	rec.Source = p.source(env, snap)
	if toolVersion != "" {
		rec.Tools = map[string]string{"pg_dump": toolVersion}
	}
	if !sel.NoData {
		rec.Counts = maps.Clone(snap.Counts)
	}
	out := res.Outputs()
	out["server_version"] = snap.ServerVersion
	out["duration_ms"] = time.Since(start).Milliseconds()
	out["format"] = p.Format
	out["counts"] = maps.Clone(snap.Counts)
	return out, rec, nil
}

// source describes where the dump came from, without secrets: the
// connection as given (a uri is taken apart, its password dropped), libpq's
// environment defaults for what was not given, the server's own database
// and role names.
func (p *PgDumpParams) source(env *engine.Env, snap *pgsnap.Snapshot) map[string]string {
	src := p.Conn.Source(env)
	src["kind"], src["server_version"], src["format"] = "postgres", snap.ServerVersion, p.Format
	if snap.Database != "" {
		src["database"] = snap.Database
	}
	if snap.User != "" {
		src["user"] = snap.User
	}
	if snap.InRecovery {
		src["standby"] = "true"
	}
	for k, v := range src {
		if v == "" {
			delete(src, k)
		}
	}
	return src
}

// pgDumpInverse restores a pg_dump artifact with pg_restore. Scratch: into
// a fresh database named after the source plus the suffix, recreated,
// without ownership (the roles may not exist), counted and dropped unless
// kept. Otherwise into the source database as it is: nothing is recreated
// or dropped unless the operator's overrides say so.
func pgDumpInverse(a engine.ArtifactRecord, t engine.RestoreTarget) (map[string]any, error) {
	src := a.Source
	if src["kind"] != "postgres" {
		return nil, fmt.Errorf("pg_dump artifact %s: no postgres source recorded (kind %q)", a.Path, src["kind"])
	}
	if src["database"] == "" {
		return nil, fmt.Errorf("pg_dump artifact %s: no source database recorded", a.Path)
	}
	with := map[string]any{"input": t.Input, "database": src["database"], "single_transaction": true}
	for _, k := range []string{"host", "user", "password_env"} {
		if v := src[k]; v != "" {
			with[k] = v
		}
	}
	if v := src["port"]; v != "" {
		port, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("pg_dump artifact %s: recorded port %q: %w", a.Path, v, err)
		}
		with["port"] = port
	}
	// Back into the container it came from, by default.
	container.FromRecord(src, with)
	switch f := src["format"]; f {
	case "custom", "tar", "plain":
		with["format"] = f
	}
	artifact.AddReadKeys(with, t)
	if len(a.Counts) > 0 {
		tables := make([]string, 0, len(a.Counts))
		for k := range a.Counts {
			if name, ok := strings.CutPrefix(k, "rows:"); ok {
				tables = append(tables, name)
			}
		}
		sort.Strings(tables)
		with["verify_counts"] = tables
	}
	if t.Scratch {
		if t.ScratchSuffix == "" {
			return nil, errors.New("scratch restore without a scratch suffix would overwrite the source database")
		}
		with["database"] = pgconn.ScratchDBName(src["database"], t.ScratchSuffix)
		with["recreate_database"] = true
		with["drop_after"] = !t.Keep
		if src["format"] != "plain" { // a plain dump's ownership is fixed at dump time
			with["no_owner"] = true
		}
	}
	return with, nil
}
