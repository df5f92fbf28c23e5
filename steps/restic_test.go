package steps

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/lines"
)

// Lines captured from Debian's restic 0.14.0 (backup --json, forget --json --prune).
const (
	restic014BackupOut = `{"message_type":"status","percent_done":0,"total_files":1,"total_bytes":6}
{"message_type":"status","percent_done":0.5,"total_files":2,"files_done":1,"total_bytes":12,"bytes_done":6}
{"message_type":"error","error":{"Op":"open","Path":"/data/locked","Err":13},"during":"archival","item":"/data/locked"}
{"message_type":"summary","files_new":2,"files_changed":0,"files_unmodified":0,"dirs_new":2,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":3,"data_added":1413,"total_files_processed":2,"total_bytes_processed":12,"total_duration":0.208623235,"snapshot_id":"3507bde2"}
`
	restic014ForgetOut = `[{"tags":null,"host":"","paths":null,"keep":[{"time":"2026-11-21T23:45:38.425409498Z","tree":"c48c","paths":["/db.dump"],"hostname":"vm","username":"root","id":"f86fd92618e28275d8aee10cef3d9fcdba336bf3a40088c1225a3e316eb03c4f","short_id":"f86fd926"}],"remove":[{"time":"2026-11-21T23:45:37.723527747Z","tree":"2070","paths":["/tmp/rx/data"],"hostname":"vm","username":"root","id":"85a0e20fd7bdeeb5d7340cd502562931b463742e47d55e1f0ed9377e2f886191","short_id":"85a0e20f"},{"time":"2026-11-21T23:45:37.026999049Z","tree":"6a18","paths":["/tmp/rx/data"],"hostname":"h1","username":"root","tags":["t1"],"id":"3507bde273e40feb2026ef686944ee46ba3785d648ab7f47db70629644625e5c","short_id":"3507bde2"}],"reasons":[]}]
loading indexes...
to delete:             8 blobs / 1.583 KiB
done
`
)

func TestResticBackupParser(t *testing.T) {
	var progress []int64
	p := &resticBackupParser{progress: func(n int64) { progress = append(progress, n) }}
	lw := lines.New(p.line)
	_, _ = lw.Write([]byte(restic014BackupOut[:100])) // split mid-line
	_, _ = lw.Write([]byte(restic014BackupOut[100:]))
	lw.Flush()
	require.NotNil(t, p.summary)
	assert.Equal(t, "3507bde2", p.summary.SnapshotID)
	assert.Equal(t, int64(1413), p.summary.DataAdded)
	assert.Equal(t, int64(12), p.summary.TotalBytesProcessed)
	assert.Equal(t, int64(2), p.summary.FilesNew)
	assert.Equal(t, []int64{6}, progress)
	assert.Len(t, p.errors, 1)
	assert.True(t, strings.HasPrefix(p.errors[0], "/data/locked"))

	// 0.18 reports the full id and exit errors as JSON.
	p2 := &resticBackupParser{}
	p2.line([]byte(`{"message_type":"summary","files_new":1,"data_added":5,"snapshot_id":"` + strings.Repeat("ab", 32) + `"}`))
	p2.line([]byte(`{"message_type":"exit_error","code":1,"message":"Fatal: boom"}`))
	assert.Len(t, p2.summary.SnapshotID, 64)
	assert.Equal(t, []string{"Fatal: boom"}, p2.errors)
}

func TestResticParseForgetIgnoresPruneText(t *testing.T) {
	removed, kept, err := parseForget([]byte(restic014ForgetOut))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"85a0e20fd7bdeeb5d7340cd502562931b463742e47d55e1f0ed9377e2f886191",
		"3507bde273e40feb2026ef686944ee46ba3785d648ab7f47db70629644625e5c",
	}, removed)
	assert.Equal(t, []string{"f86fd92618e28275d8aee10cef3d9fcdba336bf3a40088c1225a3e316eb03c4f"}, kept)
	_, _, err = parseForget([]byte("Fatal: something\n"))
	assert.Error(t, err)
}

func TestResticParseInitID(t *testing.T) {
	assert.Equal(t, "08c8ec4c18", parseInitID("created restic repository 08c8ec4c18 at /tmp/rx/repo\n\nPlease note..."))
	assert.Equal(t, "a1b2", parseInitID(`{"message_type":"initialized","id":"a1b2","repository":"/r"}`))
	assert.Equal(t, "", parseInitID("nothing"))
}

func TestResticArgs(t *testing.T) {
	p := decodeWith(t, Restic, "command: backup\npaths: [/backups/mongo]\ntags: [daily]\nhost: db1\nexclude: ['*.tmp']\nexclude_file: [/etc/ex]")
	assert.Equal(t, []string{"backup", "--json", "--tag", "daily", "--host", "db1", "--exclude", "*.tmp", "--exclude-file", "/etc/ex", "/backups/mongo"}, p.backupArgs("paths"))
	p.Paths = []string{"-odd"}
	assert.Equal(t, []string{"--", "-odd"}, p.backupArgs("paths")[10:])

	p = decodeWith(t, Restic, "command: backup\nstdin_file: /backups/db.dump.zst.age")
	assert.Equal(t, []string{"backup", "--json", "--stdin", "--stdin-filename", "db.dump"}, p.backupArgs("stdin"))
	p = decodeWith(t, Restic, "command: backup\nstdin_command: [pg_dump, -Fc, app]\nstdin_filename: app.pgdump")
	assert.Equal(t, []string{"backup", "--json", "--stdin-from-command", "--stdin-filename", "app.pgdump", "--", "pg_dump", "-Fc", "app"}, p.backupArgs("from-command"))

	p = decodeWith(t, Restic, "command: forget\nkeep_last: 3\nkeep_daily: 7\nkeep_within: 36h\nprune: true\ntags: [daily]")
	assert.Equal(t, []string{"forget", "--json", "--keep-last", "3", "--keep-daily", "7", "--keep-within", "1d12h",
		"--group-by", "host,paths", "--tag", "daily", "--prune"}, p.forgetArgs())

	p = decodeWith(t, Restic, "command: check\nread_data_subset: 10%")
	assert.Equal(t, []string{"check", "--read-data-subset", "10%"}, p.checkArgs())
	p = decodeWith(t, Restic, "command: restore\ntarget: /restore\ninclude: [/db]\nhost: db1")
	assert.Equal(t, []string{"restore", "latest", "--target", "/restore", "--include", "/db", "--host", "db1"}, p.restoreArgs())
	assert.Equal(t, "2h", resticWithin(engine.Duration(2*3600e9)))
	assert.Equal(t, "30d0h", resticWithin(engine.Duration(30*24*3600e9)))
}

func TestResticValidate(t *testing.T) {
	for with, want := range map[string]string{
		"command: backup": "exactly one of paths, stdin_file and stdin_command",
		"command: backup\npaths: [/a]\nstdin_file: /x":    "exactly one of",
		"command: backup\nstdin_file: /x\nexclude: [a]":   "exclude and exclude_file apply to a backup of paths",
		"command: backup\npaths: [/a]\nkeep_last: 3":      "keep_* applies to command forget",
		"command: forget\nkeep_last: -1":                  "must not be negative",
		"command: snapshots\nprune: true":                 "prune applies to command forget",
		"command: check\nread_data_subset: lots":          "read_data_subset",
		"command: restore":                                "restore needs target",
		"command: backup\npaths: [/a]\nstdin_filename: x": "stdin_filename applies",
		"command: backups":                                "must be one of",
	} {
		_, probs := decodeWithProblems(t, Restic, with)
		require.NotEmpty(t, probs, with)
		assert.Contains(t, probs[0].Msg, want, with)
	}
	for _, ok := range []string{"command: check\nread_data_subset: 1/5", "command: check\nread_data_subset: 500M", "command: forget\nkeep_daily: 7"} {
		_, probs := decodeWithProblems(t, Restic, ok)
		assert.Empty(t, probs, ok)
	}
	assert.False(t, Restic.Type().Params.Lookup("repository").Secret, "only credentials inside the URL are masked, not the path")
}

func TestResticKindPerCommand(t *testing.T) {
	typ := Restic.Type()
	for cmd, want := range map[string]engine.Kind{
		"backup": engine.KindBackup, "forget": engine.KindDestructive, "check": engine.KindOther,
		"snapshots": engine.KindOther, "restore": engine.KindOther, "init": engine.KindOther,
	} {
		assert.Equal(t, want, typ.KindFor(&ResticParams{Command: cmd}), cmd)
	}
	assert.Equal(t, engine.KindDestructive, typ.Kind, "the type as a whole is as dangerous as its worst command")
}

func TestResticEnvNeverPutsSecretsInArgv(t *testing.T) {
	env, _ := offsiteEnv(t, "r")
	pwFile := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte("s3cr3t-pass\n"), 0o600))
	env.Environ = []string{"PATH=/usr/bin", "AWS_CA_BUNDLE=/etc/ca.pem", "RESTIC_PASSWORD_COMMAND=echo x"}
	repo := "rclone:offsite:bucket/restic"
	p := decodeWith(t, Restic, "command: backup\npaths: [/backups/mongo]\ntags: [daily]\nrepository: "+repo+"\npassword_file: "+pwFile+"\ncache_dir: /var/cache/restic")
	c, err := newResticCall(env, p)
	require.NoError(t, err)
	get := func(k string) string { v, _ := engine.LookupEnv(c.environ, k); return v }
	assert.Equal(t, repo, get("RESTIC_REPOSITORY"))
	assert.Equal(t, pwFile, get("RESTIC_PASSWORD_FILE"))
	assert.Equal(t, "/var/cache/restic", get("RESTIC_CACHE_DIR"))
	_, hasCA := engine.LookupEnv(c.environ, "AWS_CA_BUNDLE")
	assert.False(t, hasCA, "rclone: repos must not see AWS_CA_BUNDLE")
	_, hasCmd := engine.LookupEnv(c.environ, "RESTIC_PASSWORD_COMMAND")
	assert.False(t, hasCmd, "password_file replaces the env's password command")

	lines := Restic.Preview(env, p)
	assert.Equal(t, []string{"run: restic backup --json --tag daily /backups/mongo"}, lines)
	assert.Equal(t, "repo "+repo+" here", env.Secrets.Redact("repo "+repo+" here"), "a repository without credentials stays readable")
	env.Secrets.Add(engine.URIPasswords("rest:https://u:Rest-Pw-81@h/")...)
	assert.Equal(t, "rest:https://u:***@h/", env.Secrets.Redact("rest:https://u:Rest-Pw-81@h/"), "credentials in a rest: URL are masked")

	// s3: keeps AWS_CA_BUNDLE (restic's own S3 client does not use it) and needs a password.
	env.Environ = []string{"AWS_CA_BUNDLE=/etc/ca.pem"}
	p = decodeWith(t, Restic, "command: snapshots\nrepository: s3:http://u:pw123@h/b")
	_, err = newResticCall(env, p)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no repository password")
	env.Environ = append(env.Environ, "RESTIC_PASSWORD=env-pass")
	c, err = newResticCall(env, p)
	require.NoError(t, err)
	_, hasCA = engine.LookupEnv(c.environ, "AWS_CA_BUNDLE")
	assert.True(t, hasCA)
	assert.Equal(t, "*** ***", env.Secrets.Redact("env-pass pw123"))

	env.Environ = []string{"RESTIC_PASSWORD=x"}
	_, err = newResticCall(env, decodeWith(t, Restic, "command: snapshots"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no repository")
}

func TestResticForgetRefusesEmptyPolicyAtRun(t *testing.T) {
	env, _ := offsiteEnv(t, "r")
	env.Environ = []string{"RESTIC_REPOSITORY=/nonexistent", "RESTIC_PASSWORD=x"}
	p := decodeWith(t, Restic, "command: forget") // keep_* from ${{ }} that resolved to 0
	_, err := Restic.Run(context.Background(), env, p)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no keep policy")
}
