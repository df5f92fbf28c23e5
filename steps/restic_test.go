package steps

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/restic"
)

func TestResticArgs(t *testing.T) {
	b := decodeWith(t, ResticBackup, "paths: [/backups/mongo]\ntags: [daily]\nhost: db1\nexclude: ['*.tmp']\nexclude_file: [/etc/ex]")
	assert.Equal(t, []string{"backup", "--json", "--tag", "daily", "--host", "db1", "--exclude", "*.tmp", "--exclude-file", "/etc/ex", "/backups/mongo"}, b.args("paths"))
	b.Paths = []string{"-odd"}
	assert.Equal(t, []string{"--", "-odd"}, b.args("paths")[10:])

	b = decodeWith(t, ResticBackup, "stdin_file: /backups/db.dump.zst.age")
	assert.Equal(t, []string{"backup", "--json", "--stdin", "--stdin-filename", "db.dump"}, b.args("stdin"))
	b = decodeWith(t, ResticBackup, "stdin_command: [pg_dump, -Fc, app]\nstdin_filename: app.pgdump")
	assert.Equal(t, []string{"backup", "--json", "--stdin-from-command", "--stdin-filename", "app.pgdump", "--", "pg_dump", "-Fc", "app"}, b.args("from-command"))

	f := decodeWith(t, ResticForget, "keep_last: 3\nkeep_daily: 7\nkeep_within: 36h\nprune: true\ntags: [daily]")
	assert.Equal(t, []string{"forget", "--json", "--keep-last", "3", "--keep-daily", "7", "--keep-within", "1d12h",
		"--group-by", "host,paths", "--tag", "daily", "--prune"}, f.args())

	c := decodeWith(t, ResticCheck, "read_data_subset: 10%")
	assert.Equal(t, []string{"check", "--read-data-subset", "10%"}, c.args())
	r := decodeWith(t, ResticRestore, "target: /restore\ninclude: [/db]\nhost: db1")
	assert.Equal(t, []string{"restore", "latest", "--target", "/restore", "--include", "/db", "--host", "db1"}, r.args("latest"))
	assert.Equal(t, []string{"restore", "abcd1234", "--target", "/restore", "--include", "/db"}, r.args("abcd1234"),
		"a resolved id needs no filter")
	u := decodeWith(t, ResticUnlock, "")
	assert.Equal(t, []string{"unlock"}, u.args(), "only stale locks unless asked")
	u = decodeWith(t, ResticUnlock, "remove_all: true")
	assert.Equal(t, []string{"unlock", "--remove-all"}, u.args())
	cp := decodeWith(t, ResticCopy, "dest_repository: /offsite\ntags: [daily]")
	assert.Equal(t, []string{"copy", "--tag", "daily"}, cp.args())
	assert.True(t, cp.Init)
	assert.Equal(t, "2h", resticWithin(engine.Duration(2*3600e9)))
	assert.Equal(t, "30d0h", resticWithin(engine.Duration(30*24*3600e9)))
}

func TestResticValidate(t *testing.T) {
	for _, c := range []struct {
		def  interface{ Type() *engine.Type }
		with string
		want string
	}{
		{ResticBackup, "tags: [a]", "exactly one of paths, stdin_file and stdin_command"},
		{ResticBackup, "paths: [/a]\nstdin_file: /x", "exactly one of"},
		{ResticBackup, "stdin_file: /x\nexclude: [a]", "exclude and exclude_file apply to a backup of paths"},
		{ResticBackup, "paths: [/a]\nkeep_last: 3", `unknown param "keep_last"`},
		{ResticBackup, "paths: [/a]\nstdin_filename: x", "stdin_filename applies"},
		{ResticForget, "keep_last: -1", "must not be negative"},
		{ResticSnapshots, "prune: true", `unknown param "prune"`},
		{ResticCheck, "read_data_subset: lots", "read_data_subset"},
		{ResticRestore, "snapshot: latest", `missing required param "target"`},
		{ResticRestore, "target: restore", "must be an absolute path"},
		{ResticDump, "file: chitlaq.sql\noutput: /r/x.sql.zst", "absolute path in the snapshot"},
		{ResticCopy, "repository: /a\ndest_repository: /a", "dest_repository is the source repository"},
	} {
		_, probs := c.def.Type().Decode(yamlNode(t, c.with), false)
		require.NotEmpty(t, probs, c.with)
		assert.Contains(t, probs[0].Msg, c.want, c.with)
	}
	for _, ok := range []string{"read_data_subset: 1/5", "read_data_subset: 500M"} {
		_, probs := decodeWithProblems(t, ResticCheck, ok)
		assert.Empty(t, probs, ok)
	}
	assert.False(t, ResticBackup.Type().Params.Lookup("repository").Secret, "only credentials inside the URL are masked, not the path")
}

func yamlNode(t *testing.T, with string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(with), &n))
	return n.Content[0]
}

func TestResticKinds(t *testing.T) {
	for typ, want := range map[*engine.Type]engine.Kind{
		ResticBackup.Type(): engine.KindBackup, ResticForget.Type(): engine.KindDestructive, ResticCheck.Type(): engine.KindOther,
		ResticSnapshots.Type(): engine.KindOther, ResticRestore.Type(): engine.KindOther, ResticInit.Type(): engine.KindOther,
		ResticCopy.Type(): engine.KindBackup, ResticUnlock.Type(): engine.KindOther, ResticDump.Type(): engine.KindOther,
	} {
		assert.Equal(t, want, typ.Kind, typ.Name)
	}
}

// A plan still using the retired multi-command types gets the exact
// replacement at validate time.
func TestRetiredResticAndRcloneTypesNameTheReplacement(t *testing.T) {
	for plan, want := range map[string]string{
		"steps:\n  - id: snap\n    type: restic\n    with: {command: backup, paths: [/a]}\n": `plan.yaml:5:11: step "snap": step type "restic" was retired: use type: restic-backup (one type per command) and drop "command"`,
		"steps:\n  - id: up\n    type: rclone\n    with:\n      command: sync\n":             `use type: rclone-sync (one type per command) and drop "command"`,
		"steps:\n  - id: up\n    type: rclone\n":                                             `use type: rclone-<command> (one type per command: rclone-sync) and drop "command"`,
	} {
		_, err := engine.Load("plan.yaml", []byte("version: 1\nname: p\n"+plan), All())
		require.Error(t, err, plan)
		assert.Contains(t, err.Error(), want, plan)
	}
}

func TestResticEnvNeverPutsSecretsInArgv(t *testing.T) {
	env, _ := offsiteEnv(t, "r")
	pwFile := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte("s3cr3t-pass\n"), 0o600))
	env.Environ = []string{"PATH=/usr/bin", "AWS_CA_BUNDLE=/etc/ca.pem", "RESTIC_PASSWORD_COMMAND=echo x"}
	repo := "rclone:offsite:bucket/restic"
	p := decodeWith(t, ResticBackup, "paths: [/backups/mongo]\ntags: [daily]\nrepository: "+repo+"\npassword_file: "+pwFile+"\ncache_dir: /var/cache/restic")
	c, err := restic.New(env, p.Repo)
	require.NoError(t, err)
	get := func(k string) string { v, _ := engine.LookupEnv(c.Environ, k); return v }
	assert.Equal(t, repo, get("RESTIC_REPOSITORY"))
	assert.Equal(t, pwFile, get("RESTIC_PASSWORD_FILE"))
	assert.Equal(t, "/var/cache/restic", get("RESTIC_CACHE_DIR"))
	_, hasCA := engine.LookupEnv(c.Environ, "AWS_CA_BUNDLE")
	assert.False(t, hasCA, "rclone: repos must not see AWS_CA_BUNDLE")
	_, hasCmd := engine.LookupEnv(c.Environ, "RESTIC_PASSWORD_COMMAND")
	assert.False(t, hasCmd, "password_file replaces the env's password command")

	lines := ResticBackup.Type().Preview(env, p)
	assert.Equal(t, []string{"run: restic backup --json --tag daily /backups/mongo"}, lines)
	assert.Equal(t, "repo "+repo+" here", env.Secrets.Redact("repo "+repo+" here"), "a repository without credentials stays readable")
	env.Secrets.Add(engine.URIPasswords("rest:https://u:Rest-Pw-81@h/")...)
	assert.Equal(t, "rest:https://u:***@h/", env.Secrets.Redact("rest:https://u:Rest-Pw-81@h/"), "credentials in a rest: URL are masked")

	// copy: the source goes as RESTIC_FROM_*, the destination as RESTIC_*.
	dest, err := restic.New(env, restic.Repo{Repository: "/offsite", PasswordFile: pwFile})
	require.NoError(t, err)
	dest.From(c)
	getd := func(k string) string { v, _ := engine.LookupEnv(dest.Environ, k); return v }
	assert.Equal(t, "/offsite", getd("RESTIC_REPOSITORY"))
	assert.Equal(t, repo, getd("RESTIC_FROM_REPOSITORY"))
	assert.Equal(t, pwFile, getd("RESTIC_FROM_PASSWORD_FILE"))

	// s3: keeps AWS_CA_BUNDLE (restic's own S3 client does not use it) and needs a password.
	env.Environ = []string{"AWS_CA_BUNDLE=/etc/ca.pem"}
	s := decodeWith(t, ResticSnapshots, "repository: s3:http://u:pw123@h/b")
	_, err = restic.New(env, s.Repo)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no repository password")
	env.Environ = append(env.Environ, "RESTIC_PASSWORD=env-pass")
	c, err = restic.New(env, s.Repo)
	require.NoError(t, err)
	_, hasCA = engine.LookupEnv(c.Environ, "AWS_CA_BUNDLE")
	assert.True(t, hasCA)
	assert.Equal(t, "*** ***", env.Secrets.Redact("env-pass pw123"))

	env.Environ = []string{"RESTIC_PASSWORD=x"}
	_, err = restic.New(env, restic.Repo{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no repository")
}

func TestResticForgetRefusesEmptyPolicyAtRun(t *testing.T) {
	env, _ := offsiteEnv(t, "r")
	env.Environ = []string{"RESTIC_REPOSITORY=/nonexistent", "RESTIC_PASSWORD=x"}
	p := decodeWith(t, ResticForget, "tags: [a]") // keep_* from ${{ }} that resolved to 0
	_, err := ResticForget.Run(context.Background(), env, p)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no keep policy")
}

// The inverse restores into the scratch directory for a drill, and
// elsewhere only into a target the operator names.
func TestResticRestoreInverse(t *testing.T) {
	a := engine.ArtifactRecord{Source: map[string]string{"snapshot": "abc", "repository": "/backups/restic", "password_file": "/etc/pw"}}
	w, err := resticRestoreInverse(a, engine.RestoreTarget{Scratch: true, Dir: "/tmp/drill/x"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"snapshot": "abc", "repository": "/backups/restic", "password_file": "/etc/pw", "target": "/tmp/drill/x", "verify": true}, w)
	w, err = resticRestoreInverse(a, engine.RestoreTarget{})
	require.NoError(t, err)
	assert.NotContains(t, w, "target", "no default target: the operator names it")
	a.Source["repository"] = "rest:https://u:***@h/"
	w, _ = resticRestoreInverse(a, engine.RestoreTarget{})
	assert.NotContains(t, w, "repository", "a masked location is not a repository")
}
