package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/planrun/planrun/engine"

	"github.com/planrun/planrun/internal/testenv"
)

// cmdlineSampler reads every /proc/*/cmdline in a loop until stopped and
// records the command lines that contain any of the secrets.
type cmdlineSampler struct {
	secrets [][]byte
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	leaks   []string
	rounds  int
	seen    map[string]bool // argv[0] base names seen, to prove the sampler saw the children
}

func startSampler(secrets ...string) *cmdlineSampler {
	s := &cmdlineSampler{stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]bool{}}
	for _, v := range secrets {
		s.secrets = append(s.secrets, []byte(v))
	}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
				if err != nil || len(b) == 0 {
					continue
				}
				argv0 := string(bytes.SplitN(b, []byte{0}, 2)[0])
				s.mu.Lock()
				s.seen[filepath.Base(argv0)] = true
				for _, sec := range s.secrets {
					if bytes.Contains(b, sec) {
						s.leaks = append(s.leaks, string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
					}
				}
				s.mu.Unlock()
			}
			s.mu.Lock()
			s.rounds++
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *cmdlineSampler) finish(t *testing.T, mustSee ...string) {
	t.Helper()
	close(s.stop)
	<-s.done
	for _, l := range s.leaks {
		t.Errorf("secret visible in /proc/*/cmdline: %s", l)
	}
	for _, name := range mustSee {
		if !s.seen[name] {
			t.Errorf("sampler never saw a %s process (%d rounds): the check proved nothing", name, s.rounds)
		}
	}
}

// pgPasswordCluster starts a private PostgreSQL 15 cluster that requires
// scram-sha-256 over TCP, with superuser password pw.
func pgPasswordCluster(t *testing.T, pw string) (port string) {
	t.Helper()
	vals := testenv.Require(t, "PostgreSQL server binaries", "PG_BIN")
	testenv.RequireTool(t, "runuser")
	bin := vals["PG_BIN"]
	dir, err := os.MkdirTemp("", "planrun-pgpw-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	pwfile := filepath.Join(dir, "pw")
	os.WriteFile(pwfile, []byte(pw+"\n"), 0o644)
	exec.Command("chown", "-R", "postgres:postgres", dir).Run()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run(bin+"/initdb", "-D", dir+"/data", "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256",
		"--pwfile="+pwfile, "-E", "UTF8", "--no-locale")
	os.Remove(pwfile)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	run(bin+"/pg_ctl", "-D", dir+"/data", "-l", dir+"/server.log", "-w", "-t", "60",
		"-o", "-c listen_addresses=127.0.0.1 -p "+port+" -k "+dir+" -c fsync=off", "start")
	t.Cleanup(func() {
		exec.Command("runuser", "-u", "postgres", "--", bin+"/pg_ctl", "-D", dir+"/data", "-m", "immediate", "-w", "stop").Run()
	})
	return port
}

// No password ever shows in any process's argv while pg_dump/pg_restore/psql
// run, nor in errors or outputs; and a wrong password is really refused.
func TestPgPasswordNeverInArgv(t *testing.T) {
	testenv.RequireTool(t, "pg_dump")
	const pw = "Sup3r:S3cret\\pw-7f3a"
	port := pgPasswordCluster(t, pw)
	base := []string{"PGHOST=127.0.0.1", "PGPORT=" + port, "PGUSER=postgres", "PGPASSWORD=" + pw}
	psqlT(t, "postgres", "CREATE DATABASE app", base...)
	psqlT(t, "app", "CREATE TABLE t(id int primary key, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1,50000) g", base...)

	// The step's environment has no PGPASSWORD: the step must supply it.
	clean := []string{"PGHOST=", "PGPORT=", "PGUSER=", "PGPASSWORD=", "PG_SECRET=" + pw}
	out := filepath.Join(t.TempDir(), "app.dump.zst")
	uri := fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%s/app?sslmode=disable", strings.NewReplacer(":", "%3A", "\\", "%5C").Replace(pw), port)

	// The dump runs pg_dump and the psql session holding its snapshot.
	s := startSampler(pw, "S3cret")
	env := dbEnv(t, clean...)
	p := dbDecode(t, PgDump, "uri: '"+uri+"'\noutput: "+out)
	env.Secrets.Add(PgDump.Type().SecretValues(p)...)
	res, rec, err := runPgDump(context.Background(), env, p)
	s.finish(t, "pg_dump", "psql")
	if err != nil {
		t.Fatal(err)
	}
	// The record: where the data came from, no password, no uri.
	if b, _ := json.Marshal(rec); strings.Contains(string(b), "S3cret") || strings.Contains(string(b), "uri") || strings.Contains(string(b), "postgres://") {
		t.Errorf("record: %s", b)
	}
	if src := rec.Source; src["host"] != "127.0.0.1" || src["port"] != port || src["user"] != "postgres" || src["database"] != "app" || rec.Counts["rows:public.t"] != 50000 {
		t.Errorf("record: source %v, counts %v", src, rec.Counts)
	}
	s = startSampler(pw, "S3cret")
	renv := dbEnv(t, clean...)
	rres, err := dbRun(t, PgRestore, renv, fmt.Sprintf(
		"host: 127.0.0.1\nport: %s\nuser: postgres\npassword_env: PG_SECRET\ndatabase: app_copy\nrecreate_database: true\ninput: %s\nverify_counts: [t]\n"+
			// after_sql reaches psql on stdin: a password in it (the same
			// one, set again) stays out of argv; it runs before the counts.
			"after_sql:\n  - 'ALTER ROLE postgres PASSWORD ''%s'''\n  - DELETE FROM t WHERE id = 1", port, out, pw))
	s.finish(t, "pg_restore", "psql")
	if err != nil {
		t.Fatal(err)
	}
	if rres["counts"].(map[string]int64)["rows:public.t"] != 49999 {
		t.Errorf("counts: %v", rres["counts"])
	}
	if strings.Contains(fmt.Sprint(res, rres), "S3cret") {
		t.Errorf("password in outputs: %v %v", res, rres)
	}
	for _, te := range []*engine.Env{env, renv} {
		e, err := te.TempDir()
		if err != nil {
			t.Fatal(err)
		}
		if ents, _ := os.ReadDir(e); len(ents) != 0 {
			t.Errorf("PGPASSFILE left in %s: %v", e, ents)
		}
	}

	// Wrong password: refused, and the error does not echo it.
	_, err = dbRun(t, PgDump, dbEnv(t, clean...), fmt.Sprintf(
		"uri: postgres://postgres:wrongpass123@127.0.0.1:%s/app?sslmode=disable\noutput: %s/x", port, t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("wrong password: err = %v", err)
	}
	if strings.Contains(err.Error(), "wrongpass123") {
		t.Errorf("password in error: %v", err)
	}
}
