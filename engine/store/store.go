// Package store is the run store: it records runs and step attempts
// (engine.Recorder) and answers the CLI's history queries. One host keeps
// it in an embedded SQLite file (the only cgo code in planrun); a fleet
// shares a PostgreSQL database. Both run the same SQL and the same
// migrations: a small dialect carries the few differences.
//
// The store never redacts: the runner masks secrets in every string before
// it calls StartRun, RecordAttempt or FinishRun. Whatever reaches the store
// is written as given.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// busyTimeout is how long a writer waits for another process's write lock:
// cron may start runs of different plans at the same minute.
const busyTimeout = 10 * time.Second

// Store is a run store backed by one SQLite file or one PostgreSQL
// database. It is safe for concurrent use, and several processes (or
// hosts, with PostgreSQL) may use the same database.
type Store struct {
	db    *sql.DB
	d     dialect
	path  string // the SQLite file; "" for PostgreSQL
	where string // path, or the PostgreSQL URL without its password
}

// Open opens the run store dsn names and applies any pending migrations.
// A postgres:// or postgresql:// URL is a PostgreSQL database (its
// password comes from PGPASSWORD or PGPASSFILE, or the URL; it never
// appears in an error); anything else is the path of a SQLite file,
// created if needed: the parent directory 0700 and the file 0600, as run
// records name hosts, paths and errors.
func Open(dsn string) (*Store, error) {
	return open(context.Background(), dsn, migrations)
}

// OpenContext is Open bounded by ctx (connecting to a central store that
// does not answer).
func OpenContext(ctx context.Context, dsn string) (*Store, error) {
	return open(ctx, dsn, migrations)
}

func open(ctx context.Context, dsn string, steps []migration) (*Store, error) {
	if IsPostgresURL(dsn) {
		return openPostgres(ctx, dsn, steps)
	}
	return openSQLite(ctx, dsn, steps)
}

// Backend names the database: "sqlite" or "postgres".
func (s *Store) Backend() string { return s.d.backend() }

// Where is what to call the store in messages: the SQLite file's path, or
// the PostgreSQL URL without password or options
// (postgres://planrun@db:5432/planrun).
func (s *Store) Where() string { return s.where }

// Path is Where: the SQLite file's path, or the PostgreSQL URL without
// its password.
func (s *Store) Path() string { return s.where }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func openSQLite(ctx context.Context, path string, steps []migration) (*Store, error) {
	if path == "" {
		return nil, errors.New("run store: empty database path")
	}
	if strings.ContainsAny(path, "?#") {
		// The driver reads what follows '?' as connection options.
		return nil, fmt.Errorf("run store %s: path must not contain '?' or '#'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("run store: %w", err)
	}
	// Create the file ourselves so SQLite does not create it with the
	// umask's mode; SQLite gives -wal and -shm the same mode as the db.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("run store: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("run store: %w", err)
	}
	// _txlock=immediate: every transaction takes the write lock at BEGIN,
	// so a busy database is waited for (busy_timeout) instead of failing
	// with SQLITE_BUSY when a read lock cannot be upgraded.
	dsn := fmt.Sprintf("%s?_journal_mode=WAL&_busy_timeout=%d&_foreign_keys=on&_synchronous=NORMAL&_txlock=immediate",
		path, busyTimeout.Milliseconds())
	// Two processes opening a fresh file at once can get SQLITE_BUSY
	// without the busy handler being consulted (one of them is switching
	// the file to WAL mode): retry, within the same time budget.
	deadline := time.Now().Add(busyTimeout)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		st, err := openSQLiteDB(ctx, dsn, path, steps)
		if err == nil {
			return st, nil
		}
		var se sqlite3.Error
		if !errors.As(err, &se) || se.Code != sqlite3.ErrBusy || time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("run store %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("run store %s: %w", path, err)
		case <-time.After(wait):
		}
	}
}

// openSQLiteDB connects and migrates.
func openSQLiteDB(ctx context.Context, dsn, path string, steps []migration) (*Store, error) {
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, err
	}
	st := &Store{db: db, d: sqliteDialect{}, path: path, where: path}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := st.migrate(ctx, steps); err != nil {
		db.Close()
		return nil, err
	}
	return st, nil
}

// timeFormat is RFC 3339 in UTC with a fixed nine-digit fraction, so that
// the stored text sorts in time order (time.RFC3339Nano trims zeros, which
// would sort "…:05Z" after "…:05.1Z"). time.RFC3339Nano parses it.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func fmtTime(t time.Time) sql.NullString {
	if t.IsZero() {
		return sql.NullString{}
	}
	return sql.NullString{String: t.UTC().Format(timeFormat), Valid: true}
}

func parseTime(ns sql.NullString) (time.Time, error) {
	if !ns.Valid || ns.String == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, ns.String)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %w", ns.String, err)
	}
	return t.UTC(), nil
}
