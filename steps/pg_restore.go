package steps

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/argv"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/pgconn"
	"github.com/planrun/planrun/steps/internal/pgsnap"
	"github.com/planrun/planrun/steps/internal/proc"
)

// PgRestoreParams are the params of pg_restore.
type PgRestoreParams struct {
	pgconn.Conn          `yaml:",inline"`
	Input                string   `yaml:"input" required:"true" doc:"artifact written by pg_dump (any compression/encryption planrun reads)"`
	Format               string   `yaml:"format" enum:"auto|custom|tar|plain" default:"auto" doc:"dump format; auto detects it from the content"`
	RecreateDatabase     bool     `yaml:"recreate_database" doc:"DROP DATABASE IF EXISTS and CREATE DATABASE the target first (scratch restores for drills)"`
	Clean                bool     `yaml:"clean" doc:"drop objects before recreating them (pg_restore --clean)"`
	IfExists             bool     `yaml:"if_exists" doc:"with clean: use DROP ... IF EXISTS"`
	Create               bool     `yaml:"create" doc:"create the database named in the dump (pg_restore --create); database then names the database to connect to first, e.g. postgres"`
	SingleTransaction    bool     `yaml:"single_transaction" doc:"restore in one transaction: all or nothing"`
	Jobs                 int      `yaml:"jobs" doc:"parallel pg_restore jobs (custom format); > 1 needs a seekable file, see the step doc"`
	NoOwner              bool     `yaml:"no_owner" doc:"do not restore object ownership (--no-owner)"`
	VerifyCounts         []string `yaml:"verify_counts" doc:"tables whose rows are counted after the restore (output counts, keyed rows:<schema>.<table>): schema.table (literal names, split at the first dot), table (in public) or a manifest key rows:schema.table; [\"*\"] counts every table of the database"`
	AfterSQL             []string `yaml:"after_sql" doc:"SQL statements run in the restored database after the restore and before verify_counts, fed to psql on stdin (never argv): ANALYZE, grants the application needs, a drill's smoke test; the counts measure the database as they leave it"`
	DropAfter            bool     `yaml:"drop_after" doc:"drop the target database after verify_counts, also when the restore fails (drills into a scratch database)"`
	ExtraArgs            []string `yaml:"extra_args" doc:"more pg_restore (or psql, for plain dumps) options"`
	PgRestore            string   `yaml:"pg_restore" default:"pg_restore" tool:"true" doc:"pg_restore program"`
	Psql                 string   `yaml:"psql" default:"psql" tool:"true" doc:"psql program (plain dumps, counts, database creation)"`
	artifact.ReadOptions `yaml:",inline"`
}

// Validate checks option combinations pg_restore/psql would reject late.
func (p *PgRestoreParams) Validate() error {
	if err := p.Conn.Check(); err != nil {
		return err
	}
	if p.Jobs < 0 {
		return errors.New("jobs must be >= 0")
	}
	if p.Jobs > 1 && p.Conn.Target.Enabled() {
		// The seekable file jobs > 1 needs would be on the host, out of the container's reach.
		return errors.New("jobs > 1 cannot be combined with container or compose")
	}
	if p.Jobs > 1 && p.SingleTransaction {
		return errors.New("jobs > 1 cannot be combined with single_transaction")
	}
	if p.Format == "plain" && (p.Clean || p.IfExists || p.Create || p.Jobs > 1 || p.NoOwner) {
		return errors.New("plain (SQL) dumps are replayed by psql: clean, if_exists, create, no_owner and jobs do not apply (choose them at pg_dump time)")
	}
	if p.IfExists && !p.Clean {
		return errors.New("if_exists needs clean")
	}
	if p.RecreateDatabase && len(p.Database) > pgconn.MaxIdent {
		// PostgreSQL would cut the name: DROP DATABASE could hit another database.
		return fmt.Errorf("recreate_database: database name %q is longer than %d bytes", p.Database, pgconn.MaxIdent)
	}
	if p.Create && p.RecreateDatabase {
		return errors.New("give create or recreate_database, not both")
	}
	for _, t := range p.VerifyCounts {
		if t == "*" && len(p.VerifyCounts) > 1 {
			return errors.New(`verify_counts: "*" (every table) stands alone`)
		}
		if _, table := pgsnap.SplitName(t); table == "" {
			return fmt.Errorf("verify_counts: %q names no table", t)
		}
	}
	if p.Create && len(p.VerifyCounts) > 0 {
		// With create, database names the database pg_restore connects to
		// first, not the one it creates: counts would read the wrong one.
		return errors.New("verify_counts cannot be combined with create: restore into database with recreate_database instead")
	}
	if p.DropAfter && (p.Create || !p.RecreateDatabase) {
		return errors.New("drop_after is only allowed with recreate_database (a scratch database this step created)")
	}
	return argv.Reject("extra_args", p.ExtraArgs, "-f", "--file", "-d", "--dbname", "-W", "--password", "-h", "--host", "-U", "--username")
}

// PgRestore restores a pg_dump artifact.
var PgRestore = engine.Def[PgRestoreParams]{
	Name:    "pg_restore",
	Summary: "restore a pg_dump artifact with pg_restore (custom/tar) or psql (plain SQL), optionally into a scratch database with row counts",
	Doc: `The artifact is decrypted and decompressed on the fly and streamed into
pg_restore's (or, for plain SQL, psql's) stdin. If the artifact turns out
truncated or tampered with, the restore tool is killed before it sees the end
of its input (use single_transaction so nothing partial stays).
jobs > 1 needs a seekable archive: an uncompressed, unencrypted custom dump is
passed by path; otherwise the plaintext is first spooled into a 0600 file in
the step's private temp dir (removed afterwards) — plaintext on local disk for
the duration of the restore, so prefer jobs: 1 where that matters.
Drills: recreate_database + verify_counts (+ drop_after) restore into a scratch
database, report row counts and clean up. The counts are keyed
rows:<schema>.<table> like the counts pg_dump records in the manifest, so
the two compare directly; verify_counts: ["*"] counts every table.`,
	Kind: engine.KindOther,
	Outputs: []engine.Output{
		{Name: "database", Doc: "the database restored into"},
		{Name: "format", Doc: "the dump format restored"},
		{Name: "counts", Doc: "rows per verify_counts table, keyed rows:<schema>.<table> like pg_dump's counts"},
		{Name: "duration_ms", Doc: "restore duration in milliseconds"},
	},
	Example: "host: 127.0.0.1\nuser: postgres\ndatabase: app_drill\nrecreate_database: true\ninput: /backups/app.dump.zst.age\nidentity_file: /etc/planrun/restore.key\nverify_counts: [public.orders, public.users]",
	Preview: func(env *engine.Env, p *PgRestoreParams) []string {
		s := p.Conn.PreviewSession(env)
		out := []string{"read: " + p.Input}
		line := func(name string, args ...string) string {
			return s.CommandLine(env, proc.Cmd{Name: name, Args: args, Env: s.Environ})
		}
		if p.RecreateDatabase {
			out = append(out, "run: "+line(p.Psql, "-c", "DROP DATABASE IF EXISTS ... ; CREATE DATABASE ..."))
		}
		if p.Format == "plain" {
			out = append(out, "run: "+line(p.Psql, p.psqlArgs(s)...)+" < plaintext")
		} else {
			out = append(out, "run: "+line(p.PgRestore, p.restoreArgs(s, "")...)+" < plaintext (psql if the dump is plain SQL)")
		}
		if len(p.AfterSQL) > 0 {
			out = append(out, fmt.Sprintf("run: %s < after_sql (%d statements)", line(p.Psql, afterSQLArgs(s)...), len(p.AfterSQL)))
		}
		return out
	},
	Run: runPgRestore,
}

func (p *PgRestoreParams) restoreArgs(s *pgconn.Session, file string) []string {
	args := []string{"--no-password", "--exit-on-error"}
	if p.Clean {
		args = append(args, "--clean")
	}
	if p.IfExists {
		args = append(args, "--if-exists")
	}
	if p.Create {
		args = append(args, "--create")
	}
	if p.SingleTransaction {
		args = append(args, "--single-transaction")
	}
	if p.NoOwner {
		args = append(args, "--no-owner")
	}
	if p.Jobs > 1 {
		args = append(args, "--jobs="+strconv.Itoa(p.Jobs))
	}
	args = append(args, p.ExtraArgs...)
	args = append(args, s.ConnArgs("")...)
	if file != "" {
		args = append(args, file)
	}
	return args
}

func (p *PgRestoreParams) psqlArgs(s *pgconn.Session) []string {
	args := []string{"-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1"}
	if p.SingleTransaction {
		args = append(args, "--single-transaction")
	}
	args = append(args, p.ExtraArgs...)
	return append(args, s.ConnArgs("")...)
}

// afterSQLArgs runs after_sql: its statements come on stdin, where a
// password in them stays out of every argv.
func afterSQLArgs(s *pgconn.Session) []string {
	return append([]string{"-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1"}, s.ConnArgs("")...)
}

// detectDumpFormat recognises pg_dump's custom ("PGDMP") and tar (ustar
// magic at offset 257) formats; anything else is taken as plain SQL.
func detectDumpFormat(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("PGDMP")):
		return "custom"
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return "tar"
	}
	return "plain"
}

func runPgRestore(ctx context.Context, env *engine.Env, p *PgRestoreParams) (_ engine.Outputs, err error) {
	s, err := p.Conn.Session(env)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := s.Probe(ctx, env); err != nil {
		return nil, err
	}
	src, err := artifact.OpenWith(ctx, env, p.Input, p.ReadOptions, artifact.Plain|artifact.VerifySidecar)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	defer src.Close()
	br := bufio.NewReaderSize(src, 64<<10)
	head, _ := br.Peek(512)
	format := p.Format
	if format == "auto" {
		format = detectDumpFormat(head)
	}
	if format == "plain" && (p.Clean || p.Create || p.Jobs > 1 || p.NoOwner) {
		return nil, fmt.Errorf("input %s is a plain SQL dump: clean, create, no_owner and jobs do not apply", p.Input)
	}
	target := p.Database
	if target == "" {
		target = "(from uri)"
	}
	if p.RecreateDatabase {
		if err := p.recreate(ctx, env, s); err != nil {
			return nil, err
		}
		if p.DropAfter {
			// Also after a failure or a timeout: every drill names its scratch
			// database anew, so failed ones would pile up.
			defer func() {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
				defer cancel()
				if _, derr := s.Query(dctx, env, p.Psql, "postgres", "DROP DATABASE IF EXISTS "+pgconn.QuoteIdent(p.Database)); derr != nil {
					if err == nil {
						err = fmt.Errorf("drop_after: %w", derr)
					} else {
						env.Log.Warn("drop_after: scratch database not dropped", "database", p.Database, "err", derr)
					}
				}
			}()
		}
	}

	start := time.Now()
	switch {
	case format == "plain":
		_, err = proc.RunFed(ctx, s.Cmd(proc.Cmd{Name: p.Psql, Args: p.psqlArgs(s), Env: s.Environ, Secrets: env.Secrets, Stdin: br}))
	case p.Jobs > 1:
		err = p.restoreParallel(ctx, env, s, br)
	default:
		_, err = proc.RunFed(ctx, s.Cmd(proc.Cmd{Name: p.PgRestore, Args: p.restoreArgs(s, ""), Env: s.Environ, Secrets: env.Secrets, Stdin: br}))
	}
	if err != nil {
		return nil, fmt.Errorf("restore of %s into %s failed: %w", p.Input, target, err)
	}
	out := engine.Outputs{"database": target, "format": format, "duration_ms": time.Since(start).Milliseconds()}
	if len(p.AfterSQL) > 0 {
		script := strings.Join(p.AfterSQL, ";\n") + ";\n"
		if _, err := proc.RunFed(ctx, s.Cmd(proc.Cmd{Name: p.Psql, Args: afterSQLArgs(s), Env: s.Environ, Secrets: env.Secrets, Stdin: strings.NewReader(script)})); err != nil {
			return out, fmt.Errorf("after_sql in %s: %w", target, err)
		}
	}
	counts, err := p.countRows(ctx, env, s)
	if err != nil {
		return out, fmt.Errorf("verify_counts: %w", err)
	}
	out["counts"] = counts
	return out, nil
}

// countRows counts the rows of the verify_counts tables, keyed as pg_dump
// keys its counts. Row-level security stays off, as for pg_dump's counts:
// a table the role would see only part of fails instead of counting less.
func (p *PgRestoreParams) countRows(ctx context.Context, env *engine.Env, s *pgconn.Session) (map[string]int64, error) {
	counts := map[string]int64{}
	if len(p.VerifyCounts) == 0 {
		return counts, nil
	}
	setup := []string{"SET statement_timeout = 0", "SET row_security = off"}
	var tables [][2]string
	if len(p.VerifyCounts) == 1 && p.VerifyCounts[0] == "*" {
		q, err := (&pgsnap.Selection{}).Query()
		if err != nil {
			return nil, err
		}
		lines, err := s.Query(ctx, env, p.Psql, "", append(setup, q)...)
		if err != nil {
			return nil, err
		}
		if tables, err = pgsnap.ParseTables(lines); err != nil {
			return nil, err
		}
	} else {
		for _, t := range p.VerifyCounts {
			schema, table := pgsnap.SplitName(t)
			tables = append(tables, [2]string{schema, table})
		}
	}
	if len(tables) == 0 {
		return counts, nil
	}
	sqls := append([]string(nil), setup...)
	for _, t := range tables {
		sqls = append(sqls, pgsnap.CountSQL(t[0], t[1]))
	}
	lines, err := s.Query(ctx, env, p.Psql, "", sqls...)
	if err != nil {
		return nil, err
	}
	return pgsnap.ParseCounts(tables, lines)
}

func (p *PgRestoreParams) recreate(ctx context.Context, env *engine.Env, s *pgconn.Session) error {
	if p.Database == "" {
		return errors.New("recreate_database needs database (not only uri)")
	}
	db := pgconn.QuoteIdent(p.Database)
	_, err := s.Query(ctx, env, p.Psql, "postgres", "DROP DATABASE IF EXISTS "+db, "CREATE DATABASE "+db)
	if err != nil {
		return fmt.Errorf("recreate_database %s: %w", p.Database, err)
	}
	return nil
}

// restoreParallel gives pg_restore --jobs a seekable file: the artifact
// itself when it is a plain custom dump, else a 0600 spool in TempDir.
func (p *PgRestoreParams) restoreParallel(ctx context.Context, env *engine.Env, s *pgconn.Session, plain io.Reader) error {
	path := p.Input
	if raw, err := rawCustomDump(p.Input); err != nil {
		return err
	} else if !raw {
		dir, err := env.TempDir()
		if err != nil {
			return err
		}
		f, err := os.CreateTemp(dir, "restore-*.dump")
		if err != nil {
			return err
		}
		path = f.Name()
		defer os.Remove(path)
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return err
		}
		env.Log.Warn("jobs > 1: spooling the plaintext dump to the private temp dir", "file", path)
		if _, err := io.Copy(f, plain); err != nil {
			f.Close()
			return fmt.Errorf("reading input: %w", err)
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	_, err := proc.Run(ctx, proc.Cmd{Name: p.PgRestore, Args: p.restoreArgs(s, path), Env: s.Environ, Secrets: env.Secrets})
	return err
}

func rawCustomDump(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 5)
	n, _ := io.ReadFull(f, head)
	return n == 5 && string(head) == "PGDMP", nil
}
