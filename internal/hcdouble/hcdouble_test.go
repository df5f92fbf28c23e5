package hcdouble

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const check = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"

func do(t *testing.T, srv *httptest.Server, method, path, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestDoubleFollowsThePingAPI(t *testing.T) {
	h := New()
	srv := httptest.NewServer(h)
	defer srv.Close()

	for _, c := range []struct {
		method, path, body string
		status             int
		signal             string
	}{
		{"GET", "/" + check, "", 200, "success"},
		{"HEAD", "/" + check + "/start?rid=123e4567-e89b-12d3-a456-426614174000", "", 200, "start"},
		{"POST", "/" + check + "/fail", "log tail", 200, "fail"},
		{"POST", "/" + check + "/log", "x", 200, "log"},
		{"GET", "/" + check + "/7", "", 200, "exit"},
		{"GET", "/" + check + "/256", "", 400, ""},
		{"GET", "/" + check + "/start?rid=not-a-uuid", "", 400, "start"},
		{"GET", "/pingkey/db-backup/start", "", 200, "start"},
		{"PUT", "/" + check, "", 405, ""},
		{"GET", "/", "", 404, ""},
	} {
		status, body, hdr := do(t, srv, c.method, c.path, c.body)
		assert.Equal(t, c.status, status, c.method+" "+c.path)
		if status == 200 {
			assert.Equal(t, "100000", hdr.Get("Ping-Body-Limit"))
			if c.method != "HEAD" {
				assert.Equal(t, "OK", body)
			}
		}
	}
	pings := h.Pings()
	require.Len(t, pings, 9, "every request with an allowed method is recorded, even a rejected one")
	assert.Equal(t, 404, pings[8].Status)
	assert.Equal(t, "123e4567-e89b-12d3-a456-426614174000", pings[1].RID)
	assert.Equal(t, "log tail", pings[2].Body)
	require.NotNil(t, pings[4].ExitCode)
	assert.Equal(t, 7, *pings[4].ExitCode)
	assert.Equal(t, "pingkey/db-backup", pings[7].Check)
}

func TestDoubleScriptedFailuresAndAdminEndpoints(t *testing.T) {
	h := New()
	srv := httptest.NewServer(h)
	defer srv.Close()
	h.Script(503, 500)
	s1, _, _ := do(t, srv, "GET", "/"+check, "")
	s2, _, _ := do(t, srv, "GET", "/"+check, "")
	s3, _, _ := do(t, srv, "GET", "/"+check, "")
	assert.Equal(t, []int{503, 500, 200}, []int{s1, s2, s3})

	status, body, _ := do(t, srv, "GET", PingsPath, "")
	require.Equal(t, 200, status)
	var got []Ping
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Len(t, got, 3)
	assert.Equal(t, 503, got[0].Status)

	status, _, _ = do(t, srv, "POST", ResetPath, "")
	assert.Equal(t, 204, status)
	assert.Empty(t, h.Pings())
}
