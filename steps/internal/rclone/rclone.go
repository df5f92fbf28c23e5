// Package rclone runs the rclone CLI for the rclone-* step types: remotes
// come from the config file or RCLONE_CONFIG_<NAME>_* variables, never
// argv; rclone's JSON log and final stats are parsed here.
package rclone

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/argv"
	"github.com/planrun/planrun/steps/internal/childenv"
	"github.com/planrun/planrun/steps/internal/lines"
	"github.com/planrun/planrun/steps/internal/proc"
)

// Options are the params every rclone-* step type shares (inline).
type Options struct {
	Config  string   `yaml:"config" secret:"file" doc:"rclone config file; default RCLONE_CONFIG or rclone's own (remotes may also be RCLONE_CONFIG_<NAME>_* variables)"`
	Include []string `yaml:"include" doc:"--include patterns"`
	Exclude []string `yaml:"exclude" doc:"--exclude patterns"`
	Flags   []string `yaml:"flags" doc:"extra rclone flags (e.g. --transfers=8); never credentials"`
	Binary  string   `yaml:"binary" default:"rclone" tool:"true" doc:"rclone program (a name in PATH or a path)"`
}

// Bin is the rclone program to run.
func (o Options) Bin() string {
	if o.Binary == "" {
		return "rclone"
	}
	return o.Binary
}

// CommandLine renders an rclone command line for logs and dry runs.
func (o Options) CommandLine(secrets *engine.Redactor, args []string) string {
	return proc.CommandLine(secrets, o.Bin(), args...)
}

// connStringSecretRe finds key=value params of an on-the-fly remote
// (":s3,secret_access_key=...:bucket"): credentials in argv.
var connStringSecretRe = regexp.MustCompile(`[,:]([A-Za-z0-9_-]+)=`)

// Validate keeps credentials out of argv: in flags and in the remotes
// (name: value pairs of the step's path params).
func (o *Options) Validate(remotes ...[2]string) error {
	for _, where := range remotes {
		for _, m := range connStringSecretRe.FindAllStringSubmatch(where[1], -1) {
			if engine.IsSecretName(m[1]) {
				return fmt.Errorf("%s: %q in a connection string would put a credential in rclone's argv: define the remote in the config file or RCLONE_CONFIG_<NAME>_* variables", where[0], m[1])
			}
		}
	}
	for _, f := range o.Flags {
		name, _, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
		if strings.HasPrefix(f, "-") && engine.IsSecretName(name) {
			return fmt.Errorf("flags: %s would put a credential in rclone's argv: use the config file or RCLONE_* variables", "--"+name)
		}
		if name == "dry-run" || name == "max-delete" {
			return fmt.Errorf("flags: %s is managed by the step (see rclone-sync's max_delete_percent)", "--"+name)
		}
	}
	return nil
}

// Args builds an rclone command line: global flags, filters, then operands.
func (o Options) Args(cmd string, extra []string, operands ...string) []string {
	args := []string{cmd}
	if o.Config != "" {
		args = append(args, "--config", o.Config)
	}
	args = append(args, extra...)
	args = argv.AppendEach(args, "--include", o.Include)
	args = argv.AppendEach(args, "--exclude", o.Exclude)
	args = append(args, o.Flags...)
	return append(args, operands...)
}

// JSONLogFlags make rclone log JSON and print its final stats as one line.
var JSONLogFlags = []string{"--use-json-log", "--stats-one-line", "--stats", "10s", "--stats-log-level", "NOTICE"}

// SizeArgs is `size --json path`.
func (o Options) SizeArgs(path string) []string { return o.Args("size", []string{"--json"}, path) }

// Stats is the "stats" object of rclone's JSON log lines (1.60+).
type Stats struct {
	Bytes      int64  `json:"bytes"`
	Checks     int64  `json:"checks"`
	Deletes    int64  `json:"deletes"`
	Errors     int64  `json:"errors"`
	Transfers  int64  `json:"transfers"`
	FatalError bool   `json:"fatalError"`
	LastError  string `json:"lastError"`
}

type logLine struct {
	Level   string `json:"level"`
	Msg     string `json:"msg"`
	Object  string `json:"object"`
	Skipped string `json:"skipped"`
	Stats   *Stats `json:"stats"`
}

// maxErrors bounds the error lines kept.
const maxErrors = 50

// Log collects what matters from rclone's --use-json-log stderr.
type Log struct {
	mu             sync.Mutex
	Stats          *Stats
	Errors         []string
	SkippedDeletes int64
	Progress       func(int64)
}

// Line consumes one line of rclone's stderr.
func (l *Log) Line(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return
	}
	var m logLine
	if json.Unmarshal(b, &m) != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if m.Stats != nil {
		l.Stats = m.Stats
		if l.Progress != nil {
			l.Progress(m.Stats.Bytes)
		}
	}
	if m.Skipped == "delete" {
		l.SkippedDeletes++
	}
	if m.Level == "error" && len(l.Errors) < maxErrors {
		msg := m.Msg
		if m.Object != "" {
			msg = m.Object + ": " + msg
		}
		l.Errors = append(l.Errors, msg)
	}
}

// Call holds what every rclone invocation of one step shares.
type Call struct {
	Env     *engine.Env
	Bin     string
	Environ []string
}

// New prepares rclone's environment.
func New(env *engine.Env, o Options) *Call {
	// rclone 1.60's S3 backend fails with LoadCustomCABundleError when
	// AWS_CA_BUNDLE is set: never pass it on.
	environ := childenv.Unset(env.Environ, "AWS_CA_BUNDLE")
	env.Secrets.AddEnv(environ)
	return &Call{Env: env, Bin: o.Bin(), Environ: environ}
}

// Run runs rclone; stderr goes through the JSON log parser, stdout to
// onLine (or the captured tail when nil).
func (c *Call) Run(ctx context.Context, args []string, onLine func([]byte)) (*Log, proc.Result, error) {
	log := &Log{Progress: c.Env.Progress.Set}
	stderr := lines.New(log.Line)
	cmd := proc.Cmd{Name: c.Bin, Args: args, Env: c.Environ, Stderr: stderr, Secrets: c.Env.Secrets}
	var stdout *lines.Writer
	if onLine != nil {
		stdout = lines.New(onLine)
		cmd.Stdout = stdout
	}
	c.Env.Log.Info("run", "cmd", proc.CommandLine(c.Env.Secrets, c.Bin, args...))
	res, err := proc.Run(ctx, cmd)
	stderr.Flush()
	if stdout != nil {
		stdout.Flush()
	}
	return log, res, err
}

// Fail names what failed with rclone's first error lines.
func (c *Call) Fail(what string, log *Log, err error) error {
	if len(log.Errors) > 0 {
		return fmt.Errorf("rclone %s: %s (%v)", what, c.Env.Secrets.Redact(strings.Join(log.Errors[:min(3, len(log.Errors))], "; ")), err)
	}
	return fmt.Errorf("rclone %s: %w", what, err)
}

// StatsOutputs are the transfer outputs from the final stats.
func (c *Call) StatsOutputs(log *Log) engine.Outputs {
	out := engine.Outputs{"bytes": int64(0), "files": int64(0), "deletes": int64(0), "checks": int64(0), "errors": int64(0)}
	msgs := make([]string, 0, len(log.Errors))
	for _, e := range log.Errors {
		msgs = append(msgs, c.Env.Secrets.Redact(e))
	}
	out["error_messages"] = msgs
	if s := log.Stats; s != nil {
		out["bytes"], out["files"], out["deletes"], out["checks"], out["errors"] = s.Bytes, s.Transfers, s.Deletes, s.Checks, s.Errors
		if c.Env.Stats != nil {
			c.Env.Stats.BytesOut.Add(s.Bytes)
		}
	}
	return out
}

// StatsDocs document StatsOutputs for step declarations.
var StatsDocs = []engine.Output{
	{Name: "bytes", Doc: "bytes transferred"},
	{Name: "files", Doc: "files transferred"},
	{Name: "deletes", Doc: "files deleted"},
	{Name: "checks", Doc: "files checked"},
	{Name: "errors", Doc: "error count"},
	{Name: "error_messages", Doc: "rclone's error lines (first 50, redacted)"},
}

// Size is what `rclone size --json` reports.
type Size struct {
	Count int64 `json:"count"`
	Bytes int64 `json:"bytes"`
}

// Size runs `rclone size --json path`; missing says whether the path
// does not exist (rclone exit 3), which is an error unless allowed.
func (c *Call) Size(ctx context.Context, o Options, path string, allowMissing bool) (Size, error) {
	var buf bytes.Buffer
	log, _, err := c.Run(ctx, o.SizeArgs(path), func(l []byte) { buf.Write(l) })
	if err != nil {
		var xe *proc.ExitError
		if allowMissing && errors.As(err, &xe) && xe.ExitCode == 3 { // directory not found
			return Size{}, nil
		}
		return Size{}, c.Fail("size "+path, log, err)
	}
	var size Size
	if err := json.Unmarshal(buf.Bytes(), &size); err != nil {
		return Size{}, fmt.Errorf("rclone size --json: %w", err)
	}
	return size, nil
}

// ArgsFunc builds a deleting command line: with --dry-run or not, and
// with --max-delete n unless n < 0.
type ArgsFunc func(dryRun bool, maxDelete int64) []string

// guard is what the delete guard's dry run found.
type guard struct {
	planned   int64 // deletes the dry run would do
	destFiles int64 // files at the destination now
	maxDelete int64 // --max-delete for the real run
}

// GuardedRun runs a command that deletes at dest (sync, delete). Unless
// pct is 100 it first dry-runs it, counts the files at dest and refuses
// when the planned deletes exceed pct percent of them; the real run then
// gets --max-delete as a second guard, in case the source changed since.
func (c *Call) GuardedRun(ctx context.Context, o Options, what string, args ArgsFunc, dest string, pct int) (engine.Outputs, error) {
	g := guard{maxDelete: -1}
	if pct < 100 {
		log, _, err := c.Run(ctx, args(true, -1), nil)
		if err != nil {
			return c.StatsOutputs(log), c.Fail(what+" --dry-run", log, err)
		}
		g.planned = log.SkippedDeletes
		if log.Stats != nil && log.Stats.Deletes > g.planned {
			g.planned = log.Stats.Deletes
		}
		size, err := c.Size(ctx, o, dest, true)
		if err != nil {
			return nil, err
		}
		g.destFiles = size.Count
		allowed := g.destFiles * int64(pct) / 100
		if g.planned > allowed {
			return engine.Outputs{"planned_deletes": g.planned, "dest_files": g.destFiles}, fmt.Errorf(
				"rclone %s refused: it would delete %d of %d files (%d%%) in %s, over max_delete_percent %d; check the source, or raise max_delete_percent",
				what, g.planned, g.destFiles, 100*g.planned/max(g.destFiles, 1), c.Env.Secrets.Redact(dest), pct)
		}
		g.maxDelete = max(allowed, g.planned)
		c.Env.Log.Info("rclone delete guard", "planned_deletes", g.planned, "dest_files", g.destFiles, "max_delete", g.maxDelete)
	}
	log, _, err := c.Run(ctx, args(false, g.maxDelete), nil)
	out := c.StatsOutputs(log)
	out["planned_deletes"], out["dest_files"] = g.planned, g.destFiles
	if err != nil {
		return out, c.Fail(what, log, err)
	}
	return out, nil
}

// GuardDocs document GuardedRun's outputs besides StatsDocs.
var GuardDocs = []engine.Output{
	{Name: "planned_deletes", Doc: "deletes the dry run found"},
	{Name: "dest_files", Doc: "files at the destination (after include/exclude) before the run"},
}

// GuardedPreview describes GuardedRun for dry runs.
func (o Options) GuardedPreview(secrets *engine.Redactor, args ArgsFunc, dest string, pct int) []string {
	cl := func(args []string) string { return "run: " + o.CommandLine(secrets, args) }
	if pct >= 100 {
		return []string{cl(args(false, -1))}
	}
	return []string{
		cl(args(true, -1)) + " (count planned deletes)",
		cl(o.SizeArgs(dest)) + fmt.Sprintf(" (refuse if deletes > %d%% of these files)", pct),
		strings.Replace(cl(args(false, 0)), "--max-delete 0", "--max-delete <"+fmt.Sprint(pct)+"% of dest files>", 1),
	}
}
