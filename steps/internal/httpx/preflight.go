package httpx

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/planrun/planrun/engine"
)

// Reach checks that a URL's host resolves and accepts a TCP connection on
// its port; nothing is sent. The target shown is scheme://host only: the
// path and query of a webhook or ping URL are its credential.
func Reach(ctx context.Context, raw string) engine.PreflightCheck {
	c := engine.PreflightCheck{Check: "http"}
	if strings.Contains(raw, "${{") {
		c.Status, c.Reason = engine.CheckOK, "not checked: the URL is known only when the run gets there"
		return c
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		c.Status, c.Reason = engine.CheckFail, "not an http(s) URL"
		return c
	}
	c.Target = u.Scheme + "://" + u.Host
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, u.Hostname())
	if err != nil {
		c.Status, c.Reason = engine.CheckFail, fmt.Sprintf("host does not resolve: %v", err)
		return c
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		c.Status, c.Reason = engine.CheckFail, fmt.Sprintf("resolves (%s) but does not accept connections: %v", strings.Join(addrs, ", "), err)
		return c
	}
	conn.Close()
	c.Status, c.Reason = engine.CheckOK, "resolves and accepts connections"
	return c
}

// Preflight reaches the request's host (http-get, http-post).
func (r *Request) Preflight(ctx context.Context, env *engine.PreflightEnv) []engine.PreflightCheck {
	return []engine.PreflightCheck{Reach(ctx, r.URL)}
}
