// Package container runs a database tool inside a running container
// (docker/podman exec, docker compose exec) instead of on the host. Only
// the process moves: its stdin and stdout stay the engine client's, so
// the artifact is still written (compressed, encrypted) on the host.
// Secrets go as `-e NAME` — the engine takes the value from its client's
// environment — never as NAME=value in any argv.
package container

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/proc"
)

// Target is embedded (inline) in the database steps' params.
type Target struct {
	Container *Container `yaml:"container" doc:"run the tool inside this running container (docker/podman exec -i); the program params then name programs inside it"`
	Compose   *Compose   `yaml:"compose" doc:"run the tool inside a Compose service's running container (docker compose exec -T)"`
	// root is /proc/PID/root of the container's first process when Probe
	// found it on this host and may open it: the tool's output then takes
	// a FIFO there instead of the engine's slow stdout relay.
	root string
}

// Container is a container addressed by name or ID.
type Container struct {
	Name   string `yaml:"name" required:"true" doc:"container name or ID"`
	Engine string `yaml:"engine" enum:"docker|podman" doc:"container engine (default: docker if on PATH, else podman)"`
	User   string `yaml:"user" doc:"user the tool runs as inside the container (exec --user), e.g. postgres for peer authentication over the socket"`
}

// Compose is a service of a Compose project.
type Compose struct {
	ProjectDir string `yaml:"project_dir" required:"true" doc:"the Compose project's directory (--project-directory)"`
	Service    string `yaml:"service" required:"true" doc:"service name"`
	File       string `yaml:"file" doc:"Compose file (-f), if not the project directory's default"`
	User       string `yaml:"user" doc:"user the tool runs as inside the container (exec --user)"`
}

// Enabled reports whether the tool runs in a container.
func (t *Target) Enabled() bool { return t.Container != nil || t.Compose != nil }

// Check enforces the target's rules (the steps' Validate calls it).
func (t *Target) Check() error {
	if t.Container != nil && t.Compose != nil {
		return errors.New("give container or compose, not both")
	}
	if c := t.Container; c != nil && strings.HasPrefix(c.Name, "-") {
		return fmt.Errorf("container.name: %q is not a container name", c.Name)
	}
	if c := t.Compose; c != nil && strings.HasPrefix(c.Service, "-") {
		return fmt.Errorf("compose.service: %q is not a service name", c.Service)
	}
	return nil
}

// Engine is the engine program: the one given, else docker if it is on
// the child's PATH, else podman. Compose runs through docker.
func (t *Target) Engine(environ []string) string {
	if t.Container != nil && t.Container.Engine != "" {
		return t.Container.Engine
	}
	if t.Container != nil {
		if _, err := engine.LookPath("docker", environ); err != nil {
			if _, err := engine.LookPath("podman", environ); err == nil {
				return "podman"
			}
		}
	}
	return "docker"
}

// HostTools are the host programs the target needs (validate --strict):
// the engine only, when the tool lives in the container.
func (t *Target) HostTools(environ []string) ([]string, bool) {
	if !t.Enabled() {
		return nil, false
	}
	return []string{t.Engine(environ)}, true
}

// Describe names the target for logs and errors.
func (t *Target) Describe() string {
	switch {
	case t.Container != nil:
		return fmt.Sprintf("container %q", t.Container.Name)
	case t.Compose != nil:
		return fmt.Sprintf("compose service %q in %s", t.Compose.Service, t.Compose.ProjectDir)
	}
	return "host"
}

// composeBase is `compose --project-directory D [-f F]`.
func (c *Compose) base() []string {
	args := []string{"compose", "--project-directory", c.ProjectDir}
	if c.File != "" {
		args = append(args, "-f", c.File)
	}
	return args
}

// Wrap turns c (a program with its args and environment) into the engine
// command running it in the container. pass names the environment
// variables that cross into the container, each as `-e NAME`: only those
// c.Env sets, and their values stay in the engine client's environment.
// Without a container, c is returned as it is.
func (t *Target) Wrap(c proc.Cmd, pass ...string) proc.Cmd {
	if !t.Enabled() {
		return c
	}
	args := t.execArgs(true)
	for _, name := range pass {
		if _, ok := engine.LookupEnv(c.Env, name); ok {
			args = append(args, "-e", name)
		}
	}
	var target string
	if t.Container != nil {
		target = t.Container.Name
	} else {
		target = t.Compose.Service
	}
	eng := t.Engine(c.Env)
	stop := t.execArgs(false)
	environ := c.Env
	signal := func(ctx context.Context, pid, sig string) error {
		_, err := proc.Run(ctx, proc.Cmd{Name: eng, Args: append(append([]string(nil), stop...), target, "sh", "-c", `kill -s "$0" "$1"`, sig, pid), Env: environ})
		return err
	}
	// A signal to the engine client does not reach the tool: sh announces
	// the tool's pid (exec keeps it) so a cancelled step can stop it.
	c.Inside = &proc.Inside{Announce: announcePrefix, Signal: signal}
	switch f := t.fifoFor(c); {
	case f != nil && c.Stdout != nil:
		args = append(append(args, target, "sh", "-c", announceFIFO, "planrun-exec", f.dir, c.Name), c.Args...)
		c.Inside.Attach = f.attach(c.Stdout)
	case f != nil:
		args = append(append(args, target, "sh", "-c", announceFIFOIn, "planrun-exec", f.dir, c.Name), c.Args...)
		c.Inside.Attach = f.feed(c.Stdin, c.Name, signal)
		c.Stdin = nil // the FIFO carries it, not the engine client
	default:
		args = append(append(args, target, "sh", "-c", announce, "planrun-exec", c.Name), c.Args...)
	}
	c.Name, c.Args = eng, args
	return c
}

// announce is the script that runs the tool in the container: its first
// stderr line names the pid the tool gets (see proc.Inside).
const (
	announcePrefix = "planrun-exec pid "
	announce       = `echo "` + announcePrefix + `$$" >&2; exec "$@"`
)

// execArgs are the engine's exec arguments up to the container (not
// included); stdin is attached when the tool reads it.
func (t *Target) execArgs(stdin bool) []string {
	args, user := []string{"exec"}, ""
	if t.Container != nil {
		if stdin {
			args = append(args, "-i")
		}
		user = t.Container.User
	} else {
		args, user = append(t.Compose.base(), "exec", "-T"), t.Compose.User
	}
	if user != "" {
		args = append(args, "--user", user)
	}
	return args
}

// Probe checks the container exists and runs, so that a wrong name fails
// with an error naming it rather than with the engine's message only.
func (t *Target) Probe(ctx context.Context, environ []string, secrets *engine.Redactor) error {
	if !t.Enabled() {
		return nil
	}
	eng := t.Engine(environ)
	if _, err := engine.LookPath(eng, environ); err != nil {
		return fmt.Errorf("%s: container engine not found: %w", t.Describe(), err)
	}
	if c := t.Compose; c != nil {
		res, err := proc.Run(ctx, proc.Cmd{Name: eng, Args: append(c.base(), "ps", "-q", c.Service), Env: environ, Secrets: secrets})
		if err != nil {
			return fmt.Errorf("%s: %w", t.Describe(), err)
		}
		ids := strings.Fields(res.Stdout)
		if len(ids) == 0 {
			return fmt.Errorf("%s: no running container", t.Describe())
		}
		// compose exec runs in the service's first container.
		if res, err := proc.Run(ctx, proc.Cmd{Name: eng, Args: []string{"container", "inspect", "--format", "{{.State.Pid}} {{.Id}}", ids[0]},
			Env: environ, Secrets: secrets}); err == nil {
			if f := strings.Fields(res.Stdout); len(f) == 2 {
				t.root = rootOf(f[0], f[1])
			}
		}
		return nil
	}
	res, err := proc.Run(ctx, proc.Cmd{Name: eng, Args: []string{"container", "inspect", "--format", "{{.State.Running}} {{.State.Pid}} {{.Id}}", t.Container.Name},
		Env: environ, Secrets: secrets})
	if err != nil {
		var xe *proc.ExitError
		if errors.As(err, &xe) && strings.Contains(strings.ToLower(xe.Stderr), "no such") {
			return fmt.Errorf("%s not found (%s container inspect)", t.Describe(), eng)
		}
		return fmt.Errorf("%s: %w", t.Describe(), err)
	}
	state := strings.Fields(res.Stdout)
	if len(state) == 0 || state[0] != "true" {
		return fmt.Errorf("%s is not running", t.Describe())
	}
	if len(state) == 3 {
		t.root = rootOf(state[1], state[2])
	}
	return nil
}

// Record describes the target for an artifact record's Source (no
// secrets), under keys prefixed "container_".
func (t *Target) Record(src map[string]string) {
	switch {
	case t.Container != nil:
		src["container_name"] = t.Container.Name
		src["container_engine"] = t.Container.Engine
		src["container_user"] = t.Container.User
	case t.Compose != nil:
		src["compose_project_dir"] = t.Compose.ProjectDir
		src["compose_service"] = t.Compose.Service
		src["compose_file"] = t.Compose.File
		src["compose_user"] = t.Compose.User
	}
}

// FromRecord is Record's inverse: the restore step's container/compose
// params for a recorded source (nothing when it ran on the host).
func FromRecord(src map[string]string, with map[string]any) {
	put := func(key string, m map[string]any, k string) {
		if v := src[key]; v != "" {
			m[k] = v
		}
	}
	if src["container_name"] != "" {
		m := map[string]any{}
		put("container_name", m, "name")
		put("container_engine", m, "engine")
		put("container_user", m, "user")
		with["container"] = m
	}
	if src["compose_service"] != "" {
		m := map[string]any{}
		put("compose_project_dir", m, "project_dir")
		put("compose_service", m, "service")
		put("compose_file", m, "file")
		put("compose_user", m, "user")
		with["compose"] = m
	}
}
