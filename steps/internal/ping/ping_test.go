package ping

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestURL(t *testing.T) {
	const base = "https://hc-ping.com/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"
	for _, c := range []struct{ base, signal, rid, want string }{
		{base, "", "", base},
		{base, Success, "", base},
		{base + "/", Start, "", base + "/start"},
		{base, Fail, "123e4567-e89b-12d3-a456-426614174000", base + "/fail?rid=123e4567-e89b-12d3-a456-426614174000"},
		{base, "0", "", base + "/0"},
		{base, "255", "", base + "/255"},
		{"https://hc-ping.com/key/slug?create=1", Log, "r", "https://hc-ping.com/key/slug/log?create=1&rid=r"},
	} {
		got, err := URL(c.base, c.signal, c.rid)
		require.NoError(t, err)
		assert.Equal(t, c.want, got)
	}
	for _, bad := range []struct{ base, signal string }{
		{base, "256"}, {base, "-1"}, {base, "finish"}, {"ftp://x/y", ""}, {"hc-ping.com/abc", ""},
	} {
		_, err := URL(bad.base, bad.signal, "")
		assert.Error(t, err, bad)
	}
	_, err := URL("https://host/secret-uuid\x7f", "", "")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "secret-uuid", "errors must not echo the URL")
}

func TestRunUUID(t *testing.T) {
	assert.Equal(t, "", RunUUID(""))
	assert.Equal(t, "123e4567-e89b-12d3-a456-426614174000", RunUUID("123E4567-E89B-12D3-A456-426614174000"))
	assert.Equal(t, "123e4567-e89b-12d3-a456-426614174000", RunUUID("123e4567e89b12d3a456426614174000"))
	a, b := RunUUID("01HV7Q3K9V8G4ZJ2M6N5P0R1ST"), RunUUID("01HV7Q3K9V8G4ZJ2M6N5P0R1SV")
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, a)
	assert.Equal(t, a, RunUUID("01HV7Q3K9V8G4ZJ2M6N5P0R1ST"), "stable")
	assert.NotEqual(t, a, b)
}

func TestTailBody(t *testing.T) {
	assert.Equal(t, "short", TailBody("short", 100))
	assert.Equal(t, "anything", TailBody("anything", 0), "no limit")
	s := strings.Repeat("é", 1000) + "END" // 2-byte runes: a cut may fall mid-rune
	for _, limit := range []int{50, 51, 52, 1999} {
		got := TailBody(s, limit)
		assert.LessOrEqual(t, len(got), limit)
		assert.True(t, utf8.ValidString(got), "limit %d", limit)
		assert.True(t, strings.HasSuffix(got, "END"))
		assert.True(t, strings.HasPrefix(got, "[…truncated]\n"))
	}
	got := TailBody(s, 5) // smaller than the marker: just the end
	assert.LessOrEqual(t, len(got), 5)
	assert.True(t, strings.HasSuffix(got, "END"))
}

func TestDisplayAndSecretForms(t *testing.T) {
	assert.Equal(t, "https://hc-ping.com/***/start", Display("https://hc-ping.com/uuid", Start))
	assert.Equal(t, "https://hc-ping.com/***", Display("https://hc-ping.com/uuid", Success))
	assert.Equal(t, "***", Display("not a url", Start))
	forms := SecretForms("https://u:pw@hc.example/key/slug?create=1")
	assert.Contains(t, forms, "https://hc.example/key/slug")
	assert.Contains(t, forms, "pw")
}
