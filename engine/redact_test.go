package engine

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRedactorByValue(t *testing.T) {
	r := NewRedactor()
	r.AddEnv([]string{
		"DB_PASSWORD=hunter2!",
		"API_TOKEN=tok-123",
		"AWS_SECRET_ACCESS_KEY=abc/def+ghi",
		"MONGO_URI=mongodb://backup:p%40ss@127.0.0.1:27017/kaleem?authSource=admin",
		"KEEP_DAILY=7", // not a secret name
		"X=ab",         // too short to mask
	})
	got := r.Redact("pw hunter2! tok-123 abc/def+ghi abc%2Fdef%2Bghi p%40ss p@ss 7 ab")
	assert.Equal(t, "pw *** *** *** *** *** *** 7 ab", got)
}

func TestURIPasswords(t *testing.T) {
	assert.Equal(t, []string{"s3cret"}, URIPasswords("postgres://u:s3cret@h/db"))
	assert.Empty(t, URIPasswords("https://example.com/a@b"))
	assert.Empty(t, URIPasswords("mongodb://user@h/db"))
}

func TestRedactingWriterHoldsPartialLines(t *testing.T) {
	r := NewRedactor()
	r.Add("SECRETVALUE")
	var out bytes.Buffer
	w := r.Writer(&out)
	_, _ = w.Write([]byte("a SECRET"))
	_, _ = w.Write([]byte("VALUE b\nc"))
	assert.Equal(t, "a *** b\n", out.String(), "a secret split across writes is still masked")
	_ = w.Flush()
	assert.Equal(t, "a *** b\nc", out.String())
}

func TestIsSecretName(t *testing.T) {
	for _, n := range []string{"PGPASSWORD", "RESTIC_PASSWORD", "HC_TOKEN", "R2_SECRET", "AGE_KEY", "GCP_CREDENTIALS", "api_key"} {
		assert.True(t, IsSecretName(n), n)
	}
	for _, n := range []string{"PATH", "HOME", "MONGO_URI", "N8N_ENABLED", "RESTIC_PASSWORD_FILE"} {
		assert.False(t, IsSecretName(n), n)
	}
}
