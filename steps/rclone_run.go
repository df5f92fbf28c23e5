package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/childenv"
	"github.com/planrun/planrun/steps/internal/lines"
	"github.com/planrun/planrun/steps/internal/proc"
)

// rcloneStats is the "stats" object of rclone's JSON log lines (1.60+).
type rcloneStats struct {
	Bytes      int64  `json:"bytes"`
	Checks     int64  `json:"checks"`
	Deletes    int64  `json:"deletes"`
	Errors     int64  `json:"errors"`
	Transfers  int64  `json:"transfers"`
	FatalError bool   `json:"fatalError"`
	LastError  string `json:"lastError"`
}

type rcloneLogLine struct {
	Level   string       `json:"level"`
	Msg     string       `json:"msg"`
	Object  string       `json:"object"`
	Skipped string       `json:"skipped"`
	Stats   *rcloneStats `json:"stats"`
}

// rcloneLog collects what matters from rclone's --use-json-log stderr.
type rcloneLog struct {
	mu             sync.Mutex
	stats          *rcloneStats
	errors         []string
	skippedDeletes int64
	progress       func(int64)
}

func (l *rcloneLog) line(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return
	}
	var m rcloneLogLine
	if json.Unmarshal(b, &m) != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if m.Stats != nil {
		l.stats = m.Stats
		if l.progress != nil {
			l.progress(m.Stats.Bytes)
		}
	}
	if m.Skipped == "delete" {
		l.skippedDeletes++
	}
	if m.Level == "error" && len(l.errors) < maxReportedErrors {
		msg := m.Msg
		if m.Object != "" {
			msg = m.Object + ": " + msg
		}
		l.errors = append(l.errors, msg)
	}
}

// rcloneCall holds what every rclone invocation of one step shares.
type rcloneCall struct {
	env     *engine.Env
	bin     string
	environ []string
	p       *RcloneParams
}

func newRcloneCall(env *engine.Env, p *RcloneParams) *rcloneCall {
	// rclone 1.60's S3 backend fails with LoadCustomCABundleError when
	// AWS_CA_BUNDLE is set: never pass it on.
	environ := childenv.Unset(env.Environ, "AWS_CA_BUNDLE")
	env.Secrets.AddEnv(environ)
	bin := p.Binary
	if bin == "" {
		bin = "rclone"
	}
	return &rcloneCall{env: env, bin: bin, environ: environ, p: p}
}

// args builds an rclone command line: global flags, filters, then operands.
func (p *RcloneParams) args(cmd string, extra []string, operands ...string) []string {
	args := []string{cmd}
	if p.Config != "" {
		args = append(args, "--config", p.Config)
	}
	args = append(args, extra...)
	args = appendEach(args, "--include", p.Include)
	args = appendEach(args, "--exclude", p.Exclude)
	args = append(args, p.Flags...)
	return append(args, operands...)
}

// jsonLogFlags make rclone log JSON and print its final stats as one line.
var jsonLogFlags = []string{"--use-json-log", "--stats-one-line", "--stats", "10s", "--stats-log-level", "NOTICE"}

func (p *RcloneParams) transferArgs(dryRun bool, maxDelete int64) []string {
	extra := append([]string(nil), jsonLogFlags...)
	if p.Checksum {
		extra = append(extra, "--checksum")
	}
	if dryRun {
		extra = append(extra, "--dry-run")
	}
	if maxDelete >= 0 {
		extra = append(extra, "--max-delete", fmt.Sprint(maxDelete))
	}
	return p.args(p.Command, extra, p.Source, p.Dest)
}

func (p *RcloneParams) checkArgs() []string {
	extra := []string{"--use-json-log", "--combined", "-"}
	if p.OneWay {
		extra = append(extra, "--one-way")
	}
	return p.args("check", extra, p.Source, p.Dest)
}

func (p *RcloneParams) lsfArgs() []string {
	extra := []string{"--files-only"}
	if p.Recursive {
		extra = append(extra, "-R")
	}
	return p.args("lsf", extra, p.Source)
}

func (p *RcloneParams) sizeArgs(path string) []string {
	return p.args("size", []string{"--json"}, path)
}

// run runs rclone; stderr goes through the JSON log parser, stdout to
// onLine (or the captured tail when nil).
func (c *rcloneCall) run(ctx context.Context, args []string, onLine func([]byte)) (*rcloneLog, proc.Result, error) {
	log := &rcloneLog{progress: c.env.Progress}
	stderr := lines.New(log.line)
	cmd := proc.Cmd{Name: c.bin, Args: args, Env: c.environ, Stderr: stderr, Secrets: c.env.Secrets}
	var stdout *lines.Writer
	if onLine != nil {
		stdout = lines.New(onLine)
		cmd.Stdout = stdout
	}
	c.env.Log.Info("run", "cmd", proc.CommandLine(c.env.Secrets, c.bin, args...))
	res, err := proc.Run(ctx, cmd)
	stderr.Flush()
	if stdout != nil {
		stdout.Flush()
	}
	return log, res, err
}

func (c *rcloneCall) fail(what string, log *rcloneLog, err error) error {
	if len(log.errors) > 0 {
		return fmt.Errorf("rclone %s: %s (%v)", what, c.env.Secrets.Redact(strings.Join(firstN(log.errors, 3), "; ")), err)
	}
	return fmt.Errorf("rclone %s: %w", what, err)
}

func (c *rcloneCall) statsOutputs(log *rcloneLog) engine.Outputs {
	out := engine.Outputs{"bytes": int64(0), "files": int64(0), "deletes": int64(0), "checks": int64(0), "errors": int64(0)}
	msgs := make([]string, 0, len(log.errors))
	for _, e := range log.errors {
		msgs = append(msgs, c.env.Secrets.Redact(e))
	}
	out["error_messages"] = msgs
	if s := log.stats; s != nil {
		out["bytes"], out["files"], out["deletes"], out["checks"], out["errors"] = s.Bytes, s.Transfers, s.Deletes, s.Checks, s.Errors
		if c.env.Stats != nil {
			c.env.Stats.BytesOut.Add(s.Bytes)
		}
	}
	return out
}

// destCount returns the number of files in the destination (0 when it
// does not exist yet).
func (c *rcloneCall) destCount(ctx context.Context) (int64, error) {
	var buf bytes.Buffer
	log, _, err := c.run(ctx, c.p.sizeArgs(c.p.Dest), func(l []byte) { buf.Write(l) })
	if err != nil {
		var xe *proc.ExitError
		if errors.As(err, &xe) && xe.ExitCode == 3 { // directory not found
			return 0, nil
		}
		return 0, c.fail("size "+c.p.Dest, log, err)
	}
	var size struct {
		Count int64 `json:"count"`
	}
	if err := json.Unmarshal(buf.Bytes(), &size); err != nil {
		return 0, fmt.Errorf("rclone size --json: %w", err)
	}
	return size.Count, nil
}

func (c *rcloneCall) sync(ctx context.Context) (engine.Outputs, error) {
	p := c.p
	maxDelete := int64(-1)
	var planned, destFiles int64
	if p.MaxDeletePercent < 100 {
		log, _, err := c.run(ctx, p.transferArgs(true, -1), nil)
		if err != nil {
			return c.statsOutputs(log), c.fail("sync --dry-run", log, err)
		}
		planned = log.skippedDeletes
		if log.stats != nil && log.stats.Deletes > planned {
			planned = log.stats.Deletes
		}
		if destFiles, err = c.destCount(ctx); err != nil {
			return nil, err
		}
		allowed := destFiles * int64(p.MaxDeletePercent) / 100
		if planned > allowed {
			pct := 100 * planned / max(destFiles, 1)
			return engine.Outputs{"planned_deletes": planned, "dest_files": destFiles}, fmt.Errorf(
				"rclone sync refused: it would delete %d of %d files (%d%%) in %s, over max_delete_percent %d; check the source, or raise max_delete_percent",
				planned, destFiles, pct, c.env.Secrets.Redact(p.Dest), p.MaxDeletePercent)
		}
		// Second guard: the real sync may not delete more than allowed
		// even if the source shrank since the dry run.
		maxDelete = max(allowed, planned)
		c.env.Log.Info("rclone sync delete guard", "planned_deletes", planned, "dest_files", destFiles, "max_delete", maxDelete)
	}
	log, _, err := c.run(ctx, p.transferArgs(false, maxDelete), nil)
	out := c.statsOutputs(log)
	out["planned_deletes"], out["dest_files"] = planned, destFiles
	if err != nil {
		return out, c.fail("sync", log, err)
	}
	return out, nil
}

func (c *rcloneCall) copy(ctx context.Context) (engine.Outputs, error) {
	log, _, err := c.run(ctx, c.p.transferArgs(false, -1), nil)
	out := c.statsOutputs(log)
	if err != nil {
		return out, c.fail("copy", log, err)
	}
	return out, nil
}

// check runs `rclone check --combined -`, whose stdout has one line per
// file: "= " same, "* " differs, "+ " only in source, "- " only in dest,
// "! " error.
func (c *rcloneCall) check(ctx context.Context) (engine.Outputs, error) {
	var matches, diffs, missingDest, missingSrc, errs int64
	differing := []string{}
	log, _, err := c.run(ctx, c.p.checkArgs(), func(l []byte) {
		s := string(l)
		if len(s) < 2 || s[1] != ' ' {
			return
		}
		switch s[0] {
		case '=':
			matches++
			return
		case '*':
			diffs++
		case '+':
			missingDest++
		case '-':
			missingSrc++
		case '!':
			errs++
		default:
			return
		}
		if len(differing) < 100 {
			differing = append(differing, c.env.Secrets.Redact(s))
		}
	})
	ok := diffs+missingDest+missingSrc+errs == 0
	out := engine.Outputs{
		"matches": matches, "differences": diffs, "missing_on_dest": missingDest, "missing_on_source": missingSrc,
		"errors": errs, "differing": differing, "ok": ok && err == nil,
	}
	if c.p.OneWay {
		out["missing_on_source"] = int64(0) // not checked
	}
	if !ok {
		return out, fmt.Errorf("rclone check: %s and %s differ: %d differ, %d missing on dest, %d only in dest, %d unreadable",
			c.env.Secrets.Redact(c.p.Source), c.env.Secrets.Redact(c.p.Dest), diffs, missingDest, missingSrc, errs)
	}
	if err != nil {
		return out, c.fail("check", log, err)
	}
	return out, nil
}

func (c *rcloneCall) lsf(ctx context.Context) (engine.Outputs, error) {
	var count int64
	list := []string{}
	log, _, err := c.run(ctx, c.p.lsfArgs(), func(l []byte) {
		if len(l) == 0 {
			return
		}
		count++
		if len(list) < 10000 {
			list = append(list, string(l))
		}
	})
	if err != nil {
		return nil, c.fail("lsf", log, err)
	}
	return engine.Outputs{"count": count, "list": list}, nil
}

func (c *rcloneCall) size(ctx context.Context) (engine.Outputs, error) {
	var buf bytes.Buffer
	log, _, err := c.run(ctx, c.p.sizeArgs(c.p.Source), func(l []byte) { buf.Write(l) })
	if err != nil {
		return nil, c.fail("size", log, err)
	}
	var size struct {
		Count int64 `json:"count"`
		Bytes int64 `json:"bytes"`
	}
	if err := json.Unmarshal(buf.Bytes(), &size); err != nil {
		return nil, fmt.Errorf("rclone size --json: %w", err)
	}
	return engine.Outputs{"count": size.Count, "bytes": size.Bytes}, nil
}

func previewRclone(env *engine.Env, p *RcloneParams) []string {
	bin := p.Binary
	if bin == "" {
		bin = "rclone"
	}
	cl := func(args []string) string { return "run: " + proc.CommandLine(env.Secrets, bin, args...) }
	switch p.Command {
	case "sync":
		if p.MaxDeletePercent >= 100 {
			return []string{cl(p.transferArgs(false, -1))}
		}
		guarded := strings.Replace(cl(p.transferArgs(false, 0)), "--max-delete 0", "--max-delete <"+fmt.Sprint(p.MaxDeletePercent)+"% of dest files>", 1)
		return []string{
			cl(p.transferArgs(true, -1)) + " (count planned deletes)",
			cl(p.sizeArgs(p.Dest)) + fmt.Sprintf(" (refuse if deletes > %d%% of these files)", p.MaxDeletePercent),
			guarded,
		}
	case "copy":
		return []string{cl(p.transferArgs(false, -1))}
	case "check":
		return []string{cl(p.checkArgs())}
	case "lsf":
		return []string{cl(p.lsfArgs())}
	case "size":
		return []string{cl(p.sizeArgs(p.Source))}
	}
	return nil
}

func runRclone(ctx context.Context, env *engine.Env, p *RcloneParams) (engine.Outputs, error) {
	c := newRcloneCall(env, p)
	switch p.Command {
	case "sync":
		return c.sync(ctx)
	case "copy":
		return c.copy(ctx)
	case "check":
		return c.check(ctx)
	case "lsf":
		return c.lsf(ctx)
	case "size":
		return c.size(ctx)
	}
	return nil, fmt.Errorf("rclone: unknown command %q", p.Command)
}
