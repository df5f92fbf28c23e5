package mongoconn

import (
	"context"
	"fmt"
	"os"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/container"
	"github.com/planrun/planrun/steps/internal/proc"
)

// ConfigEnv carries the --config document into a container (`-e
// ConfigEnv`: the value stays in the engine client's environment).
const ConfigEnv = "PLANRUN_MONGO_CONFIG"

// configScript runs the tool ("$@") inside the container with its --config
// document on fd 3: a here-document of the variable, which sh (dash, ash)
// feeds through a pipe, so no file is written; the variable is unset first
// so the tool's environment does not carry the URI, and exec keeps the
// tool the process docker signals and waits for.
const configScript = `c=$` + ConfigEnv + `; unset ` + ConfigEnv + `; exec "$@" 3<<EOF
$c
EOF`

// containerConfig is the --config the tools get inside a container.
const containerConfig = "/dev/fd/3"

// hostConfigPlaceholder stands for the 0600 file in dry-run output.
const hostConfigPlaceholder = "<private 0600 file with the uri>"

// Session is a resolved connection for one step run: the URI, where the
// tools run, and how their --config reaches them.
type Session struct {
	URI     string
	Environ []string // the tools' (or the engine client's) environment
	target  *container.Target
	config  string // host: the 0600 --config file
	secrets *engine.Redactor
}

// resolve finds the URI and registers its passwords; no side effect.
func (c *Conn) resolve(env *engine.Env) (*Session, error) {
	uri, err := c.Resolve(env)
	if err != nil {
		return nil, err
	}
	addSecrets(env, uri)
	s := &Session{URI: uri, Environ: env.Environ, secrets: env.Secrets}
	if c.Target.Enabled() {
		s.target = &c.Target
	}
	return s, nil
}

// Session resolves the connection and prepares the tools' --config: a 0600
// file in the private temp dir on the host, or in a container the document
// in ConfigEnv of the engine client's environment. Close removes the file.
func (c *Conn) Session(env *engine.Env) (*Session, error) {
	s, err := c.resolve(env)
	if err != nil {
		return nil, err
	}
	if s.target == nil {
		if s.config, err = ConfigFile(env, s.URI); err != nil {
			return nil, err
		}
		return s, nil
	}
	doc, err := configYAML(s.URI)
	if err != nil {
		return nil, err
	}
	s.Environ = append(append([]string(nil), env.Environ...), ConfigEnv+"="+string(doc))
	return s, nil
}

// PreviewSession is Session for dry-run: no file, and it never fails.
func (c *Conn) PreviewSession(env *engine.Env) *Session {
	s, err := c.resolve(env)
	if err != nil {
		s = &Session{Environ: env.Environ, secrets: env.Secrets}
		if c.Target.Enabled() {
			s.target = &c.Target
		}
	}
	if s.target != nil {
		s.Environ = append(append([]string(nil), s.Environ...), ConfigEnv+"=")
	} else {
		s.config = hostConfigPlaceholder
	}
	return s
}

// Close removes the host --config file.
func (s *Session) Close() {
	if s.config != "" && s.config != hostConfigPlaceholder {
		os.Remove(s.config)
	}
}

// InContainer reports whether the tools run in a container.
func (s *Session) InContainer() bool { return s.target != nil }

// Cmd completes c (a mongo tool, its arguments after --config, its
// streams): --config, environment and secrets, and in a container the
// wrapping that runs it there with the config on fd 3.
func (s *Session) Cmd(c proc.Cmd) proc.Cmd {
	c.Env, c.Secrets = s.Environ, s.secrets
	if s.target == nil {
		c.Args = append([]string{"--config=" + s.config}, c.Args...)
		return c
	}
	c.Args = append([]string{"-c", configScript, "sh", c.Name, "--config=" + containerConfig}, c.Args...)
	c.Name = "sh"
	return s.target.Wrap(c, ConfigEnv)
}

// CommandLine renders Cmd(c) as it will run, redacted, for dry-run.
func (s *Session) CommandLine(c proc.Cmd) string {
	c = s.Cmd(c)
	return proc.CommandLine(s.secrets, c.Name, c.Args...)
}

// Probe checks the container (if any) exists and runs.
func (s *Session) Probe(ctx context.Context) error {
	if s.target == nil {
		return nil
	}
	return s.target.Probe(ctx, s.Environ, s.secrets)
}

// Reachable is the package's Reachable, from where the tools run: in a
// container, a TCP connection to each host is opened from inside it.
func (s *Session) Reachable(ctx context.Context) error {
	if s.target == nil {
		return Reachable(ctx, s.URI)
	}
	return reachable(ctx, s.URI, "MongoDB unreachable", s.tunnel().DialContext)
}

// Connect is the package's Connect, from where the tools run: in a
// container, every driver connection is tunnelled through it, so counts
// and drops reach the very server the tools wrote to.
func (s *Session) Connect() (*mongo.Client, error) {
	if s.target == nil {
		return Connect(s.URI)
	}
	cl, err := mongo.Connect(options.Client().ApplyURI(s.URI).SetDialer(s.tunnel()).
		SetServerSelectionTimeout(ReachTimeout).SetAppName("planrun"))
	if err != nil {
		return nil, fmt.Errorf("MongoDB client through %s: %w", s.target.Describe(), err)
	}
	return cl, nil
}
