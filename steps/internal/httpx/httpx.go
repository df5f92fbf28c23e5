// Package httpx is how steps speak HTTP: the one client shape they use
// (go-retryablehttp retrying connection errors, 429 and 5xx, never other
// 4xx, with a logger that goes through the step's redacting slog logger),
// and the request params http-get and http-post share (Request: URL,
// credentials, retries and the checks on the answer).
package httpx

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
)

// Options configure New. Zero values pick the documented defaults.
type Options struct {
	// Retries is the number of retries after the first attempt (0: none).
	Retries int
	// HeaderTimeout bounds the wait for response headers of one attempt
	// (0: no limit; the caller's context still applies). It does not limit
	// streaming a long body, which a whole-request timeout would cut off.
	HeaderTimeout time.Duration
	// WaitMin/WaitMax bound the exponential backoff (default 1s / 30s).
	WaitMin, WaitMax time.Duration
	// Log receives retry messages (nil: silent).
	Log *slog.Logger
}

// New returns a retrying client. Its ErrorHandler hands back the last
// response after the retries are exhausted (instead of an opaque "giving
// up" error), so callers can report the server's status and body.
func New(o Options) *retryablehttp.Client {
	c := retryablehttp.NewClient()
	tr := cleanhttp.DefaultPooledTransport()
	tr.ResponseHeaderTimeout = o.HeaderTimeout
	c.HTTPClient = &http.Client{Transport: tr}
	c.RetryMax = o.Retries
	c.RetryWaitMin, c.RetryWaitMax = time.Second, 30*time.Second
	if o.WaitMin > 0 {
		c.RetryWaitMin = o.WaitMin
	}
	if o.WaitMax > 0 {
		c.RetryWaitMax = o.WaitMax
	}
	c.CheckRetry = retryablehttp.DefaultRetryPolicy
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	c.Logger = nil
	if o.Log != nil {
		c.Logger = leveled{o.Log}
	}
	return c
}

// leveled adapts slog to retryablehttp.LeveledLogger; per-request debug
// chatter is dropped, retries are logged at warn.
type leveled struct{ l *slog.Logger }

func (l leveled) Error(msg string, kv ...any) { l.l.Error(msg, kv...) }
func (l leveled) Info(msg string, kv ...any)  { l.l.Info(msg, kv...) }
func (l leveled) Debug(msg string, kv ...any) {
	if strings.Contains(msg, "retrying") {
		l.l.Warn(msg, kv...)
	}
}
func (l leveled) Warn(msg string, kv ...any) { l.l.Warn(msg, kv...) }

// StatusError describes an unexpected HTTP status with a short body excerpt.
type StatusError struct {
	Method, URL string
	Status      int
	Body        string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s %s: HTTP %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if b := strings.TrimSpace(e.Body); b != "" {
		msg += ": " + b
	}
	return msg
}

// NewStatusError reads up to 2 KiB of resp's body into a StatusError and
// closes the body. url should already be redacted.
func NewStatusError(resp *http.Response, url string) *StatusError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 2<<10))
	resp.Body.Close()
	return &StatusError{Method: resp.Request.Method, URL: url, Status: resp.StatusCode, Body: string(b)}
}
