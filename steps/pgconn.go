package steps

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/proc"
)

// PGConn is how the PostgreSQL steps connect. Passwords never go on a
// command line: they are written to a 0600 PGPASSFILE in the step's private
// temp dir (a URI's password is taken out of the URI for that).
type PGConn struct {
	URI         string `yaml:"uri" doc:"postgres:// connection URI (instead of host/port/user/database); its password is moved to a PGPASSFILE"`
	Host        string `yaml:"host" doc:"server host or socket directory (default: libpq's, e.g. PGHOST)"`
	Port        int    `yaml:"port" doc:"server port (default: libpq's, e.g. PGPORT or 5432)"`
	User        string `yaml:"user" doc:"role name (default: libpq's, e.g. PGUSER)"`
	Database    string `yaml:"database" doc:"database name"`
	Password    string `yaml:"password" secret:"true" doc:"password; prefer password_env or a ${{ env.X }} expression"`
	PasswordEnv string `yaml:"password_env" doc:"name of the environment variable holding the password"`
}

func (c *PGConn) validate() error {
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
	return nil
}

// pgSession is a resolved connection: libpq arguments without secrets and
// the child environment carrying PGPASSFILE.
type pgSession struct {
	args     []string // --host/--port/--username (no database)
	dbname   string   // database name or password-free URI
	environ  []string
	passfile string
}

// close removes the password file (TempDir goes away anyway; this narrows
// the window).
func (s *pgSession) close() {
	if s.passfile != "" {
		os.Remove(s.passfile)
	}
}

// withDB returns the connection arguments for database db ("" = the
// configured one).
func (s *pgSession) connArgs(db string) []string {
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

// resolve builds the password-free arguments and finds the password,
// registering it as a secret; it has no other side effect (dry-run safe).
func (c *PGConn) resolve(env *engine.Env) (*pgSession, string, error) {
	s := &pgSession{environ: append([]string(nil), env.Environ...)}
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
	return s, password, nil
}

// session resolves the connection and writes the PGPASSFILE if needed.
func (c *PGConn) session(env *engine.Env) (*pgSession, error) {
	s, password, err := c.resolve(env)
	if err != nil {
		return nil, err
	}
	if password != "" {
		dir, err := env.TempDir()
		if err != nil {
			return nil, err
		}
		pass, err := writePGPass(dir, password)
		if err != nil {
			return nil, err
		}
		// Our passfile wins over an inherited PGPASSWORD (which would win otherwise).
		s.environ = append(withoutEnv(s.environ, "PGPASSWORD"), "PGPASSFILE="+pass)
		s.passfile = pass
	}
	return s, nil
}

// previewSession is resolve for dry-run: never fails.
func (c *PGConn) previewSession(env *engine.Env) *pgSession {
	s, _, err := c.resolve(env)
	if err != nil {
		return &pgSession{dbname: c.Database}
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

func withoutEnv(environ []string, name string) []string {
	out := environ[:0:0]
	for _, kv := range environ {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// query runs one psql command per SQL string and returns the output lines.
func (s *pgSession) query(ctx context.Context, env *engine.Env, psql, db string, sqls ...string) ([]string, error) {
	args := append([]string{"-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"}, s.connArgs(db)...)
	for _, q := range sqls {
		args = append(args, "-c", q)
	}
	res, err := proc.Run(ctx, proc.Cmd{Name: psql, Args: args, Env: s.environ, Secrets: env.Secrets})
	if err != nil {
		return nil, err
	}
	out := strings.Split(strings.TrimRight(res.Stdout, "\n"), "\n")
	if len(out) == 1 && out[0] == "" {
		out = nil
	}
	return out, nil
}

// quoteIdent quotes a possibly schema-qualified name: public.t → "public"."t".
func quoteIdent(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, ".")
}

// rejectArgs refuses extra arguments that would break the step's contract
// (output location, format, secrets on the command line), also when
// abbreviated: getopt_long takes "--fil=x" for "--file=x".
func rejectArgs(param string, args []string, bad ...string) error {
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		for _, b := range bad {
			long := strings.HasPrefix(b, "--")
			if a == b || strings.HasPrefix(a, b+"=") ||
				(long && len(name) > 2 && strings.HasPrefix(b, name)) ||
				(!long && strings.HasPrefix(a, b) && !strings.HasPrefix(a, "--")) {
				return fmt.Errorf("%s: %q is set by the step itself (or would expose a secret)", param, a)
			}
		}
	}
	return nil
}
