package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/lines"
	"github.com/planrun/planrun/steps/internal/proc"
)

// resticMissingRe matches restic's "no repository here" errors; 0.14 has
// no distinct exit code for it (0.17+ exits 10).
var resticMissingRe = regexp.MustCompile(`(?i)unable to open config file|Is there a repository at the following location|repository does not exist`)

// resticExistsRe matches init's "already initialized" errors.
var resticExistsRe = regexp.MustCompile(`(?i)config file already exists|already initialized`)

func (c *resticCall) initRepo(ctx context.Context) (engine.Outputs, error) {
	_, res, err := c.output(ctx, "cat", "config")
	if err == nil {
		c.env.Log.Info("restic repository exists, not initialising")
		return engine.Outputs{"created": false}, nil
	}
	var xe *proc.ExitError
	if !errors.As(err, &xe) || !(xe.ExitCode == 10 || resticMissingRe.MatchString(res.Stderr)) {
		return engine.Outputs{"created": false}, fmt.Errorf("restic: cannot open the repository: %w", err)
	}
	out, res, err := c.output(ctx, "init")
	if err != nil {
		if resticExistsRe.MatchString(res.Stderr) { // created meanwhile
			return engine.Outputs{"created": false}, nil
		}
		return engine.Outputs{"created": false}, fmt.Errorf("restic init: %w", err)
	}
	id := parseInitID(string(out))
	c.env.Log.Info("restic repository created", "id", id)
	return engine.Outputs{"created": true, "repository_id": id}, nil
}

func (c *resticCall) backup(ctx context.Context, p *ResticParams) (engine.Outputs, error) {
	parser := &resticBackupParser{progress: c.env.Progress}
	lw := lines.New(parser.line)
	var err error
	switch {
	case p.StdinFile != "":
		_, err = c.backupStdin(ctx, p.backupArgs("stdin"), lw, func(w io.Writer) error {
			r, err := artifact.OpenWith(ctx, c.env, p.StdinFile, p.ReadOptions, artifact.Plain|artifact.VerifySidecar)
			if err != nil {
				return fmt.Errorf("stdin_file: %w", err)
			}
			defer r.Close()
			if _, err := io.Copy(w, r); err != nil {
				return fmt.Errorf("stdin_file %s: %w", p.StdinFile, err)
			}
			return nil
		})
	case len(p.StdinCommand) > 0:
		major, minor, verr := c.version(ctx)
		if verr == nil && hasStdinFromCommand(major, minor) {
			_, err = c.run(ctx, p.backupArgs("from-command"), nil, lw)
			break
		}
		_, err = c.backupStdin(ctx, p.backupArgs("stdin"), lw, func(w io.Writer) error {
			f := w.(*os.File) // the child writes straight into the pipe
			_, err := proc.Run(ctx, proc.Cmd{
				Name: p.StdinCommand[0], Args: p.StdinCommand[1:], Env: c.env.Environ, Stdout: f, Secrets: c.env.Secrets,
			})
			return err
		})
	default:
		_, err = c.run(ctx, p.backupArgs("paths"), nil, lw)
	}
	lw.Flush()

	out := engine.Outputs{"errors": parser.errors}
	if parser.errors == nil {
		out["errors"] = []string{}
	}
	s := parser.summary
	if s != nil && s.SnapshotID != "" {
		out["snapshot_id"] = s.SnapshotID
		out["snapshot_short_id"] = s.SnapshotID[:min(8, len(s.SnapshotID))]
		out["files_new"] = s.FilesNew
		out["files_changed"] = s.FilesChanged
		out["files_unmodified"] = s.FilesUnmodified
		out["data_added"] = s.DataAdded
		out["total_files"] = s.TotalFilesProcessed
		out["total_bytes"] = s.TotalBytesProcessed
		if c.env.Stats != nil {
			c.env.Stats.BytesIn.Add(s.TotalBytesProcessed)
			c.env.Stats.BytesOut.Add(s.DataAdded)
		}
	}
	if err != nil {
		var xe *proc.ExitError
		if errors.As(err, &xe) && xe.ExitCode == 3 && s != nil && s.SnapshotID != "" {
			msg := fmt.Sprintf("restic backup: snapshot %s is incomplete: %d file(s) could not be read: %s",
				s.SnapshotID, len(parser.errors), strings.Join(firstN(parser.errors, 5), "; "))
			if p.AllowIncomplete {
				c.env.Log.Warn(msg)
				return out, nil
			}
			return out, errors.New(c.env.Secrets.Redact(msg))
		}
		return out, fmt.Errorf("restic backup: %w", err)
	}
	if s == nil || s.SnapshotID == "" {
		return out, errors.New("restic backup: no summary with a snapshot id in restic's output")
	}
	c.env.Log.Info("restic snapshot saved", "snapshot", s.SnapshotID, "data_added", s.DataAdded)
	return out, nil
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// backupStdin runs restic with its stdin on an OS pipe fed by produce.
// The parent keeps the write end until produce finishes, so restic sees
// EOF (and saves a snapshot) only after a complete, successful stream;
// when produce fails, restic is stopped first and only then the pipe
// closed: a partial stream never becomes a snapshot.
func (c *resticCall) backupStdin(ctx context.Context, args []string, stdout io.Writer, produce func(w io.Writer) error) (proc.Result, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return proc.Result{}, err
	}
	rctx, stopRestic := context.WithCancel(ctx)
	defer stopRestic()
	type result struct {
		res proc.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.run(rctx, args, r, stdout)
		r.Close() // a producer still writing now gets EPIPE instead of blocking
		done <- result{res, err}
	}()

	perr := produce(w)
	if perr != nil {
		var rr result
		select {
		case rr = <-done: // restic ended on its own: its error comes first
			w.Close()
			if rr.err != nil {
				return rr.res, fmt.Errorf("%w (backup source: %v)", rr.err, perr)
			}
		default:
			stopRestic()
			rr = <-done
			w.Close()
		}
		if ctx.Err() != nil {
			return rr.res, fmt.Errorf("stopped before saving a snapshot: %w", ctx.Err())
		}
		// %v, not %w: the source's exit status must not pass for restic's.
		return rr.res, fmt.Errorf("backup source failed, restic stopped before saving a snapshot: %v", perr)
	}
	w.Close() // EOF: restic completes the snapshot
	rr := <-done
	return rr.res, rr.err
}

func (c *resticCall) forget(ctx context.Context, p *ResticParams) (engine.Outputs, error) {
	stdout, _, err := c.output(ctx, p.forgetArgs()...)
	removed, kept, perr := parseForget(stdout)
	out := engine.Outputs{}
	if perr == nil {
		out["removed"], out["kept"], out["removed_count"] = removed, kept, len(removed)
		c.env.Log.Info("restic forget", "removed", len(removed), "kept", len(kept), "prune", p.Prune)
	}
	if err != nil {
		return out, fmt.Errorf("restic forget: %w", err)
	}
	if perr != nil {
		return out, perr
	}
	return out, nil
}

func (c *resticCall) check(ctx context.Context, p *ResticParams) (engine.Outputs, error) {
	stdout, _, err := c.output(ctx, p.checkArgs()...)
	report := c.env.Secrets.Redact(strings.TrimSpace(string(stdout)))
	out := engine.Outputs{"ok": err == nil, "report": lastLinesOf(report, 20)}
	if err != nil {
		return out, fmt.Errorf("restic check: %w: %s", err, lastLinesOf(report, 10))
	}
	return out, nil
}

func lastLinesOf(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func (c *resticCall) snapshots(ctx context.Context, p *ResticParams) (engine.Outputs, error) {
	stdout, _, err := c.output(ctx, p.snapshotsArgs()...)
	if err != nil {
		return nil, fmt.Errorf("restic snapshots: %w", err)
	}
	snaps, err := parseSnapshots(stdout)
	if err != nil {
		return nil, err
	}
	list := make([]any, 0, len(snaps))
	latest, latestTime := "", time.Time{}
	for _, s := range snaps {
		list = append(list, s.output())
		if t, err := time.Parse(time.RFC3339Nano, s.Time); err == nil && !t.Before(latestTime) {
			latest, latestTime = s.ID, t
		}
	}
	return engine.Outputs{"snapshots": list, "count": len(snaps), "latest_id": latest}, nil
}

func (c *resticCall) restore(ctx context.Context, p *ResticParams) (engine.Outputs, error) {
	if _, _, err := c.output(ctx, p.restoreArgs()...); err != nil {
		return nil, fmt.Errorf("restic restore: %w", err)
	}
	snap := p.Snapshot
	if snap == "" {
		snap = "latest"
	}
	return engine.Outputs{"snapshot": snap, "target": p.Target}, nil
}
