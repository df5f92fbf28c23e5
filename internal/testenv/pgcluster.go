package testenv

// A private PostgreSQL 15 cluster per test (issue 13: WAL archiving and
// point-in-time recovery need a server whose archive_command and data
// directory the test owns, which the shared server of scripts/testenv.sh
// cannot give). The cluster runs as the `postgres` user when the tests run
// as root (initdb refuses root), so everything it must reach — its
// directory, the archive, the planrun binary — is owned by or open to that
// user: use PGCluster.MkdirOwned and PlanrunBin.

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PGOptions configures a private cluster.
type PGOptions struct {
	// ArchiveCommand, when set, turns archive_mode on with this command
	// (e.g. "/path/planrun wal-push --config /path/wal.yaml %p").
	ArchiveCommand string
	// DataDir, when it already holds a cluster (PG_VERSION), is used as is:
	// no initdb (a restored base backup). Empty: a new cluster in Dir/data.
	DataDir string
	// Settings are extra postgresql.conf lines, key → value as written
	// (quote strings yourself: "'immediate'").
	Settings map[string]string
	// Durable keeps fsync on (off by default: tests do not survive power loss).
	Durable bool
}

// PGCluster is a running private cluster.
type PGCluster struct {
	Dir  string // private base directory (owned by the server's user); removed at cleanup
	Data string // data directory
	Sock string // unix socket directory
	Port int    // TCP port on 127.0.0.1
	Bin  string // PostgreSQL bin directory
	Log  string // server log
	User string // OS user the server runs as ("postgres" under root, else the current user)

	owner   *user.User
	running bool
}

// PGBin is the PostgreSQL 15 bin directory ($PG_BIN or Debian's).
func PGBin() string { return envOr("PG_BIN", "/usr/lib/postgresql/15/bin") }

// StartPG initdbs (unless opts.DataDir holds a cluster) and starts a
// private cluster listening on a free port of 127.0.0.1 and a socket in
// its own directory. Missing PostgreSQL binaries skip the test, or fail it
// under CI. The cluster is stopped and its directory removed at cleanup.
func StartPG(t testing.TB, opts PGOptions) *PGCluster {
	t.Helper()
	c := NewPG(t, opts)
	c.Start(t)
	return c
}

// NewPG is StartPG without the start: make directories under Dir (an
// archive), then SetArchiveCommand and Start.
func NewPG(t testing.TB, opts PGOptions) *PGCluster {
	t.Helper()
	bin := PGBin()
	for _, b := range []string{"initdb", "pg_ctl", "postgres", "psql"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			stop(t, "PostgreSQL binaries not installed (%v); set PG_BIN or run scripts/testenv.sh install", err)
		}
	}
	c := &PGCluster{Bin: bin}
	c.owner = serverUser(t)
	c.User = c.owner.Username
	c.Dir = c.mkdirTemp(t, "pgcluster-")
	t.Cleanup(func() {
		c.shutdown(t, "immediate")
		os.RemoveAll(c.Dir)
	})
	c.Sock = c.MkdirOwned(t, "sock")
	c.Log = filepath.Join(c.Dir, "server.log")
	c.Port = freePort(t)
	c.Data = opts.DataDir
	if c.Data == "" {
		c.Data = filepath.Join(c.Dir, "data")
	}
	if _, err := os.Stat(filepath.Join(c.Data, "PG_VERSION")); err != nil {
		if out, err := c.run(t, 2*time.Minute, filepath.Join(bin, "initdb"), "-D", c.Data, "-U", "postgres",
			"--auth=trust", "-E", "UTF8", "--no-locale"); err != nil {
			t.Fatalf("initdb: %v: %s", err, out)
		}
	} else {
		// A restored data directory must belong to the server's user
		// and be private, or postgres refuses it.
		c.chownTree(t, c.Data)
		if err := os.Chmod(c.Data, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	set := map[string]string{
		"listen_addresses":        "'127.0.0.1'",
		"port":                    strconv.Itoa(c.Port),
		"unix_socket_directories": quoteConf(c.Sock),
		"wal_level":               "replica",
		"max_wal_senders":         "4",
		"fsync":                   "off",
		"full_page_writes":        "on",
		"log_min_messages":        "info",
	}
	if opts.Durable {
		set["fsync"] = "on"
	}
	if opts.ArchiveCommand != "" {
		set["archive_mode"] = "on"
		set["archive_command"] = quoteConf(opts.ArchiveCommand)
	}
	for k, v := range opts.Settings {
		set[k] = v
	}
	c.AppendConf(t, set)
	return c
}

// SetArchiveCommand turns archive_mode on with cmd (at the next start).
func (c *PGCluster) SetArchiveCommand(t testing.TB, cmd string) {
	t.Helper()
	c.AppendConf(t, map[string]string{"archive_mode": "on", "archive_command": quoteConf(cmd)})
}

// AppendConf appends settings to postgresql.conf (later lines win); they
// take effect at the next start or reload.
func (c *PGCluster) AppendConf(t testing.TB, set map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("\n# testenv.StartPG\n")
	for _, k := range slices.Sorted(maps.Keys(set)) {
		fmt.Fprintf(&b, "%s = %s\n", k, set[k])
	}
	f, err := os.OpenFile(filepath.Join(c.Data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Start starts the server and waits until it accepts connections.
func (c *PGCluster) Start(t testing.TB) {
	t.Helper()
	if out, err := c.run(t, 2*time.Minute, filepath.Join(c.Bin, "pg_ctl"), "-D", c.Data, "-l", c.Log,
		"-w", "-t", "90", "start"); err != nil {
		t.Fatalf("pg_ctl start: %v: %s\n%s", err, out, c.tail())
	}
	c.running = true
}

// Stop stops the server (fast shutdown: clients are disconnected, the
// archiver gets to finish the last segment).
func (c *PGCluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.shutdown(t, "fast"); err != nil {
		t.Fatal(err)
	}
}

// Restart stops and starts the server (e.g. after AppendConf).
func (c *PGCluster) Restart(t testing.TB) {
	t.Helper()
	c.Stop(t)
	c.Start(t)
}

func (c *PGCluster) shutdown(t testing.TB, mode string) error {
	if !c.running {
		return nil
	}
	out, err := c.run(t, 2*time.Minute, filepath.Join(c.Bin, "pg_ctl"), "-D", c.Data, "-m", mode, "-w", "-t", "90", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	c.running = false
	return nil
}

// Env is the environment for libpq clients (psql, pg_basebackup, pgbench)
// to reach the cluster over its socket as the postgres role.
func (c *PGCluster) Env() []string {
	return []string{"PGHOST=" + c.Sock, "PGPORT=" + strconv.Itoa(c.Port), "PGUSER=postgres", "PGDATABASE=postgres"}
}

// URL is a connection URL over TCP.
func (c *PGCluster) URL(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// Psql runs sql in the postgres database and returns the unaligned,
// tuples-only output, trimmed; any error fails the test.
func (c *PGCluster) Psql(t testing.TB, sql string) string {
	t.Helper()
	out, err := c.PsqlDB("postgres", sql)
	if err != nil {
		t.Fatalf("psql %q: %v", sql, err)
	}
	return out
}

// PsqlDB runs sql in db and returns its trimmed output or an error with
// psql's stderr.
func (c *PGCluster) PsqlDB(db, sql string) (string, error) {
	cmd := exec.Command(filepath.Join(c.Bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", c.Sock, "-p", strconv.Itoa(c.Port), "-U", "postgres", "-d", db, "-c", sql)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(string(out)), nil
}

// WaitArchived forces a WAL switch and waits (up to timeout) until
// pg_stat_archiver reports the switched segment archived. It returns the
// segment's name; an archiver failure is reported with the server log.
func (c *PGCluster) WaitArchived(t testing.TB, timeout time.Duration) string {
	t.Helper()
	// A WAL record first: a switch on a segment with nothing in it since
	// the last switch does nothing, and no segment would be archived.
	seg := c.Psql(t, "SELECT pg_walfile_name(pg_logical_emit_message(false, 'testenv', 'switch'))")
	c.Psql(t, "SELECT pg_switch_wal()")
	c.WaitFor(t, timeout, "segment "+seg+" archived", func() (bool, error) {
		last, err := c.PsqlDB("postgres", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		if err != nil {
			return false, err
		}
		// Names of one timeline sort in WAL order.
		return last != "" && len(last) >= 24 && last[:24] >= seg, nil
	})
	return seg
}

// WaitFor polls cond until it is true or the deadline passes (then the
// test fails with what, the last error and the tail of the server log).
func (c *PGCluster) WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s (last error: %v)\nserver log:\n%s", what, timeout, last, c.tail())
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

// ServerLog returns the server log.
func (c *PGCluster) ServerLog() string {
	b, _ := os.ReadFile(c.Log)
	return string(b)
}

func (c *PGCluster) tail() string {
	s := c.ServerLog()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

// MkdirOwned creates Dir/name (and parents) owned by the server's user,
// e.g. a WAL archive that archive_command writes to.
func (c *PGCluster) MkdirOwned(t testing.TB, name string) string {
	t.Helper()
	d := filepath.Join(c.Dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	c.chown(t, d)
	return d
}

// WriteOwned writes a file under Dir owned by (and readable by) the
// server's user, e.g. the archive config archive_command reads.
func (c *PGCluster) WriteOwned(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(c.Dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c.chown(t, p)
	return p
}

// Chown gives path (recursively) to the server's user.
func (c *PGCluster) Chown(t testing.TB, path string) { t.Helper(); c.chownTree(t, path) }

// Command is cmd run as the server's user (runuser under root), with the
// cluster's client environment.
func (c *PGCluster) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if os.Geteuid() == 0 && c.User != "root" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.User, "--", name}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, name, args...)
	}
	cmd.Env = append(os.Environ(), c.Env()...)
	return cmd
}

func (c *PGCluster) run(t testing.TB, timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := c.Command(ctx, name, args...)
	cmd.Dir = c.Dir
	return cmd.CombinedOutput()
}

func (c *PGCluster) mkdirTemp(t testing.TB, pattern string) string {
	t.Helper()
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	c.chown(t, d)
	return d
}

func (c *PGCluster) chown(t testing.TB, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	uid, _ := strconv.Atoi(c.owner.Uid)
	gid, _ := strconv.Atoi(c.owner.Gid)
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func (c *PGCluster) chownTree(t testing.TB, root string) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		c.chown(t, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// serverUser is the OS user the cluster runs as: postgres under root
// (initdb refuses root), else the current user.
func serverUser(t testing.TB) *user.User {
	t.Helper()
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		stop(t, "tests run as root but there is no postgres user to run PostgreSQL as: %v", err)
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		stop(t, "tests run as root but runuser is missing: %v", err)
	}
	return u
}

func quoteConf(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var planrunBin struct {
	once sync.Once
	path string
	err  error
}

// PlanrunBin builds cmd/planrun once per test binary and returns its path,
// in a directory anyone can traverse (archive_command runs it as the
// server's user). Stale binaries of test processes that died are removed.
func PlanrunBin(t testing.TB) string {
	t.Helper()
	planrunBin.once.Do(func() {
		removeStaleBins()
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("planrun-testbin-%d", os.Getpid()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			planrunBin.err = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			planrunBin.err = err
			return
		}
		bin := filepath.Join(dir, "planrun")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/planrun/planrun/cmd/planrun").CombinedOutput()
		if err != nil {
			planrunBin.err = fmt.Errorf("go build ./cmd/planrun: %v: %s", err, out)
			return
		}
		planrunBin.path = bin
	})
	if planrunBin.err != nil {
		t.Fatal(planrunBin.err)
	}
	return planrunBin.path
}

// removeStaleBins removes planrun-testbin-<pid> directories whose process
// is gone (a test binary cannot clean up after its last test).
func removeStaleBins() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "planrun-testbin-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "planrun-testbin-"))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
}

// SnapshotDir returns every file under dir with its content: compare two
// snapshots to show that an operation changed nothing.
func SnapshotDir(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			m[p] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
