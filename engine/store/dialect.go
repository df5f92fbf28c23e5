package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// dialect is what differs between the SQLite and the PostgreSQL store;
// every query text is shared and written with ? placeholders.
type dialect interface {
	backend() string
	// rebind turns a query's ? placeholders into the driver's.
	rebind(q string) string
	// migrationSQL is the text of a migration for this database.
	migrationSQL(m migration) string
	// lockSchema makes a migration transaction the only one running (on
	// every host); schemaVersion and setSchemaVersion read and write the
	// number of migrations applied.
	lockSchema(ctx context.Context, tx *sql.Tx) error
	schemaVersion(ctx context.Context, q sqlConn) (int, error)
	setSchemaVersion(ctx context.Context, tx *sql.Tx, v int) error
	// lockWrites keeps other writers out of a transaction until it ends
	// (prune: no run starts or finishes between choosing and deleting).
	lockWrites(ctx context.Context, tx *sql.Tx) error
	// compact gives space back after a prune deleted gone runs and left
	// remain; it reports whether it rewrote the store.
	compact(ctx context.Context, db *sql.DB, gone, remain int) (bool, error)
}

// sqlConn is a database or a transaction.
type sqlConn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// conn runs the shared query texts on a database or transaction, in the
// dialect's placeholders.
type conn struct {
	c sqlConn
	d dialect
}

func (s *Store) conn() conn { return conn{s.db, s.d} }

func (c conn) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return c.c.ExecContext(ctx, c.d.rebind(q), args...)
}

func (c conn) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return c.c.QueryContext(ctx, c.d.rebind(q), args...)
}

func (c conn) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return c.c.QueryRowContext(ctx, c.d.rebind(q), args...)
}

// sqliteDialect: one file, locked as a whole; PRAGMA user_version counts
// the migrations.
type sqliteDialect struct{}

func (sqliteDialect) backend() string                 { return "sqlite" }
func (sqliteDialect) rebind(q string) string          { return q }
func (sqliteDialect) migrationSQL(m migration) string { return m.sql }

// lockSchema: the transaction is IMMEDIATE (see the DSN), so it already
// holds the file's write lock.
func (sqliteDialect) lockSchema(context.Context, *sql.Tx) error { return nil }

func (sqliteDialect) schemaVersion(ctx context.Context, q sqlConn) (int, error) {
	var v int
	err := q.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v)
	return v, err
}

func (sqliteDialect) setSchemaVersion(ctx context.Context, tx *sql.Tx, v int) error {
	// PRAGMA takes no bind parameters; v is our own integer.
	_, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v))
	return err
}

// lockWrites: the transaction took the write lock at BEGIN (the DSN's
// _txlock=immediate).
func (sqliteDialect) lockWrites(context.Context, *sql.Tx) error { return nil }

// vacuumAfter is how many deleted runs make a prune VACUUM the store: a
// rewrite of the file costs about as much as reading it, worth it when a
// large part went (about 1 KiB per run with its attempts).
const vacuumAfter = 1000

func (sqliteDialect) compact(ctx context.Context, db *sql.DB, gone, remain int) (vacuumed bool, err error) {
	if gone >= vacuumAfter || gone > remain {
		// Give the deleted pages back to the file system, and truncate
		// the write-ahead log the rewrite went through.
		if _, err := db.ExecContext(ctx, `VACUUM`); err != nil {
			return false, fmt.Errorf("vacuum: %w", err)
		}
		if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			return false, fmt.Errorf("vacuum: %w", err)
		}
		vacuumed = true
	}
	// Refresh the planner's statistics for the smaller tables (cheap:
	// it only analyses what changed enough to matter).
	if _, err := db.ExecContext(ctx, `PRAGMA optimize`); err != nil {
		return vacuumed, fmt.Errorf("optimize: %w", err)
	}
	return vacuumed, nil
}

// postgresDialect: a database shared by hosts; a schema_version table
// counts the migrations.
type postgresDialect struct {
	rebound sync.Map // query text → rebound text
	cached  atomic.Int64
}

func (*postgresDialect) backend() string { return "postgres" }

func (*postgresDialect) migrationSQL(m migration) string {
	if m.pg != "" {
		return m.pg
	}
	return m.sql
}

// maxRebound bounds the cache: query texts are a fixed set except the
// IN lists, whose length varies.
const maxRebound = 1000

func (d *postgresDialect) rebind(q string) string {
	if r, ok := d.rebound.Load(q); ok {
		return r.(string)
	}
	r := dollarPlaceholders(q)
	if d.cached.Load() < maxRebound {
		if _, loaded := d.rebound.LoadOrStore(q, r); !loaded {
			d.cached.Add(1)
		}
	}
	return r
}

// dollarPlaceholders numbers the ? placeholders of q as $1, $2, …,
// leaving string literals and quoted names alone.
func dollarPlaceholders(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// schemaLockKey is the advisory lock that serialises migrations on every
// host ("planrun" and a 1).
const schemaLockKey = 0x706c616e72756e01

func (*postgresDialect) lockSchema(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLockKey))
	return err
}

func (*postgresDialect) schemaVersion(ctx context.Context, q sqlConn) (int, error) {
	// pg_class read as a table (the statement's snapshot), not through
	// to_regclass (the catalog cache, which may not have seen another
	// host's migration commit yet, though we hold the schema lock).
	var exists bool
	if err := q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = 'schema_version' AND n.nspname = current_schema())`).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var v int
	err := q.QueryRowContext(ctx, `SELECT version FROM schema_version WHERE id = 1`).Scan(&v)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	return v, err
}

func (*postgresDialect) setSchemaVersion(ctx context.Context, tx *sql.Tx, v int) error {
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		id      integer PRIMARY KEY CHECK (id = 1),
		version integer NOT NULL)`); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO schema_version (id, version) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version`, v)
	return err
}

// lockWrites: SHARE ROW EXCLUSIVE conflicts with every writer's ROW
// EXCLUSIVE (and with itself: two prunes take turns) but not with readers.
func (*postgresDialect) lockWrites(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `LOCK TABLE runs, attempts IN SHARE ROW EXCLUSIVE MODE`)
	return err
}

// compact: autovacuum gives the space back and refreshes the statistics.
func (*postgresDialect) compact(context.Context, *sql.DB, int, int) (bool, error) { return false, nil }
