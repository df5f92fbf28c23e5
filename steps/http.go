package steps

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/httpx"
	"github.com/planrun/planrun/steps/internal/rabbitdefs"
)

// BasicAuth is the basic_auth block of the http steps.
type BasicAuth struct {
	User        string `yaml:"user" required:"true" doc:"user name"`
	Password    string `yaml:"password" secret:"true" doc:"password; prefer password_env"`
	PasswordEnv string `yaml:"password_env" doc:"name of the environment variable holding the password"`
}

// HTTPRequest is what http-get and http-post share.
type HTTPRequest struct {
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

func (r *HTTPRequest) validate() error {
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

// headers resolves all request headers, registering secret values.
func (r *HTTPRequest) headers(env *engine.Env) (http.Header, error) {
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

// do sends the request with retries, checks the status, and hands the
// response to handle (which consumes the body) while checks run on it.
func (r *HTTPRequest) do(ctx context.Context, env *engine.Env, method string, body retryablehttp.ReaderFunc, hdr http.Header, handle func(io.Reader) error) (int, string, error) {
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
	client := httpx.New(httpx.Options{Retries: r.Retries, Log: env.Log})
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
		se := httpx.NewStatusError(resp, shown)
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

// bodyChecks validates a streamed body: JSON syntax (in a goroutine fed
// through a pipe, holding no copy of the body) and a substring match.
type bodyChecks struct {
	needle  []byte
	window  []byte
	found   bool
	jsonW   *io.PipeWriter
	jsonErr chan error
}

func newBodyChecks(expectJSON bool, contains string) *bodyChecks {
	c := &bodyChecks{needle: []byte(contains), found: contains == ""}
	if expectJSON {
		pr, pw := io.Pipe()
		c.jsonW, c.jsonErr = pw, make(chan error, 1)
		go func() {
			err := validJSON(pr)
			pr.CloseWithError(errors.New("json check done"))
			c.jsonErr <- err
		}()
	}
	return c
}

func validJSON(r io.Reader) error {
	dec := json.NewDecoder(r)
	// Decode token by token so a huge body is never held in memory.
	depth, values := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if values == 0 {
				return errors.New("response body is not JSON: empty")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("response body is not JSON: %v", err)
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			values++
			if values > 1 {
				return errors.New("response body is not JSON: more than one value")
			}
		}
	}
}

func (c *bodyChecks) Write(p []byte) (int, error) {
	if !c.found {
		c.window = append(c.window, p...)
		if bytes.Contains(c.window, c.needle) {
			c.found, c.window = true, nil
		} else if keep := len(c.needle) - 1; len(c.window) > keep {
			c.window = append(c.window[:0], c.window[len(c.window)-keep:]...)
		}
	}
	if c.jsonW != nil {
		if _, err := c.jsonW.Write(p); err != nil {
			c.jsonW = nil // the checker has its verdict; result() reports it
		}
	}
	return len(p), nil
}

func (c *bodyChecks) result() error {
	var err error
	if c.jsonErr != nil {
		if c.jsonW != nil {
			c.jsonW.Close()
		}
		err = <-c.jsonErr
		c.jsonErr = nil
	}
	if err == nil && !c.found {
		err = fmt.Errorf("response body does not contain %q", c.needle)
	}
	return err
}

// HTTPGetParams are the params of http-get.
type HTTPGetParams struct {
	HTTPRequest `yaml:",inline"`
	Save        *artifact.WriteOptions `yaml:"save" doc:"write the body into an artifact (output, compress, encrypt, ...); without it the request is a check"`
}

// Validate checks the request and the save block.
func (p *HTTPGetParams) Validate() error {
	if err := p.HTTPRequest.validate(); err != nil {
		return err
	}
	if p.Save != nil {
		return p.Save.Validate()
	}
	return nil
}

// HTTPGet fetches a URL into an artifact, or checks it.
var HTTPGet = engine.Def[HTTPGetParams]{
	Name:    "http-get",
	Summary: "GET a URL with retries: stream the body into an artifact (e.g. RabbitMQ definitions) or check it (health checks)",
	Doc: `Retries connection errors, 429 and 5xx with exponential backoff, never
other 4xx. With save, the body streams through compression and encryption
into the artifact, and any failure (status, expect_json, expect_body_contains,
a broken connection) discards it. Without save, the body (first 64 KiB) is an
output and the checks make it a health check for restore plans.
Example: RabbitMQ definitions export is GET {mgmt}/api/definitions with
basic_auth and expect_json. A saved definitions export is recognised as it
streams: the manifest records the lengths of its queues, exchanges,
bindings, users, vhosts and policies lists and the broker version, and
planrun restore POSTs it back to the same URL with the same user and
password_env (a literal password is not recorded: give it in the restore
overrides); a drill, which must not import into a live broker, verifies
the artifact and counts its content instead.`,
	Kind: engine.KindBackup,
	// Only a GET that saves an artifact is a backup; a health check is not,
	// so its failure does not hold back retention.
	KindOf: func(p *HTTPGetParams) engine.Kind {
		if p.Save != nil {
			return engine.KindBackup
		}
		return engine.KindOther
	},
	Outputs: append(append([]engine.Output(nil), artifact.StandardOutputs...),
		engine.Output{Name: "status", Doc: "HTTP status code"},
		engine.Output{Name: "content_type", Doc: "response Content-Type"},
		engine.Output{Name: "body", Doc: "response body, first 64 KiB, redacted (only without save)"},
		engine.Output{Name: "duration_ms", Doc: "time taken, milliseconds"},
	),
	Example: "url: http://127.0.0.1:15672/api/definitions\nbasic_auth: {user: admin, password_env: RABBITMQ_PASS}\nexpect_json: true\nsave: {output: /backups/rabbitmq-definitions.json.zst, encrypt: {recipients_file: /etc/planrun/backup.pub}}",
	Inverse: &engine.Inverse{Type: "http-post", ScratchType: "verify", Targets: []string{"url", "path"}, With: httpGetInverse},
	Preview: func(env *engine.Env, p *HTTPGetParams) []string {
		out := []string{"get: " + env.Secrets.Redact(p.URL)}
		if p.Save != nil {
			out = append(out, "write: "+p.Save.Describe())
		}
		return out
	},
	Run: func(ctx context.Context, env *engine.Env, p *HTTPGetParams) (engine.Outputs, error) {
		start := time.Now()
		hdr, err := p.headers(env)
		if err != nil {
			return nil, err
		}
		out := engine.Outputs{}
		var w *artifact.Writer
		var defs *rabbitdefs.Counter
		status, ctype, err := p.do(ctx, env, http.MethodGet, nil, hdr, func(body io.Reader) error {
			if p.Save == nil {
				b, err := io.ReadAll(io.LimitReader(body, 64<<10))
				out["body"] = env.Secrets.Redact(string(b))
				if err == nil {
					_, err = io.Copy(io.Discard, body) // let the checks see all of it
				}
				return err
			}
			var err error
			w, err = artifact.Create(ctx, env, *p.Save)
			if err != nil {
				return err
			}
			// Count RabbitMQ definitions from the plaintext as it passes.
			defs = rabbitdefs.NewCounter()
			_, err = io.Copy(io.MultiWriter(progressWriter(w, env), defs), body)
			return err
		})
		if w != nil {
			defer w.Abort()
		}
		out["status"], out["content_type"] = status, ctype
		if err != nil {
			if defs != nil {
				defs.Abort()
			}
			return out, err
		}
		if w != nil {
			info, derr := defs.Result()
			res, err := w.Commit()
			if err != nil {
				return out, err
			}
			res.Record.Source = p.source(ctype)
			switch {
			case derr == nil:
				res.Record.Source["format"] = rabbitdefs.Kind
				res.Record.Counts = info.Counts
				if info.Version != "" {
					res.Record.Tools = map[string]string{"rabbitmq": info.Version}
				}
				env.Log.Info("RabbitMQ definitions saved", "counts", formatCounts(info.Counts))
			case !errors.Is(derr, rabbitdefs.ErrNotDefinitions):
				env.Log.Warn("body looks like RabbitMQ definitions but does not parse; no counts recorded", "error", derr.Error())
			}
			for k, v := range res.Outputs() {
				out[k] = v
			}
		}
		out["duration_ms"] = time.Since(start).Milliseconds()
		return out, nil
	},
}

// source describes where a saved body came from, for the manifest: the URL
// without userinfo, and the names (never the values) of the credentials.
func (r *HTTPRequest) source(contentType string) map[string]string {
	src := map[string]string{"kind": "http", "url": urlWithoutUserinfo(r.URL)}
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
		src[headerEnvPrefix+h] = name
	}
	return src
}

// headerEnvPrefix marks a Source entry "header_env:<Header>" = env name.
const headerEnvPrefix = "header_env:"

func urlWithoutUserinfo(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.User = nil
	return u.String()
}

// httpGetInverse restores a saved RabbitMQ definitions export: POST it back
// to the URL it came from (the management API imports definitions there,
// for the whole broker or the vhost the URL names). A scratch restore
// cannot import definitions into a live broker safely, so it verifies and
// measures the artifact instead (verify with inspect). Other saved bodies
// have no known restore.
func httpGetInverse(a engine.ArtifactRecord, t engine.RestoreTarget) (map[string]any, error) {
	if a.Source["format"] != rabbitdefs.Kind {
		return nil, fmt.Errorf("http-get artifact %s (from %s) is not a RabbitMQ definitions export: no restore is known for it; restore it by hand", a.Path, a.Source["url"])
	}
	keys := func(with map[string]any) map[string]any {
		if t.IdentityFile != "" {
			with["identity_file"] = t.IdentityFile
		}
		if t.PassphraseFile != "" {
			with["passphrase_file"] = t.PassphraseFile
		}
		return with
	}
	if t.Scratch {
		with := map[string]any{"path": t.Input, "inspect": rabbitdefs.Kind, "sidecar": "optional"}
		if a.SHA256 != "" {
			with["sha256"] = a.SHA256
		}
		return keys(with), nil
	}
	if a.Source["url"] == "" {
		return nil, fmt.Errorf("http-get artifact %s: no source url recorded", a.Path)
	}
	with := map[string]any{"url": a.Source["url"], "method": "POST", "input": t.Input, "content_type": "application/json",
		"verify_import": rabbitdefs.Kind}
	if user := a.Source["user"]; user != "" {
		ba := map[string]any{"user": user}
		if pe := a.Source["password_env"]; pe != "" {
			ba["password_env"] = pe
		}
		with["basic_auth"] = ba
	}
	hfe := map[string]any{}
	for k, v := range a.Source {
		if h, ok := strings.CutPrefix(k, headerEnvPrefix); ok {
			hfe[h] = v
		}
	}
	if len(hfe) > 0 {
		with["headers_from_env"] = hfe
	}
	return keys(with), nil
}

// HTTPPostParams are the params of http-post.
type HTTPPostParams struct {
	HTTPRequest          `yaml:",inline"`
	Method               string `yaml:"method" enum:"POST|PUT|PATCH" default:"POST" doc:"request method"`
	Input                string `yaml:"input" doc:"file (artifact) sent as the body, decrypted and decompressed on the fly; re-opened for each retry"`
	Body                 string `yaml:"body" doc:"literal body (instead of input)"`
	ContentType          string `yaml:"content_type" default:"application/json" doc:"Content-Type of the body"`
	VerifyImport         string `yaml:"verify_import" enum:"none|rabbitmq-definitions" default:"none" doc:"rabbitmq-definitions: after the POST, GET the same URL and count how many of the input's queues, exchanges, bindings, users, vhosts and policies the broker has (the counts output); fail unless all"`
	artifact.ReadOptions `yaml:",inline"`
}

// Validate requires at most one body source.
func (p *HTTPPostParams) Validate() error {
	if p.Input != "" && p.Body != "" {
		return errors.New("give input or body, not both")
	}
	if p.VerifyImport != "none" && p.Input == "" {
		return errors.New("verify_import: needs input (the definitions artifact)")
	}
	return p.HTTPRequest.validate()
}

// verifyImport reads the imported definitions back from the broker and
// counts the input's objects found there.
func (p *HTTPPostParams) verifyImport(ctx context.Context, env *engine.Env, hdr http.Header) (map[string]int64, error) {
	src, err := artifact.OpenWith(ctx, env, p.Input, p.ReadOptions, artifact.Plain|artifact.VerifySidecar)
	if err != nil {
		return nil, fmt.Errorf("verify_import: %w", err)
	}
	want, err := rabbitdefs.Objects(src)
	if err == nil {
		_, err = io.Copy(io.Discard, src) // to the end, where the sidecar is checked
	}
	src.Close()
	if err != nil {
		return nil, fmt.Errorf("verify_import: input %s: %w", p.Input, err)
	}
	get := p.HTTPRequest // the expect_* checks are for the POST's answer
	get.ExpectStatus, get.ExpectJSON, get.ExpectBodyContains = 0, false, ""
	h := hdr.Clone()
	h.Del("Content-Type")
	var have map[string]map[string]bool
	if _, _, err := get.do(ctx, env, http.MethodGet, nil, h, func(body io.Reader) error {
		var err error
		have, err = rabbitdefs.Objects(body)
		return err
	}); err != nil {
		return nil, fmt.Errorf("verify_import: reading the definitions back: %w", err)
	}
	found := rabbitdefs.Found(want, have)
	var missing []string
	for _, k := range rabbitdefs.Counted {
		if n, ok := found[k]; ok && n != int64(len(want[k])) {
			missing = append(missing, fmt.Sprintf("%s %d of %d", k, n, len(want[k])))
		}
	}
	if len(missing) > 0 {
		return found, fmt.Errorf("verify_import: the broker lacks part of %s after the import: %s present", p.Input, strings.Join(missing, ", "))
	}
	env.Log.Info("imported definitions present on the broker", "counts", formatCounts(found))
	return found, nil
}

// HTTPPost sends a file or a literal body.
var HTTPPost = engine.Def[HTTPPostParams]{
	Name:    "http-post",
	Summary: "POST (or PUT) a file or body with retries, e.g. RabbitMQ definitions import",
	Doc: `The input artifact is decrypted and decompressed on the fly and
streamed as the body; every retry re-opens it, so retries send the whole
body again. Retries: connection errors, 429 and 5xx, never other 4xx. A
request that failed may still have been applied, so set retries: 0 for an
endpoint that is not idempotent. Example: RabbitMQ definitions import is POST {mgmt}/api/definitions;
verify_import: rabbitmq-definitions then reads the definitions back from the same URL and
counts how many of the input's objects the broker has (what a restore compares with the
backup's counts; an import is additive, so objects the broker had before are not counted).`,
	Kind: engine.KindOther,
	Outputs: []engine.Output{
		{Name: "status", Doc: "HTTP status code"},
		{Name: "content_type", Doc: "response Content-Type"},
		{Name: "body", Doc: "response body, first 64 KiB, redacted"},
		{Name: "counts", Doc: "with verify_import: the input's objects found on the broker afterwards, keyed queues, exchanges, ... like a manifest's counts"},
		{Name: "duration_ms", Doc: "time taken, milliseconds"},
	},
	Example: "url: http://127.0.0.1:15672/api/definitions\nbasic_auth: {user: admin, password_env: RABBITMQ_PASS}\ninput: /backups/rabbitmq-definitions.json.zst\nidentity_file: /etc/planrun/restore.key\nverify_import: rabbitmq-definitions",
	Preview: func(env *engine.Env, p *HTTPPostParams) []string {
		src := "body"
		if p.Input != "" {
			src = p.Input
		}
		return []string{strings.ToLower(p.Method) + ": " + env.Secrets.Redact(p.URL) + " < " + src}
	},
	Run: func(ctx context.Context, env *engine.Env, p *HTTPPostParams) (engine.Outputs, error) {
		start := time.Now()
		hdr, err := p.headers(env)
		if err != nil {
			return nil, err
		}
		hdr.Set("Content-Type", p.ContentType)
		var body retryablehttp.ReaderFunc
		switch {
		case p.Input != "":
			f, err := artifact.Open(p.Input, p.ReadOptions) // fail early and clearly
			if err != nil {
				return nil, fmt.Errorf("input: %w", err)
			}
			f.Close()
			body = func() (io.Reader, error) {
				return artifact.OpenWith(ctx, env, p.Input, p.ReadOptions, artifact.Plain|artifact.VerifySidecar)
			}
		case p.Body != "":
			body = func() (io.Reader, error) { return strings.NewReader(p.Body), nil }
		}
		out := engine.Outputs{}
		status, ctype, err := p.do(ctx, env, p.Method, body, hdr, func(r io.Reader) error {
			b, err := io.ReadAll(io.LimitReader(r, 64<<10))
			out["body"] = env.Secrets.Redact(string(b))
			if err == nil {
				_, err = io.Copy(io.Discard, r)
			}
			return err
		})
		out["status"], out["content_type"] = status, ctype
		if err != nil {
			return out, err
		}
		if p.VerifyImport == rabbitdefs.Kind {
			counts, err := p.verifyImport(ctx, env, hdr)
			if counts != nil {
				out["counts"] = counts
			}
			if err != nil {
				return out, err
			}
		}
		out["duration_ms"] = time.Since(start).Milliseconds()
		return out, nil
	},
}
