package artifact

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/planrun/planrun/engine"
)

// LogEvery is how often a long stream logs a progress line when no live
// progress callback is installed (cron, CI, a pipe).
var LogEvery = 10 * time.Second

// progress reports bytes streamed: to env.Progress (the CLI's live TTY
// line) on every update, and as a periodic log line otherwise.
type progress struct {
	what     string
	callback func(int64)
	log      *slog.Logger
	start    time.Time
	lastLog  time.Time
	done     int64
	lastCall int64
	pending  int64
}

func newProgress(env *engine.Env, what string) *progress {
	p := &progress{what: what, start: time.Now()}
	p.lastLog = p.start
	if env != nil {
		p.callback = env.Progress
		p.log = env.Log
	}
	return p
}

// add counts n more bytes. About once per MiB it calls back and looks at
// the clock, which keeps the hot path cheap.
func (p *progress) add(n int) {
	p.done += int64(n)
	p.pending += int64(n)
	if p.pending < 1<<20 {
		return
	}
	p.pending = 0
	if p.callback != nil {
		p.lastCall = p.done
		p.callback(p.done)
	}
	if p.log == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.lastLog) < LogEvery {
		return
	}
	p.lastLog = now
	level := slog.LevelInfo
	if p.callback != nil {
		level = slog.LevelDebug // the live line already shows it
	}
	p.log.Log(context.Background(), level, "progress", "what", p.what, "bytes", p.done,
		"human", HumanBytes(p.done), "rate", Rate(p.done, now.Sub(p.start)),
		"elapsed", now.Sub(p.start).Round(time.Second).String())
}

// finish gives the callback the final count.
func (p *progress) finish() {
	if p.callback != nil && p.lastCall != p.done {
		p.callback(p.done)
	}
}

// HumanBytes renders a byte count with a binary unit ("1.5 GiB").
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Rate renders bytes per second over d.
func Rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return HumanBytes(int64(float64(n)/d.Seconds())) + "/s"
}
