package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/planrun/planrun/engine"
)

// Fleet-wide resource locks: when the run store is PostgreSQL, shared by
// many hosts, a resource lock is a session-level advisory lock held on one
// dedicated connection (a pooled connection could hand the session, and so
// the lock, to someone else, or drop it unnoticed). A row in
// resource_locks names the holder for the messages of those who wait; the
// advisory lock alone decides who holds it.
//
// The DSN must reach PostgreSQL itself, not a transaction-pooling proxy
// (pgbouncer in transaction mode), which cannot keep session locks.

// FleetLocker is the resource locker for the run store dsn names: an
// AdvisoryLocker when it is a PostgreSQL URL, nil for a SQLite file (whose
// host keeps its locks itself: engine.FileLocker).
func FleetLocker(dsn string, opts AdvisoryOptions) *AdvisoryLocker {
	if !IsPostgresURL(dsn) {
		return nil
	}
	return NewAdvisoryLocker(dsn, opts)
}

// AdvisoryOptions tune an AdvisoryLocker; zero values take the defaults.
type AdvisoryOptions struct {
	// WatchInterval is how often a watcher makes a round trip on the lock
	// connection while locks are held, so that a loss is noticed between
	// steps (Lost). Default 2s.
	WatchInterval time.Duration
	// ConnectTimeout bounds connecting to PostgreSQL. Default 5s.
	ConnectTimeout time.Duration
	// QueryTimeout bounds every round trip; a server that does not answer
	// within it counts as gone, and the locks held with it as lost.
	// Default 5s.
	QueryTimeout time.Duration
}

// AdvisoryLocker takes resource locks as PostgreSQL advisory locks
// (engine.ResourceLocker, scope "fleet"). It connects on the first TryLock
// and closes the connection when its last lock is released. Once the
// connection is lost while it holds locks, every lock it held is lost and
// it never connects again: a run that lost a lock must stop, not re-take
// it and carry on.
//
// Locks are not re-entrant: asking again for a resource this locker holds
// finds it busy, held by the first holder (as a second flock of one file
// would), so two runs sharing one locker still exclude each other.
type AdvisoryLocker struct {
	dsn  string
	opts AdvisoryOptions

	// sem serialises use of the connection and of the fields below; a
	// channel rather than a mutex so that waiting for it can be cancelled.
	sem       chan struct{}
	conn      *pgx.Conn
	held      map[string]*advisoryLock
	lostCause error // set when the connection died holding locks: never reconnect
	closed    bool
	stopWatch chan struct{} // closed to stop the current watcher
	watchDone chan struct{} // closed when the current watcher has stopped
}

var _ engine.ResourceLocker = (*AdvisoryLocker)(nil)

// NewAdvisoryLocker returns a locker for the PostgreSQL database at dsn (a
// postgres:// URL or key=value string; the password may come from
// PGPASSWORD or PGPASSFILE). It does not connect until the first TryLock.
func NewAdvisoryLocker(dsn string, opts AdvisoryOptions) *AdvisoryLocker {
	if opts.WatchInterval <= 0 {
		opts.WatchInterval = 2 * time.Second
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = 5 * time.Second
	}
	return &AdvisoryLocker{dsn: dsn, opts: opts, sem: make(chan struct{}, 1), held: map[string]*advisoryLock{}}
}

// Scope is "fleet": the locks exclude every host using the same database.
func (l *AdvisoryLocker) Scope() string { return "fleet" }

// AdvisoryLockKey is the advisory lock key of a resource (the first 8
// bytes of a SHA-256 of a planrun-specific prefix and the name), so an
// operator can find it in pg_locks: classid is its high 32 bits, objid its
// low 32 bits, objsubid 1.
func AdvisoryLockKey(resource string) int64 {
	sum := sha256.Sum256([]byte("planrun resource lock\x00" + resource))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// lockApplicationName names the lock connection in pg_stat_activity; the
// holder query trusts a resource_locks row only when the backend holding
// the advisory lock carries its run's name.
const lockApplicationName = "planrun lock "

// maxApplicationName is what PostgreSQL keeps of application_name
// (NAMEDATALEN-1 bytes).
const maxApplicationName = 63

func applicationName(runID string) string {
	name := lockApplicationName + runID
	for len(name) > maxApplicationName {
		// Cut at a rune boundary: never send half a character.
		name = strings.ToValidUTF8(name[:maxApplicationName], "")
	}
	return name
}

// TryLock takes resource's advisory lock without waiting and records
// holder in resource_locks. When another session holds the lock it
// returns the holder named by the row, or nil when the row does not
// belong to the session that holds the lock (a stale row of a holder that
// died, or a lock taken by something other than planrun).
func (l *AdvisoryLocker) TryLock(ctx context.Context, resource string, holder engine.LockHolder) (engine.HeldLock, *engine.LockHolder, error) {
	if resource == "" {
		return nil, nil, errors.New("fleet lock: empty resource name")
	}
	if err := l.acquire(ctx); err != nil {
		return nil, nil, fmt.Errorf("fleet lock %s: not asked: %w", resource, err)
	}
	defer l.releaseSem()
	switch {
	case l.closed:
		return nil, nil, fmt.Errorf("fleet lock %s: not asked: the locker is closed", resource)
	case l.lostCause != nil:
		return nil, nil, fmt.Errorf("fleet lock %s: not asked: the connection to the run store was lost earlier in this run (%v); fleet locks are not re-taken", resource, l.lostCause)
	}
	if mine, ok := l.held[resource]; ok {
		h := mine.holder
		return nil, &h, nil
	}
	key := AdvisoryLockKey(resource)
	qctx, cancel := l.queryContext(ctx)
	defer cancel()
	got, err := l.tryAdvisoryLock(ctx, qctx, key, holder.RunID)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet lock %s: %w", resource, err)
	}
	if !got {
		other, err := l.holderOf(qctx, resource, key)
		if err != nil {
			return nil, nil, fmt.Errorf("fleet lock %s: finding its holder: %w", resource, l.failed(err))
		}
		return nil, other, nil
	}

	if holder.Since.IsZero() {
		holder.Since = time.Now()
	}
	holder.Since = holder.Since.UTC()
	// Ours now: any row left for this resource is a dead holder's.
	_, err = l.conn.Exec(qctx, `INSERT INTO resource_locks (resource, host, pid, run_id, plan, step, since)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (resource) DO UPDATE SET host = excluded.host, pid = excluded.pid,
			run_id = excluded.run_id, plan = excluded.plan, step = excluded.step, since = excluded.since`,
		resource, holder.Host, holder.PID, holder.RunID, holder.Plan, holder.Step, holder.Since.Format(timeFormat))
	if err != nil {
		err = l.scrub(err)
		if !l.conn.IsClosed() {
			// A statement error (no table, no permission): give the lock
			// back rather than hold it unnamed.
			if _, uerr := l.conn.Exec(qctx, `SELECT pg_advisory_unlock($1)`, key); uerr == nil {
				l.closeIfIdle()
				return nil, nil, fmt.Errorf("fleet lock %s: recording its holder: %w", resource, err)
			}
		}
		return nil, nil, fmt.Errorf("fleet lock %s: recording its holder: %w", resource, l.failed(err))
	}
	lock := &advisoryLock{locker: l, resource: resource, key: key, holder: holder, lost: make(chan struct{})}
	l.held[resource] = lock
	l.startWatcher()
	return lock, nil, nil
}

// tryAdvisoryLock connects if needed and asks for key (the caller holds
// sem). A connection kept open while nothing is held (between the polls
// of a waiting run) may have been dropped by the server in the meantime:
// then nothing was lost, and it reconnects once.
func (l *AdvisoryLocker) tryAdvisoryLock(ctx, qctx context.Context, key int64, runID string) (bool, error) {
	reused := l.conn != nil
	for {
		if l.conn == nil {
			if err := l.connect(ctx, runID); err != nil {
				return false, err
			}
		}
		var got bool
		err := l.conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got)
		if err == nil {
			return got, nil
		}
		idleDropped := reused && len(l.held) == 0 && l.conn.IsClosed()
		err = l.failed(err)
		if !idleDropped || qctx.Err() != nil {
			return false, err
		}
		reused = false
	}
}

// holderOf reads the row naming key's holder, trusted only when the
// backend that holds the advisory lock is that run's lock connection.
func (l *AdvisoryLocker) holderOf(ctx context.Context, resource string, key int64) (*engine.LockHolder, error) {
	var h engine.LockHolder
	var since string
	err := l.conn.QueryRow(ctx, `SELECT r.host, r.pid, r.run_id, r.plan, r.step, r.since
		FROM pg_locks l
		JOIN pg_stat_activity a ON a.pid = l.pid
		JOIN resource_locks r ON r.resource = $1 AND a.application_name = left($4 || r.run_id, $5)
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.classid = $2 AND l.objid = $3
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		LIMIT 1`,
		resource, uint32(uint64(key)>>32), uint32(uint64(key)), lockApplicationName, maxApplicationName,
	).Scan(&h.Host, &h.PID, &h.RunID, &h.Plan, &h.Step, &since)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if t, perr := time.Parse(time.RFC3339Nano, since); perr == nil {
		h.Since = t
	}
	return &h, nil
}

// connect opens the dedicated lock connection; the caller holds sem.
func (l *AdvisoryLocker) connect(ctx context.Context, runID string) error {
	cfg, err := pgx.ParseConfig(l.dsn)
	if err != nil {
		// pgx masks the password in its parse errors only as far as it can
		// tell where it is in a malformed string: say nothing more.
		if IsPostgresURL(l.dsn) {
			return fmt.Errorf("the run store URL %s does not parse", redactedURL(l.dsn))
		}
		return errors.New("the run store's PostgreSQL connection string does not parse")
	}
	cfg.RuntimeParams["application_name"] = applicationName(runID)
	if cfg.ConnectTimeout <= 0 || cfg.ConnectTimeout > l.opts.ConnectTimeout {
		cfg.ConnectTimeout = l.opts.ConnectTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, l.opts.ConnectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return fmt.Errorf("cannot reach the run store: %w", scrubPassword(err, cfg.Password))
	}
	l.conn = conn
	return nil
}

// queryContext bounds one round trip. It is detached from the caller's
// cancellation: pgx closes a connection whose query is cancelled, which
// would drop every lock held on it because one caller stopped waiting.
func (l *AdvisoryLocker) queryContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), l.opts.QueryTimeout)
}

// failed handles a failed round trip (the caller holds sem): the
// connection can no longer be trusted, so it is closed; the locks held on
// it are lost. It returns err without any password.
func (l *AdvisoryLocker) failed(err error) error {
	err = l.scrub(err)
	if len(l.held) > 0 {
		l.loseAll(err)
	} else {
		l.closeConn()
	}
	return err
}

// loseAll marks every held lock lost (the caller holds sem) and closes
// the connection for good.
func (l *AdvisoryLocker) loseAll(cause error) {
	l.lostCause = cause
	for resource, lock := range l.held {
		lock.markLost(fmt.Errorf("fleet lock %s: connection to the run store lost: %v; the lock is not re-taken", resource, cause))
	}
	clear(l.held)
	l.closeConn()
}

// closeIfIdle closes the connection when no lock is held on it (the
// caller holds sem).
func (l *AdvisoryLocker) closeIfIdle() {
	if len(l.held) == 0 {
		l.closeConn()
	}
}

// closeConn stops the watcher and closes the connection, which frees
// every advisory lock of the session (the caller holds sem).
func (l *AdvisoryLocker) closeConn() {
	if l.stopWatch != nil {
		close(l.stopWatch)
		l.stopWatch = nil
	}
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), l.opts.QueryTimeout)
		_ = l.conn.Close(ctx)
		cancel()
		l.conn = nil
	}
}

// startWatcher starts the watcher if it is not running (the caller holds
// sem).
func (l *AdvisoryLocker) startWatcher() {
	if l.stopWatch != nil {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	l.stopWatch, l.watchDone = stop, done
	go l.watch(stop, done)
}

// watch makes a round trip every WatchInterval while locks are held, so a
// lost connection closes the Lost channels between steps.
func (l *AdvisoryLocker) watch(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(l.opts.WatchInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		select {
		case <-stop:
			return
		case l.sem <- struct{}{}:
		}
		select {
		case <-stop: // closed while we waited for sem
		default:
			l.verify(context.Background())
		}
		l.releaseSem()
	}
}

// verify checks that this session still holds every lock in held; the
// caller holds sem and a connection is open.
func (l *AdvisoryLocker) verify(ctx context.Context) {
	qctx, cancel := l.queryContext(ctx)
	defer cancel()
	keys, err := l.sessionKeys(qctx)
	if err != nil {
		_ = l.failed(err)
		return
	}
	for resource, lock := range l.held {
		if !keys[lock.key] {
			lock.markLost(fmt.Errorf("fleet lock %s: lost: this session no longer holds it", resource))
			delete(l.held, resource)
		}
	}
	l.closeIfIdle()
}

// sessionKeys lists the advisory locks (bigint keys) this session holds.
func (l *AdvisoryLocker) sessionKeys(ctx context.Context) (map[int64]bool, error) {
	rows, err := l.conn.Query(ctx, `SELECT classid, objid FROM pg_locks
		WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid = 1 AND granted`)
	if err != nil {
		return nil, err
	}
	keys := map[int64]bool{}
	var hi, lo uint32
	_, err = pgx.ForEachRow(rows, []any{&hi, &lo}, func() error {
		keys[int64(uint64(hi)<<32|uint64(lo))] = true
		return nil
	})
	return keys, err
}

// Close releases every lock still held and closes the connection. The
// locker takes no locks afterwards.
func (l *AdvisoryLocker) Close() error {
	l.sem <- struct{}{}
	l.closed = true
	if l.conn != nil && len(l.held) > 0 {
		ctx, cancel := l.queryContext(context.Background())
		for resource, lock := range l.held {
			lock.markReleased()
			_, _ = l.conn.Exec(ctx, `DELETE FROM resource_locks WHERE resource = $1 AND run_id = $2`, resource, lock.holder.RunID)
		}
		cancel()
	}
	clear(l.held)
	l.closeConn()
	done := l.watchDone
	l.releaseSem()
	if done != nil {
		<-done
	}
	return nil
}

func (l *AdvisoryLocker) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *AdvisoryLocker) releaseSem() { <-l.sem }

// scrub removes the connection's password from err's text.
func (l *AdvisoryLocker) scrub(err error) error {
	if l.conn == nil {
		return err
	}
	return scrubPassword(err, l.conn.Config().Password)
}

// scrubPassword returns err with password masked in its text (pgx does
// not print passwords; this guards against a message that echoes one). It
// keeps err for errors.Is/As.
func scrubPassword(err error, password string) error {
	if err == nil {
		return nil
	}
	text := redact(err.Error(), password)
	if text == err.Error() {
		return err
	}
	return &scrubbedError{text: text, err: err}
}

type scrubbedError struct {
	text string
	err  error
}

func (e *scrubbedError) Error() string { return e.text }
func (e *scrubbedError) Unwrap() error { return e.err }

// advisoryLock is one held fleet lock.
type advisoryLock struct {
	locker   *AdvisoryLocker
	resource string
	key      int64
	holder   engine.LockHolder
	lost     chan struct{}

	mu       sync.Mutex
	lostErr  error
	released bool
}

func (a *advisoryLock) markLost(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lostErr == nil && !a.released {
		a.lostErr = err
		close(a.lost)
	}
}

func (a *advisoryLock) markReleased() {
	a.mu.Lock()
	a.released = true
	a.mu.Unlock()
}

// state returns the lock's loss, or an error when it was released.
func (a *advisoryLock) state() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lostErr != nil {
		return a.lostErr
	}
	if a.released {
		return fmt.Errorf("fleet lock %s: already released", a.resource)
	}
	return nil
}

// Lost is closed once the lock is known to be lost.
func (a *advisoryLock) Lost() <-chan struct{} { return a.lost }

// Check asks the server whether this session still holds the lock. A
// failed round trip loses every lock of the locker.
func (a *advisoryLock) Check(ctx context.Context) error {
	if err := a.state(); err != nil {
		return err
	}
	l := a.locker
	if err := l.acquire(ctx); err != nil {
		return fmt.Errorf("fleet lock %s: not checked: %w", a.resource, err)
	}
	defer l.releaseSem()
	if err := a.state(); err != nil { // lost while we waited
		return err
	}
	if l.conn == nil || l.held[a.resource] != a {
		// Not reachable while the lock is neither lost nor released.
		return fmt.Errorf("fleet lock %s: not held", a.resource)
	}
	l.verify(ctx)
	return a.state()
}

// Release deletes the holder row (if it is still this run's) and unlocks.
// The connection closes with the locker's last lock.
func (a *advisoryLock) Release() {
	if a.state() != nil {
		return
	}
	l := a.locker
	l.sem <- struct{}{}
	defer l.releaseSem()
	if a.state() != nil || l.held[a.resource] != a {
		return
	}
	a.markReleased()
	delete(l.held, a.resource)
	ctx, cancel := l.queryContext(context.Background())
	defer cancel()
	if _, err := l.conn.Exec(ctx, `DELETE FROM resource_locks WHERE resource = $1 AND run_id = $2`, a.resource, a.holder.RunID); err != nil {
		_ = l.failed(err)
		return
	}
	if len(l.held) == 0 {
		// Closing the session unlocks it; no round trip needed.
		l.closeConn()
		return
	}
	if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, a.key); err != nil {
		_ = l.failed(err)
	}
}
