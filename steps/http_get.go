package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
	"github.com/planrun/planrun/steps/internal/httpx"
	"github.com/planrun/planrun/steps/internal/rabbitdefs"
)

// HTTPGetParams are the params of http-get.
type HTTPGetParams struct {
	httpx.Request `yaml:",inline"`
	Save          *artifact.WriteOptions `yaml:"save" doc:"write the body into an artifact (output, compress, encrypt, ...); without it the request is a check"`
}

// Validate checks the request and the save block.
func (p *HTTPGetParams) Validate() error {
	if err := p.Request.Check(); err != nil {
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
		hdr, err := p.ResolveHeaders(env)
		if err != nil {
			return nil, err
		}
		out := engine.Outputs{}
		var w *artifact.Writer
		var defs *rabbitdefs.Counter
		status, ctype, err := p.Do(ctx, env, http.MethodGet, nil, hdr, func(body io.Reader) error {
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
			_, err = io.Copy(io.MultiWriter(w, defs), body)
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
			res.Record.Source = p.Source(ctype)
			switch {
			case derr == nil:
				res.Record.Source["format"] = rabbitdefs.Kind
				res.Record.Counts = info.Counts
				if info.Version != "" {
					res.Record.Tools = map[string]string{"rabbitmq": info.Version}
				}
				env.Log.Info("RabbitMQ definitions saved", "counts", rabbitdefs.FormatCounts(info.Counts))
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
		artifact.AddReadKeys(with, t)
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
		if h, ok := strings.CutPrefix(k, httpx.HeaderEnvPrefix); ok {
			hfe[h] = v
		}
	}
	if len(hfe) > 0 {
		with["headers_from_env"] = hfe
	}
	return keys(with), nil
}
