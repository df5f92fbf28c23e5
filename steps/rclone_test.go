package steps

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
)

func TestRcloneArgs(t *testing.T) {
	s := decodeWith(t, RcloneSync, "source: /backups\ndest: offsite:b/db1\nconfig: /etc/rclone.conf\nexclude: ['*.tmp']\nflags: [--transfers=8]")
	assert.Equal(t, []string{"sync", "--config", "/etc/rclone.conf", "--use-json-log", "--stats-one-line", "--stats", "10s",
		"--stats-log-level", "NOTICE", "--dry-run", "--exclude", "*.tmp", "--transfers=8", "/backups", "offsite:b/db1"}, s.args(true, -1))
	assert.Contains(t, s.args(false, 7), "--max-delete")
	assert.Equal(t, 50, s.MaxDeletePercent, "default guard")

	c := decodeWith(t, RcloneCheck, "source: /a\ndest: r:b\none_way: true")
	assert.Equal(t, []string{"check", "--use-json-log", "--combined", "-", "--one-way", "/a", "r:b"}, c.args())
	l := decodeWith(t, RcloneLsf, "source: r:b")
	assert.Equal(t, []string{"lsf", "--files-only", "-R", "r:b"}, l.args())
	assert.Equal(t, []string{"size", "--json", "r:b"}, l.SizeArgs(l.Source))
	d := decodeWith(t, RcloneDelete, "source: r:b\ninclude: ['db_*']\nmin_age: 30d")
	assert.Equal(t, []string{"delete", "--use-json-log", "--stats-one-line", "--stats", "10s", "--stats-log-level", "NOTICE",
		"--min-age", "2592000s", "--max-delete", "3", "--include", "db_*", "r:b"}, d.args(false, 3))
}

func TestRcloneValidate(t *testing.T) {
	for _, c := range []struct {
		def  interface{ Type() *engine.Type }
		with string
		want string
	}{
		{RcloneSync, "source: /a", `missing required param "dest"`},
		{RcloneSize, "source: /a\ndest: /b", `unknown param "dest"`},
		{RcloneSync, "source: /a\ndest: /b\nmax_delete_percent: 101", "max_delete_percent must be 0-100"},
		{RcloneCopy, "source: /a\ndest: /b\none_way: true", `unknown param "one_way"`},
		{RcloneCopy, "source: /a\ndest: ':s3,secret_access_key=abc:bucket'", `"secret_access_key" in a connection string`},
		{RcloneCopy, "source: /a\ndest: /b\nflags: ['--s3-secret-access-key=x']", "would put a credential"},
		{RcloneSync, "source: /a\ndest: /b\nflags: ['--max-delete=100']", "managed by the step"},
		{RcloneDelete, "source: r:b", `missing required param "min_age"`},
		{RcloneDelete, "source: r:b\nmin_age: 1m", "min_age must be at least 1h"},
	} {
		_, probs := c.def.Type().Decode(yamlNode(t, c.with), false)
		require.NotEmpty(t, probs, c.with)
		assert.Contains(t, probs[0].Msg, c.want, c.with)
	}
	_, probs := decodeWithProblems(t, RcloneCopy, "source: /a\ndest: ':s3,provider=Other,env_auth=true:bucket'")
	assert.Empty(t, probs, "non-secret connection-string params are fine")
}

func TestRcloneKindAndPreview(t *testing.T) {
	for typ, want := range map[*engine.Type]engine.Kind{RcloneSync.Type(): engine.KindDestructive, RcloneCopy.Type(): engine.KindBackup,
		RcloneCheck.Type(): engine.KindOther, RcloneLsf.Type(): engine.KindOther, RcloneSize.Type(): engine.KindOther,
		RcloneDelete.Type(): engine.KindDestructive} {
		assert.Equal(t, want, typ.Kind, typ.Name)
	}
	env, _ := offsiteEnv(t, "r")
	p := decodeWith(t, RcloneSync, "source: /backups\ndest: offsite:b")
	lines := RcloneSync.Type().Preview(env, p)
	require.Len(t, lines, 3)
	assert.Contains(t, lines[0], "--dry-run")
	assert.Contains(t, lines[1], "rclone size --json offsite:b")
	assert.Contains(t, lines[2], "--max-delete <50% of dest files>")
	d := decodeWith(t, RcloneDelete, "source: offsite:b\nmin_age: 30d")
	lines = RcloneDelete.Type().Preview(env, d)
	require.Len(t, lines, 3)
	assert.Contains(t, lines[2], "rclone delete")
}
