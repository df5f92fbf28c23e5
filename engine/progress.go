package engine

import (
	"fmt"
	"io"
	"sync"
	"time"
)

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
