package steps

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/internal/hcdouble"
	"github.com/planrun/planrun/steps/internal/ping"
)

const hcCheck = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"

// hcServer starts the Healthchecks test double; backoff is shortened so
// retry tests do not wait (the policy, not the delay, is under test).
func hcServer(t *testing.T) (*hcdouble.Handler, string) {
	t.Helper()
	h := hcdouble.New()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	oldMin, oldMax := ping.RetryWaitMin, ping.RetryWaitMax
	ping.RetryWaitMin, ping.RetryWaitMax = time.Millisecond, 2*time.Millisecond
	t.Cleanup(func() { ping.RetryWaitMin, ping.RetryWaitMax = oldMin, oldMax })
	return h, srv.URL + "/" + hcCheck
}

func TestHealthcheckPingSignals(t *testing.T) {
	h, url := hcServer(t)
	const runID = "0f8fad5b-d9cb-469f-a165-70867728950e"
	cases := []struct {
		with       string
		wantSuffix string
		wantSignal string
		wantCode   int
	}{
		{"signal: start", "/start", "start", -1},
		{"signal: success", "", "success", -1},
		{"", "", "success", -1},
		{"signal: fail", "/fail", "fail", -1},
		{"signal: log", "/log", "log", -1},
		{"signal: exit-code\nexit_code: 0", "/0", "exit", 0},
		{"signal: exit-code\nexit_code: 3", "/3", "exit", 3},
	}
	for _, c := range cases {
		t.Run(c.with, func(t *testing.T) {
			h.Reset()
			env, _ := offsiteEnv(t, runID)
			p := decodeWith(t, HealthcheckPing, "url: "+url+"\n"+c.with)
			out, err := HealthcheckPing.Run(context.Background(), env, p)
			require.NoError(t, err)
			assert.Equal(t, true, out["ok"])
			assert.Equal(t, 200, out["status"])
			assert.Equal(t, 1, out["attempts"])
			pings := h.Pings()
			require.Len(t, pings, 1)
			assert.Equal(t, "/"+hcCheck+c.wantSuffix, pings[0].Path)
			assert.Equal(t, c.wantSignal, pings[0].Signal)
			assert.Equal(t, runID, pings[0].RID)
			assert.Equal(t, http.MethodGet, pings[0].Method)
			if c.wantCode >= 0 {
				require.NotNil(t, pings[0].ExitCode)
				assert.Equal(t, c.wantCode, *pings[0].ExitCode)
			}
		})
	}
}

func TestHealthcheckPingRIDFromNonUUIDRunID(t *testing.T) {
	h, url := hcServer(t)
	env, _ := offsiteEnv(t, "01HV7Q3K9V8G4ZJ2M6N5P0R1ST") // a ULID
	for _, sig := range []string{"start", "success"} {
		p := decodeWith(t, HealthcheckPing, "url: "+url+"\nsignal: "+sig)
		_, err := HealthcheckPing.Run(context.Background(), env, p)
		require.NoError(t, err)
	}
	pings := h.Pings()
	require.Len(t, pings, 2)
	assert.Equal(t, 200, pings[0].Status, "the double accepts only canonical UUID rids")
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, pings[0].RID)
	assert.Equal(t, pings[0].RID, pings[1].RID, "start and end of one run must carry the same rid")
}

func TestHealthcheckPingBodyRedactedAndCappedKeepingTheEnd(t *testing.T) {
	h, url := hcServer(t)
	env, _ := offsiteEnv(t, "run-1")
	env.Secrets.Add("hunter2-db-password")
	head := "FIRST-LINE-MUST-BE-CUT\n" + strings.Repeat("x", 150_000) + "\n"
	tail := "pg_dump failed: password hunter2-db-password rejected\nLAST-LINE\n"
	p := decodeWith(t, HealthcheckPing, "url: "+url+"\nsignal: fail")
	p.Body = head + tail // as the engine would set it from the log tail
	out, err := HealthcheckPing.Run(context.Background(), env, p)
	require.NoError(t, err)
	require.Equal(t, true, out["ok"])
	pings := h.Pings()
	require.Len(t, pings, 1)
	got := pings[0]
	assert.Equal(t, http.MethodPost, got.Method)
	assert.LessOrEqual(t, got.BodySize, 100_000)
	assert.Greater(t, got.BodySize, 99_000, "the cap should use the limit, not cut far below it")
	assert.True(t, strings.HasSuffix(got.Body, "rejected\nLAST-LINE\n"), "the end of the log is what matters")
	assert.NotContains(t, got.Body, "FIRST-LINE-MUST-BE-CUT")
	assert.NotContains(t, got.Body, "hunter2-db-password")
	assert.Contains(t, got.Body, "password *** rejected")
}

func TestHealthcheckPingRetriesOn5xxNotOn4xx(t *testing.T) {
	h, url := hcServer(t)
	env, logs := offsiteEnv(t, "run-2")

	h.Script(503, 500)
	p := decodeWith(t, HealthcheckPing, "url: "+url+"\nsignal: start\nretries: 3")
	out, err := HealthcheckPing.Run(context.Background(), env, p)
	require.NoError(t, err)
	assert.Equal(t, true, out["ok"])
	assert.Equal(t, 3, out["attempts"])
	assert.Len(t, h.Pings(), 3)
	assert.Contains(t, logs.String(), "retrying")

	h.Reset()
	h.Script(404)
	out, err = HealthcheckPing.Run(context.Background(), env, p)
	require.NoError(t, err, "a failed ping warns, it does not fail the step")
	assert.Equal(t, false, out["ok"])
	assert.Equal(t, 404, out["status"])
	assert.Equal(t, 1, out["attempts"], "4xx is final: no retry")
	assert.Len(t, h.Pings(), 1)

	h.Reset()
	h.Script(503, 503, 503)
	p.Retries = 2
	out, err = HealthcheckPing.Run(context.Background(), env, p)
	require.NoError(t, err)
	assert.Equal(t, false, out["ok"])
	assert.Equal(t, 503, out["status"])
	assert.Equal(t, 3, out["attempts"], "retries: 2 means three requests")
}

func TestHealthcheckPingDeadURLWarnsUnlessFailOnError(t *testing.T) {
	// A port that was listening and is now closed: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + ln.Addr().String() + "/" + hcCheck
	require.NoError(t, ln.Close())
	_, _ = hcServer(t) // short backoff

	env, logs := offsiteEnv(t, "run-3")
	p := decodeWith(t, HealthcheckPing, "url: "+dead+"\nretries: 1\ntimeout: 2s")
	out, err := HealthcheckPing.Run(context.Background(), env, p)
	require.NoError(t, err)
	assert.Equal(t, false, out["ok"])
	assert.Equal(t, 2, out["attempts"], "connection errors are retried")
	assert.NotEmpty(t, out["error"])
	assert.Contains(t, logs.String(), "healthcheck ping failed")
	assert.NotContains(t, logs.String(), hcCheck, "the check UUID is a credential")
	assert.NotContains(t, out["error"], hcCheck)

	p.FailOnError = true
	_, err = HealthcheckPing.Run(context.Background(), env, p)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), hcCheck)
	assert.Contains(t, err.Error(), "/***")
}

func TestHealthcheckPingSlugURLKeepsQuery(t *testing.T) {
	h, srvURL := hcServer(t)
	base := strings.TrimSuffix(srvURL, "/"+hcCheck) + "/fqOOd6-F4MMNuCEnzTU01w/db-backup?create=1"
	env, _ := offsiteEnv(t, "8d2c3d8e-6c7c-4d8e-9a4b-0b6a1f2e3d4c")
	p := decodeWith(t, HealthcheckPing, "url: "+base+"\nsignal: fail")
	out, err := HealthcheckPing.Run(context.Background(), env, p)
	require.NoError(t, err)
	require.Equal(t, true, out["ok"])
	pings := h.Pings()
	require.Len(t, pings, 1)
	assert.Equal(t, "fqOOd6-F4MMNuCEnzTU01w/db-backup", pings[0].Check)
	assert.Equal(t, "fail", pings[0].Signal)
	assert.Equal(t, "8d2c3d8e-6c7c-4d8e-9a4b-0b6a1f2e3d4c", pings[0].RID)
}

func TestHealthcheckPingPreviewMasksURL(t *testing.T) {
	env, _ := offsiteEnv(t, "8d2c3d8e-6c7c-4d8e-9a4b-0b6a1f2e3d4c")
	p := decodeWith(t, HealthcheckPing, "url: https://hc-ping.com/"+hcCheck+"\nsignal: start")
	lines := HealthcheckPing.Preview(env, p)
	require.Len(t, lines, 1)
	assert.Equal(t, "ping: https://hc-ping.com/***/start?rid=8d2c3d8e-6c7c-4d8e-9a4b-0b6a1f2e3d4c", lines[0])
}

func TestHealthcheckPingValidate(t *testing.T) {
	for with, want := range map[string]string{
		"url: http://x/y\nsignal: exit-code\nexit_code: 256": "exit_code must be 0-255",
		"url: http://x/y\nsignal: start\nexit_code: 2":       "exit_code needs signal: exit-code",
		"url: http://x/y\nsignal: started":                   "must be one of",
		"url: http://x/y\nretries: -1":                       "retries must be 0-20",
		"signal: start":                                      `missing required param "url"`,
	} {
		_, probs := decodeWithProblems(t, HealthcheckPing, with)
		require.NotEmpty(t, probs, with)
		assert.Contains(t, probs[0].Msg, want, with)
	}
	assert.True(t, HealthcheckPing.Type().Params.Lookup("url").Secret, "the ping URL is a credential")
}
