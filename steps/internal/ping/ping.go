// Package ping sends Healthchecks.io-protocol pings
// (https://healthchecks.io/docs/http_api/) with bounded retries: a start,
// success, fail, log or exit-status signal on <url>[/start|/fail|/log|/<code>],
// an optional rid (run id, a canonical UUID) and an optional text body.
package ping

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/planrun/planrun/steps/internal/httpx"
)

// Backoff bounds between attempts; variables so tests need not wait.
var (
	RetryWaitMin = 500 * time.Millisecond
	RetryWaitMax = 5 * time.Second
)

// NewClient is httpx's retrying client (connection errors, 429 and 5xx,
// never other 4xx; the last response handed back) with a whole-request
// timeout per attempt, the ping backoff, and a callback per retry so the
// step can log it redacted.
func NewClient(timeout time.Duration, retries int, onRetry func(attempt int, resp *http.Response, err error)) *retryablehttp.Client {
	c := httpx.New(httpx.Options{Retries: max(retries, 0), WaitMin: RetryWaitMin, WaitMax: RetryWaitMax})
	c.HTTPClient.Timeout = timeout
	attempt := 0
	c.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		attempt++
		retry, cerr := retryablehttp.DefaultRetryPolicy(ctx, resp, err)
		if retry && onRetry != nil && attempt <= c.RetryMax {
			onRetry(attempt, resp, err)
		}
		return retry, cerr
	}
	return c
}

// Signal suffixes of the ping URL.
const (
	Success = "success"
	Start   = "start"
	Fail    = "fail"
	Log     = "log"
)

// URL builds the ping URL: base plus "/start", "/fail", "/log" or
// "/<exit code>" (nothing for success), keeping base's query (e.g.
// create=1 for slug URLs) and adding rid when given.
func URL(base, signal, rid string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil {
		return "", fmt.Errorf("invalid ping url") // the url is a secret: never echo it
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("ping url must be an http(s) URL with a host")
	}
	switch signal {
	case "", Success:
	case Start, Fail, Log:
		u.Path = strings.TrimRight(u.Path, "/") + "/" + signal
	default:
		code, err := strconv.Atoi(signal)
		if err != nil || code < 0 || code > 255 {
			return "", fmt.Errorf("unknown ping signal %q (start, success, fail, log or an exit status 0-255)", signal)
		}
		u.Path = strings.TrimRight(u.Path, "/") + "/" + strconv.Itoa(code)
	}
	u.RawPath = ""
	if rid != "" {
		q := u.Query()
		q.Set("rid", rid)
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// SecretForms returns the forms of a ping URL that must be redacted: the
// URL itself and the URL without its query (which prefixes every signal
// URL even when base carries a query).
func SecretForms(base string) []string {
	out := []string{base}
	if u, err := url.Parse(strings.TrimSpace(base)); err == nil {
		out = append(out, strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"))
		if pw, ok := u.User.Password(); ok {
			out = append(out, pw)
		}
	}
	return out
}

// Display renders a ping URL for logs and dry-run: scheme and host
// stay, the path (UUID or ping key: a credential) is masked.
func Display(base, signal string) string {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil || u.Host == "" {
		return "***"
	}
	s := u.Scheme + "://" + u.Host + "/***"
	if signal != "" && signal != Success {
		s += "/" + signal
	}
	return s
}

// namespace for name-based run UUIDs (a fixed, random UUID of planrun's).
var namespace = uuid.MustParse("9c4f7d1e-3b52-4c86-a0e5-6f2d8b1a7c39")

// RunUUID turns a run id into the canonical UUID the rid parameter
// requires: a UUID run id is normalised, anything else (ULID, timestamp,
// free text) maps to a stable name-based (v5) UUID, so start and end
// pings of one run carry the same rid. An empty run id gives "".
func RunUUID(runID string) string {
	runID = strings.TrimSpace(runID)
	if runID == "" {
		return ""
	}
	if u, err := uuid.Parse(runID); err == nil {
		return u.String()
	}
	return uuid.NewSHA1(namespace, []byte(runID)).String()
}

// TailBody keeps the last limit bytes of s on a UTF-8 boundary (the
// service stores bodies that look like UTF-8, so never split a rune),
// marking a cut with a leading "…" line.
func TailBody(s string, limit int) string {
	if limit <= 0 || len(s) <= limit {
		return s
	}
	const mark = "[…truncated]\n"
	keep := limit - len(mark)
	if keep <= 0 {
		keep, s = limit, s[len(s)-limit:]
		for len(s) > 0 && !utf8.RuneStart(s[0]) {
			s = s[1:]
		}
		return s
	}
	t := s[len(s)-keep:]
	for len(t) > 0 && !utf8.RuneStart(t[0]) {
		t = t[1:]
	}
	return mark + t
}

// Result is the outcome of a ping.
type Result struct {
	Status   int // last HTTP status (0: no response)
	Attempts int
}

// Send pings u (a URL from URL) with body (POST when non-empty, GET
// otherwise). A non-2xx final answer is an error naming the status.
func Send(ctx context.Context, c *retryablehttp.Client, u, body string) (Result, error) {
	var res Result
	method, reqBody := http.MethodGet, any(nil)
	if body != "" {
		method, reqBody = http.MethodPost, []byte(body)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, u, reqBody)
	if err != nil {
		return res, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	}
	req.Header.Set("User-Agent", "planrun")
	c.RequestLogHook = func(_ retryablehttp.Logger, _ *http.Request, attempt int) { res.Attempts = attempt + 1 }
	resp, err := c.Do(req)
	if resp != nil {
		res.Status = resp.StatusCode
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
	}
	if err != nil {
		return res, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return res, fmt.Errorf("ping answered %s", resp.Status)
	}
	return res, nil
}
