package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ProgressLogEvery is how often a long stream logs a progress line when no
// live line is drawn (cron, CI, a pipe).
var ProgressLogEvery = 10 * time.Second

// Progress is a step's count of bytes streamed so far: the runner shows it
// as a live line on a terminal, or as a log line every ProgressLogEvery.
// Each byte is reported once, by one place: the artifact writer for what
// it writes, the artifact reader for what it reads when no writer counts
// the same stream, or a tool's own totals (restic, rclone) through Set.
// Steps do not wrap their streams to report it again. The methods are safe
// for concurrent use and on a nil *Progress (which counts nothing).
type Progress struct {
	done atomic.Int64

	mu      sync.Mutex
	show    func(done int64)
	log     *slog.Logger
	start   time.Time
	lastLog time.Time
}

// NewProgress returns a count that calls show (may be nil) with the total
// about once per MiB streamed and logs to log (may be nil) periodically.
func NewProgress(show func(done int64), log *slog.Logger) *Progress {
	now := time.Now()
	return &Progress{show: show, log: log, start: now, lastLog: now}
}

// Add counts n more bytes streamed. It is cheap on the hot path: the total
// is shown and the clock read only when it crosses a MiB boundary.
func (p *Progress) Add(n int64) {
	if p == nil || n <= 0 {
		return
	}
	done := p.done.Add(n)
	if (done-n)>>20 != done>>20 {
		p.report(done)
	}
}

// Set replaces the count with a total a tool measured itself.
func (p *Progress) Set(done int64) {
	if p == nil {
		return
	}
	p.done.Store(done)
	p.report(done)
}

// Done is the count so far.
func (p *Progress) Done() int64 {
	if p == nil {
		return 0
	}
	return p.done.Load()
}

func (p *Progress) report(done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.show != nil {
		p.show(done)
	}
	if p.log == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.lastLog) < ProgressLogEvery {
		return
	}
	p.lastLog = now
	level := slog.LevelInfo
	if p.show != nil {
		level = slog.LevelDebug // the live line already shows it
	}
	el := now.Sub(p.start)
	p.log.Log(context.Background(), level, "progress", "bytes", done,
		"human", humanBytes(float64(done)), "rate", humanBytes(float64(done)/max(el.Seconds(), 0.001))+"/s",
		"elapsed", el.Round(time.Second).String())
}

// progressLine draws a live "step: bytes, rate, elapsed" line on a
// terminal, at most a few times a second.
type progressLine struct {
	mu    sync.Mutex
	w     io.Writer
	step  string
	start time.Time
	last  time.Time
	drawn bool
}

func newProgressLine(w io.Writer, step string) *progressLine {
	return &progressLine{w: w, step: step, start: time.Now()}
}

func (p *progressLine) update(done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond {
		return
	}
	p.last = now
	el := now.Sub(p.start)
	rate := float64(done) / max(el.Seconds(), 0.001)
	fmt.Fprintf(p.w, "\r\033[K  %s: %s  %s/s  %s", p.step, humanBytes(float64(done)), humanBytes(rate), el.Round(time.Second))
	p.drawn = true
}

func (p *progressLine) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func humanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}
