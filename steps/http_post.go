package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/httpx"
	"github.com/planrun/planrun/steps/internal/rabbitdefs"
)

// HTTPPostParams are the params of http-post.
type HTTPPostParams struct {
	httpx.Request        `yaml:",inline"`
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
	return p.Request.Check()
}

// verifyImport reads the imported definitions back from the broker and
// counts the input's objects found there.
func (p *HTTPPostParams) verifyImport(ctx context.Context, env *engine.Env, hdr http.Header) (map[string]int64, error) {
	// Uncounted: the POST has counted these bytes.
	src, err := artifact.OpenWith(ctx, env, p.Input, p.ReadOptions, artifact.Plain|artifact.VerifySidecar|artifact.Uncounted)
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
	get := p.Request // the expect_* checks are for the POST's answer
	get.ExpectStatus, get.ExpectJSON, get.ExpectBodyContains = 0, false, ""
	h := hdr.Clone()
	h.Del("Content-Type")
	var have map[string]map[string]bool
	if _, _, err := get.Do(ctx, env, http.MethodGet, nil, h, func(body io.Reader) error {
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
	env.Log.Info("imported definitions present on the broker", "counts", rabbitdefs.FormatCounts(found))
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
		hdr, err := p.ResolveHeaders(env)
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
		status, ctype, err := p.Do(ctx, env, p.Method, body, hdr, func(r io.Reader) error {
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
