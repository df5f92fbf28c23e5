package engine

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// LogTailSize bounds run.log_tail (Healthchecks accepts 100 kB bodies).
const LogTailSize = 64 << 10

// NewLogger returns a logger writing one line per event to w, in "text"
// (key=value) or "json" format, with UTC timestamps.
func NewLogger(format string, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.String(slog.TimeKey, a.Value.Time().UTC().Format("2006-01-02T15:04:05.000Z"))
			}
			if a.Value.Kind() == slog.KindDuration {
				return slog.String(a.Key, a.Value.Duration().Round(time.Millisecond).String())
			}
			return a
		},
	}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(&minLevel{Handler: h, min: slog.LevelInfo})
}

// minLevel drops debug records unless PLANRUN_DEBUG is set by the caller.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m *minLevel) Enabled(_ context.Context, l slog.Level) bool { return l >= m.min }
func (m *minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return &minLevel{Handler: m.Handler.WithAttrs(a), min: m.min}
}
func (m *minLevel) WithGroup(g string) slog.Handler {
	return &minLevel{Handler: m.Handler.WithGroup(g), min: m.min}
}

// TailBuffer keeps the last n bytes written, cut at a line start.
type TailBuffer struct {
	mu  sync.Mutex
	n   int
	buf []byte
}

// NewTailBuffer returns a buffer keeping the last n bytes.
func NewTailBuffer(n int) *TailBuffer { return &TailBuffer{n: n} }

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.n {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.n:]...)
	}
	return len(p), nil
}

// String returns the kept tail, starting at a whole line.
func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > t.n {
		b = b[len(b)-t.n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
