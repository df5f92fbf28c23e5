package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/planrun/planrun/engine"
)

// centralTimeout bounds each write to the central store during a run: a
// slow or hung central server must not hold a backup up.
const centralTimeout = 5 * time.Second

// Synced records runs for a host whose run store is a central one
// (PostgreSQL, shared by a fleet). Every write goes first to the host's
// local SQLite store, which alone is enough to keep the record: a run is
// never skipped or lost because the central store is down. Each write is
// then passed on to the central store while it answers; a run it missed
// (down when the run started, or from some write on) is copied over whole
// at the run's end, and every run still pending is copied at the start of
// the next one (SyncPending). Copies are keyed by run id, so a run copied
// twice is stored once.
type Synced struct {
	local   *Store
	central *Store // nil: unreachable when the run began
	// warn hears that the central store stopped answering (once per
	// run): the run's log once WarnTo gave it, else the caller's.
	warn func(error)

	mu   sync.Mutex
	down error // the central store's first failure in this run
}

var (
	_ engine.Warner        = (*Synced)(nil)
	_ engine.Recorder      = (*Synced)(nil)
	_ engine.Abandoner     = (*Synced)(nil)
	_ engine.HistoryReader = (*Synced)(nil)
)

// NewSynced records into local and, while it answers, central. central
// nil means it could not be opened (openErr says why): the runs wait in
// local's outbox. warn, if not nil, hears of the central store's first
// failure until the run's log takes over (WarnTo).
func NewSynced(local, central *Store, openErr error, warn func(error)) *Synced {
	s := &Synced{local: local, central: central, warn: warn}
	if central == nil {
		if openErr == nil {
			openErr = errors.New("central run store unreachable")
		}
		s.down = fmt.Errorf("%w: recording in %s; the run is copied over when the central store answers", openErr, local.Where())
	}
	return s
}

// WarnTo sends the warnings to the run's log, starting with the central
// store being unreachable when the run began.
func (s *Synced) WarnTo(warn func(msg string)) {
	s.mu.Lock()
	s.warn = func(err error) { warn(err.Error()) }
	down := s.central == nil
	s.mu.Unlock()
	if down {
		warn(s.down.Error())
	}
}

// failed notes a failure of the central store; the first in the run is
// reported.
func (s *Synced) failed(err error) {
	s.mu.Lock()
	first := s.down == nil
	s.down = err
	warn := s.warn
	s.mu.Unlock()
	if first && warn != nil {
		warn(err)
	}
}

// Local is the host's own store.
func (s *Synced) Local() *Store { return s.local }

// toCentral runs one write against the central store unless it has failed
// before in this run; a failure marks it down for the rest of the run.
func (s *Synced) toCentral(ctx context.Context, write func(ctx context.Context, c *Store) error) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, centralTimeout)
	defer cancel()
	if err := write(ctx, s.central); err != nil {
		s.failed(fmt.Errorf("central run store %s: %w (the run goes on, recorded locally in %s, and is copied over when the central store answers again)",
			s.central.Where(), err, s.local.Where()))
	}
}

// StartRun records the run locally with its outbox entry (one
// transaction), then centrally.
func (s *Synced) StartRun(ctx context.Context, r engine.RunRecord) error {
	err := s.local.inTx(ctx, func(c conn) error {
		if err := startRun(ctx, c, r); err != nil {
			return err
		}
		return markPending(ctx, c, r.ID, r.Started)
	})
	if err != nil {
		return err
	}
	s.toCentral(ctx, func(ctx context.Context, c *Store) error { return c.StartRun(ctx, r) })
	return nil
}

// RecordAttempt records locally, then centrally.
func (s *Synced) RecordAttempt(ctx context.Context, a engine.AttemptRecord) error {
	if err := s.local.RecordAttempt(ctx, a); err != nil {
		return err
	}
	s.toCentral(ctx, func(ctx context.Context, c *Store) error { return c.RecordAttempt(ctx, a) })
	return nil
}

// FinishRun records the end locally, then copies every pending run (this
// one included) to the central store.
func (s *Synced) FinishRun(ctx context.Context, r engine.RunRecord) error {
	if err := s.local.FinishRun(ctx, r); err != nil {
		return err
	}
	if s.central == nil {
		return nil
	}
	// Also after a failure earlier in the run: the server may be back.
	ctx, cancel := context.WithTimeout(ctx, centralTimeout)
	defer cancel()
	if _, err := SyncPending(ctx, s.local, s.central); err != nil {
		s.failed(fmt.Errorf("central run store %s: %w (the run is recorded locally in %s and is copied at the next run or by planrun history sync)",
			s.central.Where(), err, s.local.Where()))
	}
	return nil
}

// AbandonRuns closes this host's dead runs locally (the outbox then
// carries them over) and, while it answers, centrally.
func (s *Synced) AbandonRuns(ctx context.Context, host, plan, kind string, now time.Time) (int, error) {
	n, err := s.local.AbandonRuns(ctx, host, plan, kind, now)
	if err != nil {
		return n, err
	}
	s.toCentral(ctx, func(ctx context.Context, c *Store) error {
		m, err := c.AbandonRuns(ctx, host, plan, kind, now)
		n = max(n, m)
		return err
	})
	return n, nil
}

// StepHistory reads the host's own store: it holds every run of this
// host, and guards must work while the central store is down.
func (s *Synced) StepHistory(ctx context.Context, host, plan, step string, n int) ([]engine.AttemptRecord, error) {
	return s.local.StepHistory(ctx, host, plan, step, n)
}

func markPending(ctx context.Context, c conn, runID string, since time.Time) error {
	_, err := c.exec(ctx, `INSERT INTO sync_pending (run_id, since) VALUES (?, ?) ON CONFLICT (run_id) DO NOTHING`,
		runID, fmtTime(since))
	if err != nil {
		return fmt.Errorf("run store: outbox: %w", err)
	}
	return nil
}

// Pending lists the runs of local's outbox: recorded here, not yet
// (completely) in the central store; oldest first.
func Pending(ctx context.Context, local *Store) ([]string, error) {
	rows, err := local.conn().query(ctx, `SELECT run_id FROM sync_pending ORDER BY since, run_id`)
	if err != nil {
		return nil, fmt.Errorf("run store %s: outbox: %w", local.Where(), err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("run store %s: outbox: %w", local.Where(), err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// SyncPending copies each run of local's outbox, whole, to central
// (ImportRun: idempotent by run id). A finished run leaves the outbox; a
// running one stays, to be copied again when it has finished. It stops at
// the first failure and returns how many runs were copied.
func SyncPending(ctx context.Context, local, central *Store) (int, error) {
	ids, err := Pending(ctx, local)
	if err != nil {
		return 0, err
	}
	done := 0
	for _, id := range ids {
		run, atts, err := local.Run(ctx, id)
		if errors.Is(err, ErrNotFound) { // pruned locally before it could be copied
			err = forget(ctx, local, id)
		} else if err == nil {
			err = central.ImportRun(ctx, run, atts)
			if err == nil && run.Status != engine.StatusRunning {
				err = forget(ctx, local, id)
			}
		}
		if err != nil {
			return done, fmt.Errorf("copy run %s: %w", id, err)
		}
		done++
	}
	return done, nil
}

func forget(ctx context.Context, local *Store, runID string) error {
	_, err := local.conn().exec(ctx, `DELETE FROM sync_pending WHERE run_id = ?`, runID)
	return err
}
