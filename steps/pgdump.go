package steps

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/proc"
)

// PgDumpParams are the params of pg_dump.
type PgDumpParams struct {
	PGConn                `yaml:",inline"`
	Format                string   `yaml:"format" enum:"custom|plain|tar" default:"custom" doc:"pg_dump output format (directory format cannot be streamed)"`
	Schemas               []string `yaml:"schemas" doc:"dump only these schemas (pg_dump --schema, patterns allowed)"`
	ExcludeSchemas        []string `yaml:"exclude_schemas" doc:"skip these schemas (--exclude-schema)"`
	Tables                []string `yaml:"tables" doc:"dump only these tables (--table, patterns allowed)"`
	ExcludeTables         []string `yaml:"exclude_tables" doc:"skip these tables (--exclude-table)"`
	ExtraArgs             []string `yaml:"extra_args" doc:"more pg_dump options, e.g. [--no-owner, --exclude-table-data=audit_*]"`
	PgDump                string   `yaml:"pg_dump" default:"pg_dump" doc:"pg_dump program (name in PATH or path; use the server's major version or newer)"`
	Psql                  string   `yaml:"psql" default:"psql" doc:"psql program, used to read the server version"`
	artifact.WriteOptions `yaml:",inline"`
}

// Validate checks connection and argument rules.
func (p *PgDumpParams) Validate() error {
	if err := p.PGConn.validate(); err != nil {
		return err
	}
	if p.URI == "" && p.Database == "" {
		return fmt.Errorf("give database (or uri)")
	}
	if err := rejectArgs("extra_args", p.ExtraArgs, "-f", "--file", "-F", "--format", "-Z", "--compress",
		"-W", "--password", "-d", "--dbname", "-h", "--host", "-U", "--username"); err != nil {
		return err
	}
	return p.WriteOptions.Validate()
}

func (p *PgDumpParams) args(s *pgSession) []string {
	args := []string{"--format=" + p.Format, "--no-password"}
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
		args = append(args, s.connArgs("")...)
	}
	return args
}

// PgDump streams pg_dump's output into an artifact.
var PgDump = engine.Def[PgDumpParams]{
	Name:    "pg_dump",
	Summary: "dump a PostgreSQL database with pg_dump, streamed into a compressed, encrypted artifact",
	Doc: `pg_dump's stdout is streamed through compression and encryption into
the artifact: no plaintext dump ever touches the disk. Formats: custom
(default; restore with pg_restore, selective and parallel restore possible),
plain (SQL, restore with psql) or tar. With the custom format and planrun
compression on, pg_dump runs with --compress=0 so the data is compressed once
(planrun's zstd is faster and parallel); with compress: none, pg_dump's own
compression applies. The password (password, password_env or the uri's) goes
to a 0600 PGPASSFILE in the step's private temp dir, never on a command line.
If pg_dump exits non-zero at any point, even after streaming most of the
data, the artifact is discarded and the step fails with pg_dump's stderr.`,
	Tools: []string{"pg_dump"},
	Kind:  engine.KindBackup,
	Outputs: append(append([]engine.Output(nil), artifact.StandardOutputs...),
		engine.Output{Name: "server_version", Doc: "PostgreSQL server version (SHOW server_version)"},
		engine.Output{Name: "duration_ms", Doc: "dump duration in milliseconds"},
		engine.Output{Name: "format", Doc: "pg_dump format of the artifact"},
	),
	Example: "host: db.internal\nuser: backup\npassword_env: PGPASSWORD_PROD\ndatabase: app\nformat: custom\noutput: /backups/app-${{ run.started.Format(\"20060102\") }}.dump.zst.age\nencrypt: {recipients_file: /etc/planrun/backup.pub}",
	Preview: func(env *engine.Env, p *PgDumpParams) []string {
		s := p.PGConn.previewSession(env)
		return []string{
			"run: " + proc.CommandLine(env.Secrets, p.PgDump, p.args(s)...) + " (password via PGPASSFILE)",
			"write: " + p.WriteOptions.Describe(),
		}
	},
	Run: runPgDump,
}

func runPgDump(ctx context.Context, env *engine.Env, p *PgDumpParams) (engine.Outputs, error) {
	s, err := p.PGConn.session(env)
	if err != nil {
		return nil, err
	}
	defer s.close()
	// Reading the version first also fails fast on a bad connection, before
	// any artifact exists.
	ver, err := s.query(ctx, env, p.Psql, "", "SHOW server_version")
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	version := ""
	if len(ver) > 0 {
		version = ver[0]
	}
	w, err := artifact.Create(ctx, env, p.WriteOptions)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	start := time.Now()
	_, err = proc.Run(ctx, proc.Cmd{
		Name: p.PgDump, Args: p.args(s), Env: s.environ, Secrets: env.Secrets,
		Stdout: progressWriter(w, env),
	})
	if err != nil {
		return nil, fmt.Errorf("pg_dump failed, no artifact written: %w", err)
	}
	res, err := w.Commit()
	if err != nil {
		return nil, err
	}
	out := res.Outputs()
	out["server_version"] = version
	out["duration_ms"] = time.Since(start).Milliseconds()
	out["format"] = p.Format
	return out, nil
}

// progressWriter reports the bytes written so far to env.Progress (if any).
func progressWriter(w io.Writer, env *engine.Env) io.Writer {
	if env == nil || env.Progress == nil {
		return w
	}
	return &progressW{w: w, fn: env.Progress}
}

type progressW struct {
	w  io.Writer
	n  int64
	fn func(int64)
}

func (p *progressW) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	p.fn(p.n)
	return n, err
}
