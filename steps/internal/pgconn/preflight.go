package pgconn

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/proc"
)

// dumpTools must be at least the server's major version: pg_dump and
// pg_basebackup refuse a newer server ("server version mismatch").
var dumpTools = []string{"pg_dump", "pg_dumpall", "pg_basebackup"}

// Preflight connects as the steps do (the same session: arguments, the
// PGPASSFILE, the container), asks the server's version, and checks that
// the dump tools the step runs are not older than the server.
func (c *Conn) Preflight(ctx context.Context, env *engine.PreflightEnv) []engine.PreflightCheck {
	conn := engine.PreflightCheck{Check: "postgres", Target: c.describe(env.Env)}
	fail := func(err error) []engine.PreflightCheck {
		conn.Status, conn.Reason = engine.CheckFail, err.Error()
		return []engine.PreflightCheck{conn}
	}
	s, err := c.Session(env.Env)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	if err := s.Probe(ctx, env.Env); err != nil {
		return fail(err)
	}
	psql := "psql"
	if p := env.Tool("psql"); p != "" && s.target == nil {
		psql = p
	}
	out, err := s.Query(ctx, env.Env, psql, "", "SELECT current_setting('server_version_num')")
	if err != nil {
		return fail(fmt.Errorf("cannot connect: %w", err))
	}
	num, err := strconv.Atoi(strings.TrimSpace(strings.Join(out, "")))
	if err != nil {
		return fail(fmt.Errorf("unexpected answer to SELECT current_setting('server_version_num'): %q", out))
	}
	server := num / 10000
	conn.Status, conn.Reason = engine.CheckOK, fmt.Sprintf("connected, server version %d.%d", server, num%10000)
	checks := []engine.PreflightCheck{conn}
	if s.target != nil {
		return checks // the tools run inside the container: its own client matches its server
	}
	for _, name := range dumpTools {
		path := env.Tool(name)
		if path == "" {
			continue
		}
		checks = append(checks, toolVersion(ctx, env, s, name, path, server))
	}
	return checks
}

var versionRe = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// toolVersion checks that a client tool is at least the server's major.
func toolVersion(ctx context.Context, env *engine.PreflightEnv, s *Session, name, path string, server int) engine.PreflightCheck {
	c := engine.PreflightCheck{Check: "tool-version", Target: path}
	res, err := proc.Run(ctx, proc.Cmd{Name: path, Args: []string{"--version"}, Env: s.Environ, Secrets: env.Secrets})
	if err != nil {
		c.Status, c.Reason = engine.CheckFail, err.Error()
		return c
	}
	m := versionRe.FindStringSubmatch(res.Stdout)
	if m == nil {
		c.Status, c.Reason = engine.CheckWarn, fmt.Sprintf("cannot read a version in %q", strings.TrimSpace(res.Stdout))
		return c
	}
	major, _ := strconv.Atoi(m[1])
	version := strings.TrimSuffix(m[1]+"."+m[2], ".")
	if major < server {
		c.Status = engine.CheckFail
		c.Reason = fmt.Sprintf("%s %s is older than the server (%d): it refuses to dump a newer server; install the PostgreSQL %d client (e.g. postgresql-client-%d) or set the step's %s param to it, e.g. /usr/lib/postgresql/%d/bin/%s",
			name, version, server, server, server, name, server, name)
		return c
	}
	c.Status, c.Reason = engine.CheckOK, fmt.Sprintf("%s %s, server %d", name, version, server)
	return c
}

// describe names the server for messages: host:port/database, with
// libpq's defaults from the environment; never a password.
func (c *Conn) describe(env *engine.Env) string {
	if c.URI != "" {
		if u, err := url.Parse(c.URI); err == nil {
			u.User = nil
			q := u.Query()
			q.Del("password")
			u.RawQuery = q.Encode()
			return u.String()
		}
		return "(uri)"
	}
	host, port, db := c.Host, "", c.Database
	if host == "" {
		host = env.Getenv("PGHOST")
	}
	if c.Port != 0 {
		port = strconv.Itoa(c.Port)
	} else {
		port = env.Getenv("PGPORT")
	}
	where := host
	if port != "" {
		where += ":" + port
	}
	if d := c.Target.Describe(); d != "" && c.Target.Enabled() {
		where = d
	}
	return where + "/" + db
}
