package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order; the database's PRAGMA user_version is
// the number already applied. Append only: never edit a released entry.
var migrations = []string{
	// 1: runs and their step attempts.
	`CREATE TABLE runs (
		id          TEXT PRIMARY KEY,
		plan        TEXT NOT NULL,
		plan_file   TEXT NOT NULL DEFAULT '',
		plan_sha256 TEXT NOT NULL DEFAULT '',
		host        TEXT NOT NULL DEFAULT '',
		trigger     TEXT NOT NULL DEFAULT '',
		pid         INTEGER NOT NULL DEFAULT 0,
		started     TEXT NOT NULL,
		finished    TEXT,
		status      TEXT NOT NULL,
		exit_code   INTEGER NOT NULL DEFAULT 0,
		error       TEXT NOT NULL DEFAULT '',
		log_file    TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE attempts (
		seq            INTEGER PRIMARY KEY AUTOINCREMENT,
		run_id         TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
		step_id        TEXT NOT NULL,
		step_type      TEXT NOT NULL DEFAULT '',
		attempt        INTEGER NOT NULL DEFAULT 0,
		status         TEXT NOT NULL,
		started        TEXT,
		finished       TEXT,
		duration_ns    INTEGER NOT NULL DEFAULT 0,
		error          TEXT NOT NULL DEFAULT '',
		reason         TEXT NOT NULL DEFAULT '',
		outputs_json   TEXT NOT NULL DEFAULT '{}',
		bytes_in       INTEGER NOT NULL DEFAULT 0,
		bytes_out      INTEGER NOT NULL DEFAULT 0,
		artifacts_json TEXT NOT NULL DEFAULT '{}'
	);`,
	// 2: indexes for the CLI's queries (runs of a plan newest first, a
	// plan's last success, a run's attempts).
	`CREATE INDEX runs_plan_started ON runs(plan, started);
	CREATE INDEX runs_plan_status_finished ON runs(plan, status, finished);
	CREATE INDEX runs_started ON runs(started);
	CREATE INDEX attempts_run ON attempts(run_id, seq);`,
	// 3: restore and drill runs (kind, the backup run they read, their
	// report) and the typed artifact records of each attempt (the
	// manifest).
	`ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'apply';
	ALTER TABLE runs ADD COLUMN source_run TEXT NOT NULL DEFAULT '';
	ALTER TABLE runs ADD COLUMN report_json TEXT NOT NULL DEFAULT '';
	ALTER TABLE attempts ADD COLUMN records_json TEXT NOT NULL DEFAULT '[]';
	CREATE INDEX runs_plan_kind_status_finished ON runs(plan, kind, status, finished);`,
	// 4: a plan's newest run of a kind (status, metrics, prune's
	// protected runs) without walking its runs of other kinds: a monthly
	// drill among 100 000 backups.
	`CREATE INDEX runs_plan_kind_started ON runs(plan, kind, started);`,
	// 5: fleets and resource locks. The resource locks each run and
	// attempt waited for; a host's plans by kind (status --all, --host);
	// who holds a fleet-wide resource lock (the lock itself is a
	// PostgreSQL advisory lock; this row only names its holder); runs
	// recorded locally that still have to reach the central store.
	`ALTER TABLE runs ADD COLUMN lock_waits_json TEXT NOT NULL DEFAULT '[]';
	ALTER TABLE attempts ADD COLUMN lock_waits_json TEXT NOT NULL DEFAULT '[]';
	CREATE INDEX runs_host_plan_kind_started ON runs(host, plan, kind, started);
	CREATE TABLE resource_locks (
		resource TEXT PRIMARY KEY,
		host     TEXT NOT NULL,
		pid      INTEGER NOT NULL,
		run_id   TEXT NOT NULL,
		plan     TEXT NOT NULL,
		step     TEXT NOT NULL DEFAULT '',
		since    TEXT NOT NULL
	);
	CREATE TABLE sync_pending (
		run_id TEXT PRIMARY KEY,
		since  TEXT NOT NULL
	);`,
}

// migrate brings db up to len(steps) applied migrations. Each migration
// and its version bump commit together; the transaction is IMMEDIATE (see
// the DSN) so two processes opening a fresh database at once serialise
// here and the second one finds nothing left to do.
func migrate(ctx context.Context, db *sql.DB, steps []string) error {
	for {
		done, err := migrateOne(ctx, db, steps)
		if err != nil || done {
			return err
		}
	}
}

func migrateOne(ctx context.Context, db *sql.DB, steps []string) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var v int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return false, err
	}
	switch {
	case v > len(steps):
		return false, fmt.Errorf("schema version %d is newer than this planrun knows (%d): upgrade planrun", v, len(steps))
	case v == len(steps):
		return true, tx.Rollback()
	}
	if _, err := tx.ExecContext(ctx, steps[v]); err != nil {
		return false, fmt.Errorf("migration %d: %w", v+1, err)
	}
	// PRAGMA takes no bind parameters; v is our own integer.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v+1)); err != nil {
		return false, fmt.Errorf("migration %d: %w", v+1, err)
	}
	return false, tx.Commit()
}

// SchemaVersion reports how many migrations the database has applied.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v)
	return v, err
}
