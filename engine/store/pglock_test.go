package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
)

const resticRepo = "restic:/backups/restic-local"

// resticRepoKey is AdvisoryLockKey(resticRepo), pinned: every planrun
// version on a fleet must compute the same key.
const resticRepoKey int64 = -1579010389823394187

// advisoryDB is a fresh PostgreSQL database with the run store's schema,
// and an admin connection to it for looking behind the lockers' backs.
func advisoryDB(t *testing.T) (dsn string, admin *pgx.Conn) {
	t.Helper()
	dsn = testenv.PGDatabase(t)
	st, err := Open(dsn)
	if err != nil {
		t.Fatalf("open the PostgreSQL store: %v", err)
	}
	st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err = pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	return dsn, admin
}

// newTestLocker is a locker whose watcher looks every watch (0: never in
// a test's lifetime, so only Check can find a loss).
func newTestLocker(t *testing.T, dsn string, watch time.Duration) *AdvisoryLocker {
	t.Helper()
	if watch == 0 {
		watch = time.Hour
	}
	l := NewAdvisoryLocker(dsn, AdvisoryOptions{WatchInterval: watch})
	t.Cleanup(func() { l.Close() })
	return l
}

func lockHolderFor(host, run string) engine.LockHolder {
	return engine.LockHolder{Host: host, PID: 4242, RunID: run, Plan: "kaleem-daily", Step: "prune",
		Since: time.Date(2026, 12, 1, 3, 0, 0, 123456789, time.UTC)}
}

func mustTryLock(t *testing.T, l *AdvisoryLocker, resource string, h engine.LockHolder) engine.HeldLock {
	t.Helper()
	lock, other, err := l.TryLock(context.Background(), resource, h)
	if err != nil || lock == nil {
		t.Fatalf("TryLock(%s) for %s: lock %v, holder %v, err %v", resource, h.RunID, lock, other, err)
	}
	return lock
}

// holderRow is resource's resource_locks row ("" run when there is none).
func holderRow(t *testing.T, admin *pgx.Conn, resource string) (host, run string) {
	t.Helper()
	err := admin.QueryRow(context.Background(),
		`SELECT host, run_id FROM resource_locks WHERE resource = $1`, resource).Scan(&host, &run)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return host, run
}

// lockBackends counts the live backends of a run's lock connection.
func lockBackends(t *testing.T, admin *pgx.Conn, run string) int {
	t.Helper()
	var n int
	if err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, applicationName(run)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// terminateLockBackend kills a run's lock connection as an operator (or a
// server restart) would.
func terminateLockBackend(t *testing.T, admin *pgx.Conn, run string) {
	t.Helper()
	var n int
	if err := admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, applicationName(run)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("terminated %d backends of run %s, want 1", n, run)
	}
}

// eventually polls cond until it holds or the deadline passes.
func lockEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitLost(t *testing.T, lock engine.HeldLock) {
	t.Helper()
	select {
	case <-lock.Lost():
	case <-time.After(15 * time.Second):
		t.Fatal("Lost() not closed within 15s")
	}
}

func TestAdvisoryLockKeyIsStable(t *testing.T) {
	if got := AdvisoryLockKey(resticRepo); got != resticRepoKey {
		t.Fatalf("AdvisoryLockKey(%q) = %d, want %d: changing the key breaks mixed-version fleets", resticRepo, got, resticRepoKey)
	}
	if AdvisoryLockKey("a") == AdvisoryLockKey("b") {
		t.Fatal("different resources share a key")
	}
}

func TestAdvisoryApplicationName(t *testing.T) {
	if got := applicationName("0b6a4a6e-2f5c-4a8e-9d57-1b1c2c3d4e5f"); got != "planrun lock 0b6a4a6e-2f5c-4a8e-9d57-1b1c2c3d4e5f" {
		t.Errorf("applicationName = %q", got)
	}
	long := applicationName(strings.Repeat("é", 40))
	if len(long) > maxApplicationName || !strings.HasPrefix(long, lockApplicationName) || strings.ContainsRune(long, '\uFFFD') {
		t.Errorf("applicationName of a long id = %q (%d bytes)", long, len(long))
	}
}

func TestAdvisoryFleetLockerOnlyForPostgres(t *testing.T) {
	if l := FleetLocker("/var/lib/planrun/runs.db", AdvisoryOptions{}); l != nil {
		t.Error("FleetLocker for a SQLite file is not nil")
	}
	if l := FleetLocker("postgres://planrun@db/planrun", AdvisoryOptions{}); l == nil {
		t.Error("FleetLocker for a PostgreSQL URL is nil")
	}
}

func TestAdvisoryLockTwoHostsContend(t *testing.T) {
	dsn, admin := advisoryDB(t)
	a := newTestLocker(t, dsn, 0)
	b := newTestLocker(t, dsn, 0)
	if a.Scope() != "fleet" {
		t.Errorf("Scope() = %q, want fleet", a.Scope())
	}
	ha, hb := lockHolderFor("host-a", "run-a"), lockHolderFor("host-b", "run-b")
	ha.PID = 1111

	lockA := mustTryLock(t, a, resticRepo, ha)
	if err := lockA.Check(context.Background()); err != nil {
		t.Fatalf("Check of a held lock: %v", err)
	}

	lock, other, err := b.TryLock(context.Background(), resticRepo, hb)
	if err != nil || lock != nil {
		t.Fatalf("second host: lock %v, err %v; want busy", lock, err)
	}
	if other == nil {
		t.Fatal("second host: holder unknown, want host-a's")
	}
	if got := *other; got.Host != ha.Host || got.PID != ha.PID || got.RunID != ha.RunID ||
		got.Plan != ha.Plan || got.Step != ha.Step || !got.Since.Equal(ha.Since) {
		t.Errorf("holder = %+v, want %+v", got, ha)
	}

	// Another resource does not contend.
	lockB2 := mustTryLock(t, b, "rclone:offsite", hb)
	defer lockB2.Release()

	// Not re-entrant: the same locker asking again finds its own holder.
	lock, other, err = a.TryLock(context.Background(), resticRepo, lockHolderFor("host-a", "run-a2"))
	if err != nil || lock != nil || other == nil || other.RunID != "run-a" {
		t.Fatalf("re-entry: lock %v, holder %v, err %v; want busy, held by run-a", lock, other, err)
	}

	if host, run := holderRow(t, admin, resticRepo); host != "host-a" || run != "run-a" {
		t.Errorf("holder row = %s/%s, want host-a/run-a", host, run)
	}
	lockA.Release()
	lockA.Release() // idempotent
	if _, run := holderRow(t, admin, resticRepo); run != "" {
		t.Errorf("holder row of run %s left after Release", run)
	}
	if err := lockA.Check(context.Background()); err == nil {
		t.Error("Check of a released lock succeeded")
	}
	// The last lock released, the connection goes.
	lockEventually(t, "run-a's lock connection to close", func() bool { return lockBackends(t, admin, "run-a") == 0 })

	lockB := mustTryLock(t, b, resticRepo, hb)
	defer lockB.Release()
	if host, run := holderRow(t, admin, resticRepo); host != "host-b" || run != "run-b" {
		t.Errorf("holder row = %s/%s, want host-b/run-b", host, run)
	}
	_, other, _ = a.TryLock(context.Background(), resticRepo, ha)
	if other == nil || other.Host != "host-b" {
		t.Errorf("after the handover, holder = %v, want host-b", other)
	}
}

func TestAdvisoryLockLostWhenBackendTerminated(t *testing.T) {
	dsn, admin := advisoryDB(t)
	a := newTestLocker(t, dsn, 20*time.Millisecond)
	b := newTestLocker(t, dsn, 0)
	repo := mustTryLock(t, a, resticRepo, lockHolderFor("host-a", "run-a"))
	offsite := mustTryLock(t, a, "rclone:offsite", lockHolderFor("host-a", "run-a"))

	terminateLockBackend(t, admin, "run-a")
	// The watcher finds out between steps.
	waitLost(t, repo)
	waitLost(t, offsite)
	err := repo.Check(context.Background())
	if err == nil {
		t.Fatal("Check of a lost lock succeeded")
	}
	for _, want := range []string{resticRepo, "connection to the run store lost", "not re-taken"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check error %q does not say %q", err, want)
		}
	}

	// Someone else may take it now, and overwrites the dead holder's row.
	lockB := mustTryLock(t, b, resticRepo, lockHolderFor("host-b", "run-b"))
	defer lockB.Release()
	if host, _ := holderRow(t, admin, resticRepo); host != "host-b" {
		t.Errorf("holder row names %q, want host-b", host)
	}
	// The loser never takes a fleet lock again in this run, not even a free one.
	for _, resource := range []string{resticRepo, "something-free"} {
		lock, _, err := a.TryLock(context.Background(), resource, lockHolderFor("host-a", "run-a"))
		if err == nil || lock != nil || !strings.Contains(err.Error(), "not re-taken") {
			t.Errorf("TryLock(%s) after a loss: lock %v, err %v; want a not-re-taken error", resource, lock, err)
		}
	}
	if n := lockBackends(t, admin, "run-a"); n != 0 {
		t.Errorf("run-a reconnected after the loss (%d backends)", n)
	}
	repo.Release() // harmless after a loss
	offsite.Release()
}

func TestAdvisoryLockCheckFindsLossWithoutWatcher(t *testing.T) {
	dsn, admin := advisoryDB(t)
	a := newTestLocker(t, dsn, 0)
	lock := mustTryLock(t, a, resticRepo, lockHolderFor("host-a", "run-a"))
	terminateLockBackend(t, admin, "run-a")
	if err := lock.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "connection to the run store lost") {
		t.Fatalf("Check after pg_terminate_backend: %v", err)
	}
	select {
	case <-lock.Lost():
	default:
		t.Error("Check found the loss but Lost() is open")
	}
}

func TestAdvisoryLockStaleRowDoesNotBlock(t *testing.T) {
	dsn, admin := advisoryDB(t)
	a := newTestLocker(t, dsn, 0)
	b := newTestLocker(t, dsn, 0)
	mustTryLock(t, a, resticRepo, lockHolderFor("host-a", "run-a"))
	// host-a dies: its socket closes without Release, the server drops the
	// session's locks and the row stays behind.
	a.sem <- struct{}{}
	a.conn.PgConn().Conn().Close()
	a.releaseSem()
	var lock engine.HeldLock
	lockEventually(t, "the dead holder's lock to be freed", func() bool {
		var err error
		lock, _, err = b.TryLock(context.Background(), resticRepo, lockHolderFor("host-b", "run-b"))
		if err != nil {
			t.Fatal(err)
		}
		return lock != nil
	})
	defer lock.Release()
	if host, run := holderRow(t, admin, resticRepo); host != "host-b" || run != "run-b" {
		t.Errorf("holder row = %s/%s, want the new holder host-b/run-b", host, run)
	}
}

func TestAdvisoryLockStaleRowIsNotTheHolder(t *testing.T) {
	dsn, admin := advisoryDB(t)
	ctx := context.Background()
	// A row left by a dead run, while the advisory lock is held by a
	// session that is not that run's.
	if _, err := admin.Exec(ctx, `INSERT INTO resource_locks (resource, host, pid, run_id, plan, step, since)
		VALUES ($1, 'gone-host', 7, 'dead-run', 'p', '', '2026-01-01T00:00:00.000000000Z')`, resticRepo); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = applicationName("other-run")
	other, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, `SELECT pg_advisory_lock($1)`, AdvisoryLockKey(resticRepo)); err != nil {
		t.Fatal(err)
	}

	b := newTestLocker(t, dsn, 0)
	lock, holder, err := b.TryLock(ctx, resticRepo, lockHolderFor("host-b", "run-b"))
	if err != nil || lock != nil {
		t.Fatalf("lock %v, err %v; want busy", lock, err)
	}
	if holder != nil {
		t.Errorf("holder = %+v from a stale row, want unknown (nil)", *holder)
	}
}

func TestAdvisoryLockIdleConnectionDroppedWhileWaiting(t *testing.T) {
	dsn, admin := advisoryDB(t)
	a := newTestLocker(t, dsn, 0)
	b := newTestLocker(t, dsn, 0)
	lockB := mustTryLock(t, b, resticRepo, lockHolderFor("host-b", "run-b"))
	if lock, _, err := a.TryLock(context.Background(), resticRepo, lockHolderFor("host-a", "run-a")); lock != nil || err != nil {
		t.Fatalf("first poll: lock %v, err %v; want busy", lock, err)
	}
	// Between two polls the server drops a's idle connection: a held
	// nothing, so nothing is lost and the next poll reconnects.
	terminateLockBackend(t, admin, "run-a")
	lockB.Release()
	lock := mustTryLock(t, a, resticRepo, lockHolderFor("host-a", "run-a"))
	lock.Release()
}

func TestAdvisoryLockStoreDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	const secret = "s3cret-pw-9"
	for _, dsn := range []string{
		fmt.Sprintf("postgres://planrun:%s@127.0.0.1:%d/planrun?sslmode=disable", secret, port),
		fmt.Sprintf("postgres://planrun:%s@127.0.0.1:%d/planrun?sslmode=disable&connect_timeout=nope", secret, port),
		fmt.Sprintf("postgres://planrun:%s@127.0.0.1:notaport/planrun", secret),
	} {
		l := NewAdvisoryLocker(dsn, AdvisoryOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		lock, holder, err := l.TryLock(ctx, resticRepo, lockHolderFor("host-a", "run-a"))
		cancel()
		if err == nil || lock != nil || holder != nil {
			t.Errorf("TryLock with the store down: lock %v, holder %v, err %v; want an error", lock, holder, err)
			continue
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("TryLock waited for the test's deadline: %v", err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the password: %v", err)
		}
		if !strings.Contains(err.Error(), resticRepo) {
			t.Errorf("error %q does not name the resource", err)
		}
		l.Close()
	}
}

func TestAdvisoryLockCancelledCallerKeepsLocks(t *testing.T) {
	dsn, _ := advisoryDB(t)
	a := newTestLocker(t, dsn, 0)
	lock := mustTryLock(t, a, resticRepo, lockHolderFor("host-a", "run-a"))
	defer lock.Release()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if l2, _, err := a.TryLock(ctx, "other", lockHolderFor("host-a", "run-a")); err == nil || l2 != nil {
		t.Errorf("TryLock with a cancelled context: lock %v, err %v", l2, err)
	}
	if err := lock.Check(ctx); err == nil {
		t.Error("Check with a cancelled context reported the lock held")
	}
	select {
	case <-lock.Lost():
		t.Fatal("a cancelled caller lost the lock")
	default:
	}
	if err := lock.Check(context.Background()); err != nil {
		t.Fatalf("lock lost after a cancelled caller: %v", err)
	}
}

func TestAdvisoryLockConcurrentUse(t *testing.T) {
	dsn, _ := advisoryDB(t)
	a := newTestLocker(t, dsn, time.Millisecond)
	b := newTestLocker(t, dsn, time.Millisecond)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	holders := map[string]string{} // resource -> run holding it now
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resource := fmt.Sprintf("r%d", i%3)
			l, run := a, fmt.Sprintf("a-%d", i)
			if i%2 == 1 {
				l, run = b, fmt.Sprintf("b-%d", i)
			}
			for range 20 {
				lock, _, err := l.TryLock(ctx, resource, lockHolderFor("h", run))
				if err != nil {
					t.Error(err)
					return
				}
				if lock == nil {
					continue
				}
				mu.Lock()
				if prev := holders[resource]; prev != "" {
					t.Errorf("%s and %s hold %s at once", prev, run, resource)
				}
				holders[resource] = run
				mu.Unlock()
				if err := lock.Check(ctx); err != nil {
					t.Error(err)
				}
				mu.Lock()
				holders[resource] = ""
				mu.Unlock()
				lock.Release()
			}
		}()
	}
	wg.Wait()
}

func TestAdvisoryLockLostWhenServerRestarts(t *testing.T) {
	c := testenv.StartPG(t, testenv.PGOptions{})
	dsn := c.URL("")
	st, err := Open(dsn)
	if err != nil {
		t.Fatalf("open the PostgreSQL store: %v", err)
	}
	st.Close()
	a := newTestLocker(t, dsn, 20*time.Millisecond)
	lock := mustTryLock(t, a, resticRepo, lockHolderFor("host-a", "run-a"))

	c.Stop(t)
	waitLost(t, lock)
	if err := lock.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "connection to the run store lost") {
		t.Errorf("Check after the server stopped: %v", err)
	}
	// While it is down, a locker that held nothing cannot even ask.
	b := newTestLocker(t, dsn, 0)
	if l, _, err := b.TryLock(context.Background(), resticRepo, lockHolderFor("host-b", "run-b")); err == nil || l != nil {
		t.Errorf("TryLock with the server down: lock %v, err %v", l, err)
	}

	c.Start(t)
	if l, _, err := a.TryLock(context.Background(), resticRepo, lockHolderFor("host-a", "run-a")); err == nil || l != nil {
		t.Errorf("TryLock after the restart by the run that lost it: lock %v, err %v; want refused", l, err)
	}
	// The other host, which lost nothing, takes it.
	mustTryLock(t, b, resticRepo, lockHolderFor("host-b", "run-b")).Release()
}

func TestAdvisoryLockConnectTimeout(t *testing.T) {
	// A server that accepts and never answers (a hung host, a firewall
	// that swallows packets).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range accepted {
			c.Close()
		}
	}()
	dsn := fmt.Sprintf("postgres://planrun@%s/planrun?sslmode=disable", ln.Addr())
	l := NewAdvisoryLocker(dsn, AdvisoryOptions{ConnectTimeout: 100 * time.Millisecond})
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lock, _, err := l.TryLock(ctx, resticRepo, lockHolderFor("host-a", "run-a"))
	if err == nil || lock != nil {
		t.Fatalf("TryLock against a silent server: lock %v, err %v", lock, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("TryLock waited for the caller's deadline instead of ConnectTimeout: %v", err)
	}
}

func TestAdvisoryLockHolderRowRefusedGivesLockBack(t *testing.T) {
	dsn, admin := advisoryDB(t)
	ctx := context.Background()
	// A holder row the database refuses (as a missing table or a missing
	// permission would).
	if _, err := admin.Exec(ctx, `ALTER TABLE resource_locks ADD CHECK (resource <> 'refused')`); err != nil {
		t.Fatal(err)
	}
	a := newTestLocker(t, dsn, 0)
	kept := mustTryLock(t, a, resticRepo, lockHolderFor("host-a", "run-a"))
	lock, _, err := a.TryLock(ctx, "refused", lockHolderFor("host-a", "run-a"))
	if err == nil || lock != nil || !strings.Contains(err.Error(), "recording its holder") {
		t.Fatalf("TryLock with its row refused: lock %v, err %v", lock, err)
	}
	var keys []int64
	rows, err := admin.Query(ctx, `SELECT (classid::int8 << 32) | objid::int8 FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 1
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	if err != nil {
		t.Fatal(err)
	}
	var k int64
	if _, err := pgx.ForEachRow(rows, []any{&k}, func() error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != AdvisoryLockKey(resticRepo) {
		t.Errorf("advisory locks held: %v, want only %s's (%d)", keys, resticRepo, AdvisoryLockKey(resticRepo))
	}
	if err := kept.Check(ctx); err != nil {
		t.Errorf("the other lock after a refused row: %v", err)
	}
}
