package engine

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func testScope() map[string]any {
	s := &Scope{Vars: map[string]any{"root": "/backups", "keep": 7, "paths": []any{"/a", "/b"}},
		envAny: map[string]any{"HOME": "/root", "N8N_ENABLED": "1"}}
	sc := s.exprScope(map[string]any{"id": "r1"}, map[string]any{
		"make-dump": map[string]any{"outputs": map[string]any{"path": "/backups/x.dump", "size": int64(42)}, "status": "success"},
	})
	return sc
}

func TestTemplateEval(t *testing.T) {
	cases := []struct {
		in   string
		want any
	}{
		{"plain", "plain"},
		{"${{ vars.root }}/mongo", "/backups/mongo"},
		{"${{ vars.keep }}", 7},
		{"${{ vars.keep + 1 }}", 8},
		{"n=${{ vars.keep }}", "n=7"},
		{"${{ steps.make-dump.outputs.path }}", "/backups/x.dump"},
		{"${{ steps.make-dump.outputs.size }}", int64(42)},
		{"${{ env.N8N_ENABLED == \"1\" }}", true},
		{"${{ env.MISSING ?? \"dflt\" }}", "dflt"},
		{"${{ upper(\"ab\") }}-${{ run.id }}", "AB-r1"},
		{"${{ vars.paths }}", []any{"/a", "/b"}},
	}
	for _, c := range cases {
		tpl, err := ParseTemplate(c.in)
		require.NoError(t, err, c.in)
		got, err := tpl.Eval(testScope())
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got, c.in)
	}
}

func TestTemplateErrors(t *testing.T) {
	for _, in := range []string{"${{ vars.root", "${{ }}", "${{ 1 + }}", "${{ nosuchname }}"} {
		_, err := ParseTemplate(in)
		assert.Error(t, err, in)
	}
	tpl, err := ParseTemplate("x${{ env.UNSET }}")
	require.NoError(t, err)
	_, err = tpl.Eval(testScope())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is undefined")
}

func TestNowIsUTCAndFormattable(t *testing.T) {
	tpl, err := ParseTemplate(`${{ now().Format("2006-01-02T15:04Z07:00") }}`)
	require.NoError(t, err)
	v, err := tpl.Eval(testScope())
	require.NoError(t, err)
	s := v.(string)
	assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\dZ$`, s)
	parsed, err := time.Parse("2006-01-02T15:04Z07:00", s)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), parsed, 2*time.Minute)
}

func TestInterpolateKeepsTypes(t *testing.T) {
	var n yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(`{paths: "${{ vars.paths }}", keep: "${{ vars.keep }}", s: "k=${{ vars.keep }}", lit: 3}`), &n))
	out, err := Interpolate(n.Content[0], testScope())
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, out.Decode(&got))
	assert.Equal(t, map[string]any{"paths": []any{"/a", "/b"}, "keep": 7, "s": "k=7", "lit": 3}, got)
}

func TestReferences(t *testing.T) {
	refs, calls, err := references(`steps.a.outputs.path != "" && failure() || vars.x == env.Y`)
	require.NoError(t, err)
	assert.Contains(t, refs, ref{"steps", "a", "outputs", "path"})
	assert.Contains(t, refs, ref{"vars", "x"})
	assert.Contains(t, refs, ref{"env", "Y"})
	assert.Equal(t, []string{"failure"}, calls)
	assert.True(t, usesStatusFunc(calls))
}

func TestParseDurationAndSize(t *testing.T) {
	for in, want := range map[string]time.Duration{"30m": 30 * time.Minute, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1d12h": 36 * time.Hour, "1.5h": 90 * time.Minute} {
		got, err := ParseDuration(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "x", "5x", "d", "1dd"} {
		_, err := ParseDuration(bad)
		assert.Error(t, err, bad)
	}
	for in, want := range map[string]int64{"512": 512, "64MiB": 64 << 20, "10GB": 10e9, "1.5G": 3 << 29, "4k": 4096} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err := ParseSize("12 parsecs")
	assert.Error(t, err)
}

func TestSuggest(t *testing.T) {
	assert.Equal(t, "command", Suggest("comand", []string{"command", "shell"}))
	assert.Equal(t, "", Suggest("zzzzzz", []string{"command", "shell"}))
}

func TestNewestAndFiles(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	for i, name := range []string{"mongo-20260101.zst", "mongo-20260102.zst", "mongo-20260102.zst.sha256", "other.txt"} {
		p := dir + "/" + name
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o600))
		require.NoError(t, os.Chtimes(p, old.Add(time.Duration(i)*time.Minute), old.Add(time.Duration(i)*time.Minute)))
	}
	tpl, err := ParseTemplate(`${{ newest("` + dir + `/mongo-*") }}`)
	require.NoError(t, err)
	got, err := tpl.Eval(testScope())
	require.NoError(t, err)
	assert.Equal(t, dir+"/mongo-20260102.zst", got, "newest skips sidecars")
	tpl, err = ParseTemplate(`${{ len(files("` + dir + `/*.zst")) }}`)
	require.NoError(t, err)
	got, err = tpl.Eval(testScope())
	require.NoError(t, err)
	assert.Equal(t, 2, got)
	tpl, err = ParseTemplate(`${{ newest("` + dir + `/none-*") }}`)
	require.NoError(t, err)
	_, err = tpl.Eval(testScope())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no file matches")
}
