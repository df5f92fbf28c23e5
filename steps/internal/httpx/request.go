package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/planrun/planrun/engine"
)

// BasicAuth is the basic_auth block of the http steps.
type BasicAuth struct {
	User        string `yaml:"user" required:"true" doc:"user name"`
	Password    string `yaml:"password" secret:"true" doc:"password; prefer password_env"`
	PasswordEnv string `yaml:"password_env" doc:"name of the environment variable holding the password"`
}

// Request is embedded (inline) in the params of http-get and http-post:
// the request, its credentials, retries and the checks on the answer.
type Request struct {
	URL                string            `yaml:"url" required:"true" doc:"request URL"`
	Headers            map[string]string `yaml:"headers" doc:"request headers (not secret; see secret_headers, headers_from_env)"`
	SecretHeaders      map[string]string `yaml:"secret_headers" secret:"true" doc:"request headers whose values are secrets (redacted everywhere)"`
	HeadersFromEnv     map[string]string `yaml:"headers_from_env" doc:"header name → environment variable holding its (secret) value, e.g. {Authorization: API_AUTH}"`
	BasicAuth          *BasicAuth        `yaml:"basic_auth" doc:"HTTP basic authentication"`
	Timeout            engine.Duration   `yaml:"timeout" default:"10m" doc:"limit for the whole request, body included, per attempt"`
	Retries            int               `yaml:"retries" default:"3" doc:"retries on connection errors, 429 and 5xx (never on other 4xx)"`
	ExpectStatus       int               `yaml:"expect_status" doc:"required status code (default: any 2xx)"`
	ExpectJSON         bool              `yaml:"expect_json" doc:"fail unless the response body is valid JSON"`
	ExpectBodyContains string            `yaml:"expect_body_contains" doc:"fail unless the response body contains this text"`
}

// Check enforces the request rules (the steps' Validate calls it).
func (r *Request) Check() error {
	if r.BasicAuth != nil && r.BasicAuth.Password != "" && r.BasicAuth.PasswordEnv != "" {
		return errors.New("basic_auth: give password or password_env, not both")
	}
	if r.ExpectStatus != 0 && (r.ExpectStatus < 100 || r.ExpectStatus > 599) {
		return fmt.Errorf("expect_status: %d is not an HTTP status", r.ExpectStatus)
	}
	if !strings.Contains(r.URL, "${{") {
		if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("url: %q is not an http(s) URL", r.URL)
		}
	}
	return nil
}

// ResolveHeaders resolves all request headers, registering secret values.
func (r *Request) ResolveHeaders(env *engine.Env) (http.Header, error) {
	h := http.Header{}
	for k, v := range r.Headers {
		h.Set(k, v)
	}
	for k, v := range r.SecretHeaders {
		env.Secrets.Add(v)
		h.Set(k, v)
	}
	names := make([]string, 0, len(r.HeadersFromEnv))
	for k := range r.HeadersFromEnv {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v, ok := engine.LookupEnv(env.Environ, r.HeadersFromEnv[k])
		if !ok || v == "" {
			return nil, fmt.Errorf("headers_from_env: %s (for header %s) is not set", r.HeadersFromEnv[k], k)
		}
		env.Secrets.Add(v)
		h.Set(k, v)
	}
	if b := r.BasicAuth; b != nil {
		pw := b.Password
		if b.PasswordEnv != "" {
			v, ok := engine.LookupEnv(env.Environ, b.PasswordEnv)
			if !ok || v == "" {
				return nil, fmt.Errorf("basic_auth.password_env: %s is not set", b.PasswordEnv)
			}
			pw = v
		}
		env.Secrets.Add(pw)
		req := &http.Request{Header: http.Header{}}
		req.SetBasicAuth(b.User, pw)
		env.Secrets.Add(strings.TrimPrefix(req.Header.Get("Authorization"), "Basic "))
		h.Set("Authorization", req.Header.Get("Authorization"))
	}
	env.Secrets.Add(engine.URIPasswords(r.URL)...)
	return h, nil
}

// Do sends the request with retries, checks the status, and hands the
// response to handle (which consumes the body) while checks run on it.
func (r *Request) Do(ctx context.Context, env *engine.Env, method string, body retryablehttp.ReaderFunc, hdr http.Header, handle func(io.Reader) error) (int, string, error) {
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(r.Timeout))
		defer cancel()
	}
	var raw any
	if body != nil {
		raw = body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, r.URL, raw)
	if err != nil {
		return 0, "", fmt.Errorf("url: %s", env.Secrets.Redact(err.Error()))
	}
	req.Header = hdr
	shown := env.Secrets.Redact(r.URL)
	client := New(Options{Retries: r.Retries, Log: env.Log})
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %s", method, shown, env.Secrets.Redact(err.Error()))
	}
	defer resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if r.ExpectStatus != 0 {
		ok = resp.StatusCode == r.ExpectStatus
	}
	ctype := resp.Header.Get("Content-Type")
	if !ok {
		se := NewStatusError(resp, shown)
		se.Body = env.Secrets.Redact(se.Body)
		if r.ExpectStatus != 0 {
			return resp.StatusCode, ctype, fmt.Errorf("%w (expected %d)", se, r.ExpectStatus)
		}
		return resp.StatusCode, ctype, se
	}
	checks := newBodyChecks(r.ExpectJSON, r.ExpectBodyContains)
	err = handle(io.TeeReader(resp.Body, checks))
	if err == nil {
		err = checks.result()
	} else {
		checks.result()
	}
	if err != nil {
		return resp.StatusCode, ctype, fmt.Errorf("%s %s: %w", method, shown, err)
	}
	return resp.StatusCode, ctype, nil
}

// Source describes where a saved body came from, for the manifest: the URL
// without userinfo, and the names (never the values) of the credentials.
func (r *Request) Source(contentType string) map[string]string {
	src := map[string]string{"kind": "http", "url": WithoutUserinfo(r.URL)}
	if contentType != "" {
		src["content_type"] = contentType
	}
	if b := r.BasicAuth; b != nil {
		src["user"] = b.User
		if b.PasswordEnv != "" {
			src["password_env"] = b.PasswordEnv
		}
	}
	for h, name := range r.HeadersFromEnv {
		src[HeaderEnvPrefix+h] = name
	}
	return src
}

// HeaderEnvPrefix marks a Source entry "header_env:<Header>" = env name.
const HeaderEnvPrefix = "header_env:"

// WithoutUserinfo is the URL without user and password ("" if it does not parse).
func WithoutUserinfo(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.User = nil
	return u.String()
}
