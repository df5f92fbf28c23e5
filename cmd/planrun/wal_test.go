package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/planrun/planrun/internal/testenv"
	"github.com/planrun/planrun/steps/walarchive"
)

// walSetup writes a push config (age to the demo recipient, no identity)
// and a fetch config (with the identity) for an archive in dir.
func walSetup(t *testing.T, dir string) (pushCfg, fetchCfg string) {
	t.Helper()
	keys, _ := filepath.Abs("../../testdata/keys")
	pub, _ := os.ReadFile(filepath.Join(keys, "demo.agepub"))
	pushCfg = filepath.Join(dir, "wal-push.yaml")
	fetchCfg = filepath.Join(dir, "wal-fetch.yaml")
	body := "dir: archive\nencrypt:\n  recipients: [" + strings.TrimSpace(string(pub)) + "]\n"
	if err := os.WriteFile(pushCfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fetchCfg, []byte(body+"identity_file: "+filepath.Join(keys, "demo.agekey")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return pushCfg, fetchCfg
}

// TestWALPushFetchExitCodes: the exit codes PostgreSQL relies on.
func TestWALPushFetchExitCodes(t *testing.T) {
	dir := t.TempDir()
	pushCfg, fetchCfg := walSetup(t, dir)
	seg := filepath.Join(dir, "000000010000000000000001")
	data := make([]byte, 1<<20)
	rand.Read(data)
	os.WriteFile(seg, data, 0o600)

	r := runCLI(t, "wal-push", "--config", pushCfg, seg)
	if r.code != 0 || r.stderr != "" || r.stdout != "" {
		t.Fatalf("push: %+v", r)
	}
	// Again, same content: success (PostgreSQL retries after a crash).
	t.Setenv(walarchive.ConfigEnv, pushCfg) // the env instead of --config
	before := testenv.SnapshotDir(t, filepath.Join(dir, "archive"))
	if r := runCLI(t, "wal-push", seg); r.code != 0 {
		t.Fatalf("push again: %+v", r)
	}
	// Changed content under the same name: a loud failure, ≤ 125, nothing changed.
	data[4096] ^= 1
	os.WriteFile(seg, data, 0o600)
	r = runCLI(t, "wal-push", seg)
	if r.code != 1 || !strings.Contains(r.stderr, "already archived with different content") || !strings.Contains(r.stderr, "000000010000000000000001") {
		t.Fatalf("conflicting push: %+v", r)
	}
	if !maps.Equal(before, testenv.SnapshotDir(t, filepath.Join(dir, "archive"))) {
		t.Fatal("conflicting push changed the archive")
	}

	dest := filepath.Join(dir, "pg_wal", "RECOVERYXLOG")
	os.MkdirAll(filepath.Dir(dest), 0o700)
	r = runCLI(t, "wal-fetch", "--config", fetchCfg, "000000010000000000000001", dest)
	data[4096] ^= 1
	if got, _ := os.ReadFile(dest); r.code != 0 || !bytes.Equal(got, data) {
		t.Fatalf("fetch: %+v (content equal: %v)", r, bytes.Equal(got, data))
	}
	// Missing: exit 1, one quiet line.
	r = runCLI(t, "wal-fetch", "--config", fetchCfg, "000000010000000000000002", filepath.Join(dir, "pg_wal", "x"))
	if r.code != 1 || strings.Count(r.stderr, "\n") > 1 || r.stdout != "" {
		t.Fatalf("fetch missing: %+v", r)
	}
	// Present but not restorable (no identity; then corrupt): 126, which
	// stops recovery instead of ending it early; nothing at DEST.
	r = runCLI(t, "wal-fetch", "--config", pushCfg, "000000010000000000000001", filepath.Join(dir, "pg_wal", "y"))
	if r.code != exitWALFatal || !strings.Contains(r.stderr, "identity_file") {
		t.Fatalf("fetch without identity: %+v", r)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "archive", "wal", "*", "000000010000000000000001-*.age"))
	b, _ := os.ReadFile(files[0])
	b[len(b)-3] ^= 1
	os.WriteFile(files[0], b, 0o600)
	r = runCLI(t, "wal-fetch", "--config", fetchCfg, "000000010000000000000001", filepath.Join(dir, "pg_wal", "z"))
	if r.code != exitWALFatal || !strings.Contains(r.stderr, "000000010000000000000001") {
		t.Fatalf("fetch of a corrupt file: %+v", r)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "pg_wal")); len(ents) != 1 {
		t.Fatalf("pg_wal holds %v", ents)
	}
	// A config that cannot be read: push 1, fetch 126; not a WAL name: 1.
	if r := runCLI(t, "wal-push", "--config", filepath.Join(dir, "nope.yaml"), seg); r.code != 1 || !strings.Contains(r.stderr, "nope.yaml") {
		t.Fatalf("push, missing config: %+v", r)
	}
	if r := runCLI(t, "wal-fetch", "--config", filepath.Join(dir, "nope.yaml"), "000000010000000000000001", dest); r.code != exitWALFatal {
		t.Fatalf("fetch, missing config: %+v", r)
	}
	if r := runCLI(t, "wal-push", filepath.Join(dir, "wal-push.yaml")); r.code != 1 || !strings.Contains(r.stderr, "not a WAL file name") {
		t.Fatalf("push of a non-WAL file: %+v", r)
	}
	t.Setenv(walarchive.ConfigEnv, "")
	if r := runCLI(t, "wal-push", seg); r.code != exitUsage || !strings.Contains(r.stderr, walarchive.ConfigEnv) {
		t.Fatalf("push without config: %+v", r)
	}
}

// fakeSegments pushes fake segments first..last of timeline 1 with the
// built binary (small content: only the names matter to wal-verify).
func pushFakeSegments(t *testing.T, bin, cfg string, first, last int) {
	t.Helper()
	dir := t.TempDir()
	for i := first; i <= last; i++ {
		name := walarchive.SegmentName(1, walarchive.LSN(uint64(i)*walarchive.DefaultSegmentSize), walarchive.DefaultSegmentSize)
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte("segment "+name), 0o600)
		if out, err := exec.Command(bin, "wal-push", "--config", cfg, p).CombinedOutput(); err != nil {
			t.Fatalf("wal-push %s: %v: %s", name, err, out)
		}
	}
}

// TestWALPushKilled: SIGKILL while the archive's temporary file is being
// written leaves no file under a final name, and the retry succeeds;
// SIGTERM makes wal-push clean up and exit 1 (a signal death would be
// fatal to PostgreSQL's archiver).
func TestWALPushKilled(t *testing.T) {
	testenv.RequireTool(t, "go")
	bin := testenv.PlanrunBin(t)
	dir := t.TempDir()
	pushCfg, fetchCfg := walSetup(t, dir)
	// Random data does not compress: the temporary file grows for a while.
	big := filepath.Join(dir, "000000010000000000000003")
	data := make([]byte, 96<<20)
	rand.Read(data)
	if err := os.WriteFile(big, data, 0o600); err != nil {
		t.Fatal(err)
	}
	archDir := filepath.Join(dir, "archive", "wal", "0000000100000000")
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			// SIGKILL leaves its (hidden) temporary file behind.
			stale, _ := filepath.Glob(filepath.Join(archDir, ".000000010000000000000003-*.tmp-*"))
			for _, f := range stale {
				os.Remove(f)
			}
			cmd := exec.Command(bin, "wal-push", "--config", pushCfg, big)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(60 * time.Second)
			for {
				tmps, _ := filepath.Glob(filepath.Join(archDir, ".000000010000000000000003-*.tmp-*"))
				if len(tmps) > 0 {
					break
				}
				if time.Now().After(deadline) || cmd.ProcessState != nil {
					cmd.Process.Kill()
					t.Fatalf("no temporary file appeared; stderr %s", stderr.String())
				}
				time.Sleep(time.Millisecond) // polling interval
			}
			cmd.Process.Signal(sig)
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("wal-push was not stopped: %v", err)
			}
			if sig == syscall.SIGTERM {
				if ee.ExitCode() != 1 {
					t.Fatalf("after SIGTERM: exit %d (%v), want 1; stderr %s", ee.ExitCode(), err, stderr.String())
				}
				if tmps, _ := filepath.Glob(filepath.Join(archDir, ".000000010000000000000003-*")); len(tmps) != 0 {
					t.Fatalf("SIGTERM left %v", tmps)
				}
			}
			if final, _ := filepath.Glob(filepath.Join(archDir, "000000010000000000000003-*")); len(final) != 0 {
				t.Fatalf("interrupted push left %v under a final name", final)
			}
		})
	}
	// The retry PostgreSQL makes succeeds, and the file round-trips.
	if out, err := exec.Command(bin, "wal-push", "--config", pushCfg, big).CombinedOutput(); err != nil {
		t.Fatalf("retry: %v: %s", err, out)
	}
	dest := filepath.Join(dir, "back")
	if out, err := exec.Command(bin, "wal-fetch", "--config", fetchCfg, "000000010000000000000003", dest).CombinedOutput(); err != nil {
		t.Fatalf("fetch: %v: %s", err, out)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatal("fetched content differs")
	}
}

// TestWALVerifyCLI: a missing segment in the middle fails wal-verify,
// naming it.
func TestWALVerifyCLI(t *testing.T) {
	testenv.RequireTool(t, "go")
	bin := testenv.PlanrunBin(t)
	dir := t.TempDir()
	pushCfg, _ := walSetup(t, dir)
	pushFakeSegments(t, bin, pushCfg, 1, 6)
	r := runCLI(t, "wal-verify", "--config", pushCfg)
	if r.code != 0 || !strings.Contains(r.stdout, "000000010000000000000001 .. 000000010000000000000006") || !strings.Contains(r.stdout, "6 segments") {
		t.Fatalf("verify: %+v", r)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "archive", "wal", "*", "000000010000000000000004-*"))
	for _, f := range files {
		os.Remove(f)
	}
	r = runCLI(t, "wal-verify", "--config", pushCfg)
	if r.code != 1 || !strings.Contains(r.stdout, "missing: 000000010000000000000004") || !strings.Contains(r.stderr, "segment 000000010000000000000004 is missing") {
		t.Fatalf("verify with a gap: %+v", r)
	}
	r = runCLI(t, "wal-verify", "--config", pushCfg, "--json")
	if r.code != 1 || !strings.Contains(r.stdout, `"from": "000000010000000000000004"`) {
		t.Fatalf("verify --json: %+v", r)
	}
}

// walCluster starts a private PostgreSQL 15 whose archive_command is the
// built planrun wal-push, with zstd + age to the demo recipient.
func walCluster(t *testing.T) (c *testenv.PGCluster, bin, pushCfg, fetchCfg string) {
	t.Helper()
	testenv.RequireTool(t, "go")
	c = testenv.NewPG(t, testenv.PGOptions{Settings: map[string]string{"max_wal_size": "64MB", "min_wal_size": "32MB"}})
	bin = testenv.PlanrunBin(t)
	keys, _ := filepath.Abs("../../testdata/keys")
	pub, _ := os.ReadFile(filepath.Join(keys, "demo.agepub"))
	arch := c.MkdirOwned(t, "archive")
	body := "dir: " + arch + "\nencrypt:\n  recipients: [" + strings.TrimSpace(string(pub)) + "]\n"
	pushCfg = c.WriteOwned(t, "wal-push.yaml", []byte(body))
	fetchCfg = c.WriteOwned(t, "wal-fetch.yaml", []byte(body+"identity_file: "+filepath.Join(keys, "demo.agekey")+"\n"))
	c.SetArchiveCommand(t, bin+" wal-push --config "+pushCfg+" %p")
	c.Start(t)
	return c, bin, pushCfg, fetchCfg
}

// TestWALArchiveRealServer: PostgreSQL archives through planrun wal-push;
// the segments arrive, fetch back byte for byte as PostgreSQL wrote them
// (pg_waldump reads them), and the chain verifies.
func TestWALArchiveRealServer(t *testing.T) {
	c, bin, pushCfg, fetchCfg := walCluster(t)
	c.Psql(t, "CREATE TABLE marker (id int, note text)")
	var segs []string
	for i := 0; i < 3; i++ {
		c.Psql(t, "INSERT INTO marker SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
		segs = append(segs, c.WaitArchived(t, time.Minute))
	}
	if failed := c.Psql(t, "SELECT failed_count FROM pg_stat_archiver"); failed != "0" {
		t.Fatalf("archiver failures: %s\n%s", failed, c.ServerLog())
	}
	cfg, err := walarchive.LoadConfig(fetchCfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if ok, err := walarchive.Archived(cfg, s); !ok || err != nil {
			t.Fatalf("%s not archived: %v", s, err)
		}
	}
	// Fetch every segment from the first to the last as recovery would.
	walDir := filepath.Join(t.TempDir(), "pg_wal")
	os.MkdirAll(walDir, 0o700)
	_, first, _ := walarchive.ParseSegmentName(segs[0], walarchive.DefaultSegmentSize)
	_, last, _ := walarchive.ParseSegmentName(segs[len(segs)-1], walarchive.DefaultSegmentSize)
	for n := first; n <= last; n++ {
		s := walarchive.SegmentName(1, walarchive.LSN(n*walarchive.DefaultSegmentSize), walarchive.DefaultSegmentSize)
		if out, err := exec.Command(bin, "wal-fetch", "--config", fetchCfg, s, filepath.Join(walDir, s)).CombinedOutput(); err != nil {
			t.Fatalf("wal-fetch %s: %v: %s", s, err, out)
		}
		fi, err := os.Stat(filepath.Join(walDir, s))
		if err != nil || fi.Size() != 16<<20 {
			t.Fatalf("%s: %v, size %v", s, err, fi)
		}
	}
	// pg_waldump decodes the records of the fetched segments.
	out, err := exec.Command(filepath.Join(c.Bin, "pg_waldump"), "--path", walDir, "--stats", segs[0], segs[len(segs)-1]).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Total") {
		t.Fatalf("pg_waldump: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "Heap") {
		t.Fatalf("pg_waldump found no heap records:\n%s", out)
	}
	// The chain from the first archived segment is unbroken.
	r := runCLI(t, "wal-verify", "--config", pushCfg)
	if r.code != 0 {
		t.Fatalf("wal-verify: %+v", r)
	}
	// A restart (fast shutdown archives the last segment) keeps archiving.
	c.Restart(t)
	c.WaitArchived(t, time.Minute)
	if n, _ := strconv.Atoi(c.Psql(t, "SELECT archived_count FROM pg_stat_archiver")); n < 1 {
		t.Fatalf("archived_count %d after restart", n)
	}
}
