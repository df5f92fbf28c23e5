package steps

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/proc"
)

// ExecParams are the params of the exec step.
type ExecParams struct {
	Command []string          `yaml:"command" doc:"program and arguments, run without a shell"`
	Shell   string            `yaml:"shell" doc:"script run by /bin/sh -c (use command when you can)"`
	Env     map[string]string `yaml:"env" doc:"variables added to the child's environment"`
	Dir     string            `yaml:"dir" doc:"working directory"`
}

// Validate requires exactly one of command and shell.
func (p *ExecParams) Validate() error {
	if (len(p.Command) == 0) == (p.Shell == "") {
		return errors.New("give exactly one of command and shell")
	}
	return nil
}

func (p *ExecParams) argv() (string, []string) {
	if p.Shell != "" {
		return "/bin/sh", []string{"-c", p.Shell}
	}
	return p.Command[0], p.Command[1:]
}

func (p *ExecParams) environ(env *engine.Env) []string {
	out := append([]string(nil), env.Environ...)
	keys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	added := make([]string, 0, len(keys))
	for _, k := range keys {
		added = append(added, k+"="+p.Env[k])
	}
	// Literal secrets in env: (PGPASSWORD: ...) are masked like the plan's.
	env.Secrets.AddEnv(added)
	return append(out, added...)
}

// Exec runs a command: the escape hatch for anything without a built-in step.
var Exec = engine.Def[ExecParams]{
	Name:    "exec",
	Summary: "run a command (argv, no shell) or a /bin/sh script",
	Outputs: []engine.Output{
		{Name: "exit_code", Doc: "the command's exit status"},
		{Name: "stdout", Doc: "standard output (last 64 KiB, trailing newline trimmed, redacted)"},
		{Name: "stderr", Doc: "standard error (last 64 KiB, redacted)"},
	},
	Example: "command: [sh, -c, 'df -h /backups']\nenv: {LC_ALL: C}",
	Preview: func(env *engine.Env, p *ExecParams) []string {
		name, args := p.argv()
		line := "run: " + proc.CommandLine(env.Secrets, name, args...)
		if p.Dir != "" {
			line += " (in " + p.Dir + ")"
		}
		return []string{line}
	},
	Run: func(ctx context.Context, env *engine.Env, p *ExecParams) (engine.Outputs, error) {
		name, args := p.argv()
		res, err := proc.Run(ctx, proc.Cmd{
			Name: name, Args: args, Env: p.environ(env), Dir: p.Dir, Secrets: env.Secrets,
		})
		out := engine.Outputs{
			"exit_code": res.ExitCode,
			"stdout":    strings.TrimRight(res.Stdout, "\n"),
			"stderr":    res.Stderr,
		}
		if err != nil {
			return out, fmt.Errorf("%w", err)
		}
		return out, nil
	},
}
