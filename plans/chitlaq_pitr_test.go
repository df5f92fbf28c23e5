package plans_test

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"filippo.io/age"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/planrun/planrun/internal/hcdouble"
	"github.com/planrun/planrun/internal/testenv"
)

// The shipped chitlaq-pitr plan against a private PostgreSQL 15 whose
// archive_command is the built planrun's wal-push: the archive check, the
// base backup into the archive, wal-verify, retention, the off-site copy
// (a local rclone remote) and the drill — a marker row, a restore to just
// after it into a scratch data dir, the row found, the dir removed.
func TestChitlaqPITRPlanBacksUpAndDrills(t *testing.T) {
	testenv.RequireTool(t, "pg_basebackup")
	testenv.RequireTool(t, "rclone")
	bin := testenv.PlanrunBin(t)
	c := testenv.NewPG(t, testenv.PGOptions{})
	archive := c.MkdirOwned(t, "archive")
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	identity := c.WriteOwned(t, "keys/age.key", []byte(id.String()+"\n"))
	recipients := c.WriteOwned(t, "keys/recipients.txt", []byte(id.Recipient().String()+"\n"))
	walCfg := c.WriteOwned(t, "wal.yaml", []byte("dir: "+archive+"\ncompress: zstd\nencrypt: {recipients_file: "+recipients+"}\n"))
	c.SetArchiveCommand(t, bin+" wal-push --config "+walCfg+" %p")
	c.Start(t)
	c.Psql(t, "CREATE TABLE users(id int PRIMARY KEY, name text); INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 1000) g")

	hc := hcdouble.New()
	srv := httptest.NewServer(hc)
	t.Cleanup(srv.Close)
	work := t.TempDir()
	envFile := filepath.Join(work, "backup.env")
	require.NoError(t, os.WriteFile(envFile, []byte("PGHOST="+c.Sock+"\nPGPORT="+strconv.Itoa(c.Port)+
		"\nPGUSER=postgres\nPGDATABASE=postgres\nHC_PITR_URL="+srv.URL+"/0b2a6f31-2f0c-4d5e-9a55-3c9d6a1e7b42\n"), 0o600))
	remote := filepath.Join(work, "remote")
	drill := filepath.Join(c.MkdirOwned(t, "drill"), "x") // under a directory the server's user reaches

	cmd := exec.Command(bin, "apply", "chitlaq-pitr.yaml", "--env-file", envFile,
		"--var", "wal_config="+walCfg, "--var", "archive="+archive, "--var", "remote="+remote,
		"--var", "identity_file="+identity, "--var", "drill_dir="+drill, "--var", "pg_bin="+testenv.PGBin())
	cmd.Env = append(os.Environ(), "PLANRUN_STATE_DIR="+filepath.Join(work, "state"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	show := exec.Command(bin, "show", "latest", "--plan", "chitlaq-pitr", "--json")
	show.Env = cmd.Env
	js, err := show.Output()
	require.NoError(t, err)
	var run struct {
		Attempts []struct {
			StepID  string         `json:"step_id"`
			Status  string         `json:"status"`
			Outputs map[string]any `json:"outputs"`
		} `json:"attempts"`
	}
	require.NoError(t, json.Unmarshal(js, &run), "%s", js)
	outputs := map[string]map[string]any{}
	for _, a := range run.Attempts {
		assert.Equal(t, "success", a.Status, "step %s", a.StepID)
		outputs[a.StepID] = a.Outputs
	}
	label, _ := outputs["base"]["label"].(string)
	require.NotEmpty(t, label, "%s", js)
	for _, f := range []string{"backup.json", "base.tar.zst.age", "base.tar.zst.age.sha256"} {
		assert.FileExists(t, filepath.Join(archive, "base", label, f))
		assert.FileExists(t, filepath.Join(remote, "pitr", "base", label, f), "copied off-site")
	}
	assert.Equal(t, label, outputs["drill"]["backup"], "the drill restores today's backup")
	assert.Equal(t, "1", outputs["drill"]["check_result"])
	assert.Equal(t, "promoted", outputs["drill"]["state"])
	assert.Contains(t, outputs["drill"]["recovery_stop"], "recovery stopping")
	assert.NoDirExists(t, filepath.Join(drill, "data"), "remove_after")
	assert.Equal(t, "1", c.Psql(t, "SELECT count(*) FROM planrun_drill"))
	assert.Equal(t, "0", c.Psql(t, "SELECT failed_count FROM pg_stat_archiver"),
		"no archive failure during the run")
}
