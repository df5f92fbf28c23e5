package pgsnap

import (
	"context"
	"fmt"
	"strings"

	"github.com/planrun/planrun/steps/internal/proc"
)

// Snapshot is an exported snapshot, held open by a psql session, and the
// row counts taken in it.
type Snapshot struct {
	ID            string
	Counts        map[string]int64 // Key(schema, table) → rows
	InRecovery    bool             // the server is a standby
	ServerVersion string
	Database      string // current_database()
	User          string // session_user
	sess          *Session
	query         string // lists the tables to count
}

// Open starts psql (c: psql with PsqlArgs and the connection arguments),
// begins a REPEATABLE READ transaction and exports its snapshot. The
// transaction stays open until Close: pg_dump --snapshot=ID must start
// before that. Count counts, in that snapshot, every table sel says the
// dump holds; it may run while pg_dump does (both read the same snapshot,
// so the counts are what the dump holds, and the dump does not wait for
// them).
func Open(ctx context.Context, c proc.Cmd, sel *Selection) (snap *Snapshot, err error) {
	query, err := sel.Query()
	if err != nil {
		return nil, err
	}
	sess, err := Start(ctx, c)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			sess.Close()
		}
	}()
	rls := "off" // as pg_dump: a count under row-level security fails instead of counting less
	if sel.RowSecurity {
		rls = "on"
	}
	// No timeout of the role's may end the counts or the held transaction
	// in the middle of the dump (pg_dump clears them for itself too).
	lines, err := sess.Exec("SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0;" +
		" SET row_security = " + rls + ";" +
		" SELECT pg_catalog.pg_is_in_recovery(); SELECT pg_catalog.current_setting('server_version');" +
		" SELECT pg_catalog.current_database(); SELECT session_user;")
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if len(lines) != 4 {
		return nil, fmt.Errorf("connect: unexpected answer %q", lines)
	}
	snap = &Snapshot{InRecovery: lines[0] == "t", ServerVersion: lines[1], Database: lines[2], User: lines[3], sess: sess}
	lines, err = sess.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT pg_catalog.pg_export_snapshot();")
	if err != nil {
		if snap.InRecovery {
			return nil, fmt.Errorf("export a snapshot on this standby (needs PostgreSQL 10 or newer; dump from the primary otherwise): %w", err)
		}
		return nil, fmt.Errorf("export a snapshot: %w", err)
	}
	if len(lines) != 1 || strings.TrimSpace(lines[0]) == "" {
		return nil, fmt.Errorf("export a snapshot: unexpected answer %q", lines)
	}
	snap.ID = strings.TrimSpace(lines[0])
	snap.query = query
	return snap, nil
}

// Count counts the rows of every table of the selection in the snapshot.
//
// The counts run inside a savepoint that is rolled back afterwards: that
// releases their ACCESS SHARE locks but keeps the transaction and its
// snapshot. Our session never waits for pg_dump, so a DDL statement
// queued behind either of us cannot close a wait cycle; a table dropped
// before pg_dump locks it fails the dump, as it would without counts.
func (snap *Snapshot) Count() error {
	sess := snap.sess
	lines, err := sess.Exec("SAVEPOINT planrun_counts; " + snap.query)
	if err != nil {
		return fmt.Errorf("list the tables to count: %w", err)
	}
	tables, err := ParseTables(lines)
	if err != nil {
		return err
	}
	snap.Counts = map[string]int64{}
	if len(tables) > 0 {
		var b strings.Builder
		for _, t := range tables {
			b.WriteString(CountSQL(t[0], t[1]))
			b.WriteByte('\n')
		}
		lines, err = sess.Exec(b.String())
		if err != nil {
			return fmt.Errorf("count rows in the dump's snapshot: %w", err)
		}
		if snap.Counts, err = ParseCounts(tables, lines); err != nil {
			return fmt.Errorf("count rows: %w", err)
		}
	}
	if _, err = sess.Exec("ROLLBACK TO SAVEPOINT planrun_counts;"); err != nil {
		return fmt.Errorf("release the count locks: %w", err)
	}
	return nil
}

// ToolVersion is `program --version` as the session's psql sees it (the
// same PATH, and the same container, as the dump's program): one line to
// an open psql, not another start of a process in the container. It is ""
// when program does not run or prints nothing.
func (snap *Snapshot) ToolVersion(program string) (string, error) {
	lines, err := snap.sess.Shell(proc.Quote(program) + " --version 2>/dev/null || :")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(strings.Join(lines, "\n")), nil
}

// Close ends the transaction (it only read) and psql.
func (s *Snapshot) Close() error {
	if s == nil || s.sess == nil {
		return nil
	}
	_, err := s.sess.Exec("COMMIT;")
	if cerr := s.sess.Close(); err == nil {
		err = cerr
	}
	s.sess = nil
	return err
}
