// Package pgconn is how the PostgreSQL steps connect: the connection params
// they share and the resolved session (libpq arguments without secrets and
// a child environment whose PGPASSFILE carries the password). Passwords
// never go on a command line: they are written to a 0600 PGPASSFILE in the
// step's private temp dir (a URI's password is taken out of the URI).
// When the tools run inside a container (container:/compose:), a host
// file is out of their reach: the password then crosses as `-e PGPASSWORD`,
// its value only in the engine client's environment, and nothing is
// written anywhere.
package pgconn

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/childenv"
	"github.com/planrun/planrun/steps/internal/container"
	"github.com/planrun/planrun/steps/internal/proc"
)

// Conn is embedded (inline) in the params of the PostgreSQL steps.
type Conn struct {
	URI         string `yaml:"uri" doc:"postgres:// connection URI (instead of host/port/user/database); its password is moved to a PGPASSFILE"`
	Host        string `yaml:"host" doc:"server host or socket directory (default: libpq's, e.g. PGHOST)"`
	Port        int    `yaml:"port" doc:"server port (default: libpq's, e.g. PGPORT or 5432)"`
	User        string `yaml:"user" doc:"role name (default: libpq's, e.g. PGUSER)"`
	Database    string `yaml:"database" doc:"database name"`
	Password    string `yaml:"password" secret:"true" doc:"password; prefer password_env or a ${{ env.X }} expression"`
	PasswordEnv string `yaml:"password_env" doc:"name of the environment variable holding the password"`
	// In a container, host/port/user default to libpq's inside it (its
	// unix socket, its PG* environment).
	container.Target `yaml:",inline"`
}

// Check enforces the connection rules (the steps' Validate calls it).
func (c *Conn) Check() error {
	if err := c.Target.Check(); err != nil {
		return err
	}
	if c.URI != "" {
		if c.Host != "" || c.Port != 0 || c.User != "" || c.Database != "" {
			return errors.New("give uri or host/port/user/database, not both")
		}
		if !strings.Contains(c.URI, "${{") && !strings.HasPrefix(c.URI, "postgres://") && !strings.HasPrefix(c.URI, "postgresql://") {
			return errors.New("uri: must start with postgres:// or postgresql://")
		}
	}
	if c.Password != "" && c.PasswordEnv != "" {
		return errors.New("give password or password_env, not both")
	}
	if c.URI == "" && c.Database == "" {
		return errors.New("give database (or uri)")
	}
	return nil
}

// Session is a resolved connection: libpq arguments without secrets and
// the child environment carrying PGPASSFILE.
type Session struct {
	args     []string // --host/--port/--username (no database)
	dbname   string   // database name or password-free URI
	Environ  []string // for the child processes
	passfile string
	target   *container.Target
}

// Cmd wraps c to run inside the connection's container, if any, with the
// libpq variables the steps set crossing as -e NAME.
func (s *Session) Cmd(c proc.Cmd) proc.Cmd {
	if s.target == nil {
		return c
	}
	return s.target.Wrap(c, "PGPASSWORD", "PGAPPNAME")
}

// Close removes the password file (TempDir goes away anyway; this narrows
// the window).
func (s *Session) Close() {
	if s.passfile != "" {
		os.Remove(s.passfile)
	}
}

// ConnArgs returns the connection arguments for database db ("" = the
// configured one).
func (s *Session) ConnArgs(db string) []string {
	args := append([]string(nil), s.args...)
	switch {
	case db != "" && strings.Contains(s.dbname, "://"):
		u, _ := url.Parse(s.dbname)
		u.Path = "/" + db
		args = append(args, "--dbname="+u.String())
	case db != "":
		args = append(args, "--dbname="+db)
	case s.dbname != "":
		args = append(args, "--dbname="+s.dbname)
	}
	return args
}

// ServerArgs returns the connection arguments for a tool that connects to
// the server rather than to a database (pg_basebackup): host, port and
// user, and a URI as --dbname (such tools ignore its database). A plain
// database name is left out: they would read it as a connection string.
func (s *Session) ServerArgs() []string {
	args := append([]string(nil), s.args...)
	if strings.Contains(s.dbname, "://") {
		args = append(args, "--dbname="+s.dbname)
	}
	return args
}

// resolve builds the password-free arguments and finds the password,
// registering it as a secret; it has no other side effect (dry-run safe).
func (c *Conn) resolve(env *engine.Env) (*Session, string, error) {
	s := &Session{Environ: append([]string(nil), env.Environ...)}
	if c.Target.Enabled() {
		s.target = &c.Target
	}
	password := c.Password
	if c.PasswordEnv != "" {
		v, ok := engine.LookupEnv(env.Environ, c.PasswordEnv)
		if !ok || v == "" {
			return nil, "", fmt.Errorf("password_env: %s is not set", c.PasswordEnv)
		}
		password = v
	}
	if c.URI != "" {
		u, err := url.Parse(c.URI)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return nil, "", errors.New("uri: not a valid postgres:// URI")
		}
		// Only the password is secret (masking the whole URI would also
		// refuse it as an argument): it moves to the PGPASSFILE.
		if pw, ok := u.User.Password(); ok {
			env.Secrets.Add(pw)
			if password == "" {
				password = pw
			}
			u.User = url.User(u.User.Username())
		}
		if q := u.Query(); q.Has("password") {
			env.Secrets.Add(q.Get("password"))
			if password == "" {
				password = q.Get("password")
			}
			q.Del("password")
			u.RawQuery = q.Encode()
		}
		s.dbname = u.String()
	} else {
		if c.Host != "" {
			s.args = append(s.args, "--host="+c.Host)
		}
		if c.Port != 0 {
			s.args = append(s.args, "--port="+strconv.Itoa(c.Port))
		}
		if c.User != "" {
			s.args = append(s.args, "--username="+c.User)
		}
		s.dbname = c.Database
	}
	if password != "" {
		env.Secrets.Add(password)
	}
	if password != "" && s.target != nil {
		// The engine client passes it on (-e PGPASSWORD); a passfile on the
		// host would be out of the container's reach.
		s.Environ = childenv.Set(childenv.Unset(s.Environ, "PGPASSFILE"), "PGPASSWORD", password)
	}
	return s, password, nil
}

// Session resolves the connection and writes the PGPASSFILE if needed.
func (c *Conn) Session(env *engine.Env) (*Session, error) {
	s, password, err := c.resolve(env)
	if err != nil {
		return nil, err
	}
	if password != "" && s.target == nil {
		dir, err := env.TempDir()
		if err != nil {
			return nil, err
		}
		pass, err := writePGPass(dir, password)
		if err != nil {
			return nil, err
		}
		// Our passfile wins over an inherited PGPASSWORD (which would win otherwise).
		s.Environ = childenv.Set(childenv.Unset(s.Environ, "PGPASSWORD"), "PGPASSFILE", pass)
		s.passfile = pass
	}
	return s, nil
}

// Probe checks the container (if any) exists and runs.
func (s *Session) Probe(ctx context.Context, env *engine.Env) error {
	if s.target == nil {
		return nil
	}
	return s.target.Probe(ctx, s.Environ, env.Secrets)
}

// CommandLine renders c as it will run (wrapped for the container),
// redacted, for dry-run.
func (s *Session) CommandLine(env *engine.Env, c proc.Cmd) string {
	c = s.Cmd(c)
	return proc.CommandLine(env.Secrets, c.Name, c.Args...)
}

// PreviewSession is Session for dry-run: no file, and it never fails.
func (c *Conn) PreviewSession(env *engine.Env) *Session {
	s, _, err := c.resolve(env)
	if err != nil {
		s := &Session{dbname: c.Database}
		if c.Target.Enabled() {
			s.target = &c.Target
		}
		return s
	}
	return s
}

// writePGPass writes a libpq password file matching any host/port/db/user.
func writePGPass(dir, password string) (string, error) {
	if dir == "" {
		return "", errors.New("no private temp dir for the password file")
	}
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(password)
	f, err := os.CreateTemp(dir, "pgpass-*")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return "", err
	}
	if _, err := f.WriteString("*:*:*:*:" + esc + "\n"); err != nil {
		return "", err
	}
	return filepath.Clean(f.Name()), f.Close()
}

// Query runs one psql command per SQL string in database db ("" = the
// configured one) and returns the output lines.
func (s *Session) Query(ctx context.Context, env *engine.Env, psql, db string, sqls ...string) ([]string, error) {
	args := append([]string{"-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"}, s.ConnArgs(db)...)
	for _, q := range sqls {
		args = append(args, "-c", q)
	}
	res, err := proc.Run(ctx, s.Cmd(proc.Cmd{Name: psql, Args: args, Env: s.Environ, Secrets: env.Secrets}))
	if err != nil {
		return nil, err
	}
	out := strings.Split(strings.TrimRight(res.Stdout, "\n"), "\n")
	if len(out) == 1 && out[0] == "" {
		out = nil
	}
	return out, nil
}

// QuoteIdent quotes a possibly schema-qualified name: public.t → "public"."t".
func QuoteIdent(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, ".")
}

// MaxIdent is PostgreSQL's identifier length (NAMEDATALEN-1 bytes): longer
// names are silently cut, so a long source name plus a suffix could come
// out as the source name itself.
const MaxIdent = 63

// ScratchDBName is db+suffix, with db shortened (at a rune boundary) so the
// whole fits an identifier and the suffix, which makes it unique, survives.
func ScratchDBName(db, suffix string) string {
	for len(db)+len(suffix) > MaxIdent && db != "" {
		_, size := utf8.DecodeLastRuneInString(db)
		db = db[:len(db)-size]
	}
	return db + suffix
}

// Source describes the connection for an artifact record's Source, without
// secrets: host, port, user and database as libpq resolves them (the
// uri's, else the params', else the PG* defaults the tool inherits, which
// do not reach a tool in a container), the container, and password_env.
// Empty values are left out.
func (c *Conn) Source(env *engine.Env) map[string]string {
	src := map[string]string{"host": c.Host, "user": c.User, "database": c.Database, "password_env": c.PasswordEnv}
	if c.Port != 0 {
		src["port"] = strconv.Itoa(c.Port)
	}
	if c.URI != "" {
		if u, err := url.Parse(c.URI); err == nil {
			q := u.Query()
			src["host"], src["port"], src["user"] = u.Hostname(), u.Port(), u.User.Username()
			src["database"] = strings.TrimPrefix(u.Path, "/")
			for k, key := range map[string]string{"host": "host", "port": "port", "user": "user", "dbname": "database"} {
				if v := q.Get(k); v != "" {
					src[key] = v
				}
			}
		}
	}
	for key, name := range map[string]string{"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "database": "PGDATABASE"} {
		if src[key] == "" && !c.Target.Enabled() {
			src[key] = env.Getenv(name)
		}
	}
	c.Target.Record(src)
	for k, v := range src {
		if v == "" {
			delete(src, k)
		}
	}
	return src
}
