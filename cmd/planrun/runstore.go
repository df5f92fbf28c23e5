package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/engine/store"
)

// centralOpenTimeout bounds connecting to a central store before a run:
// a backup waits this long at most, then records locally.
const centralOpenTimeout = 10 * time.Second

// runStore is where a recorded run (apply, restore, drill) goes, and what
// takes its resource locks.
type runStore struct {
	// history answers the reads around the run (restore sources, the
	// report, metrics, prune): the central store when it answers, else
	// the host's own.
	history  *store.Store
	recorder engine.Recorder
	// local is the host's own store when history is a central one.
	local  *store.Store
	locker engine.ResourceLocker // nil: the engine's FileLocker (this host)
	closes []func()
}

// openRunStore opens the run store of the settings. A SQLite store is the
// run store itself. With a central (PostgreSQL) store, the run is
// recorded in the host's own SQLite store first and passed on (Synced):
// the central store being down never stops or loses a run; runs it
// missed before are copied now. Only a local store that cannot be opened
// keeps a run from starting.
func openRunStore(settings Settings, stderr io.Writer) (*runStore, error) {
	if !settings.Central() {
		st, err := store.Open(settings.DB)
		if err != nil {
			return nil, err
		}
		return &runStore{history: st, recorder: st, closes: []func(){func() { st.Close() }}}, nil
	}
	local, err := store.Open(settings.LocalDB())
	if err != nil {
		return nil, fmt.Errorf("local run store (kept beside the central one): %w", err)
	}
	rs := &runStore{history: local, local: local, closes: []func(){func() { local.Close() }}}
	warn := func(err error) { fmt.Fprintf(stderr, "planrun: warning: %v\n", err) }
	ctx, cancel := context.WithTimeout(context.Background(), centralOpenTimeout)
	defer cancel()
	// The run's log says it when the central store is down (Synced).
	central, openErr := store.OpenContext(ctx, settings.DB)
	if openErr == nil {
		rs.history = central
		rs.closes = append(rs.closes, func() { central.Close() })
		if _, err := store.SyncPending(ctx, local, central); err != nil {
			warn(fmt.Errorf("central run store %s: copying earlier runs: %w (they stay in %s for the next run)", central.Where(), err, local.Where()))
		}
	}
	rs.recorder = store.NewSynced(local, central, openErr, warn)
	fleet := store.FleetLocker(settings.DB, store.AdvisoryOptions{})
	rs.closes = append(rs.closes, func() { fleet.Close() })
	rs.locker = fleet
	if settings.LockFallback == "local" {
		rs.locker = &fallbackLocker{fleet: fleet, host: engine.NewFileLocker(settings.StateDir), warn: warn}
	}
	return rs, nil
}

// own is the store that surely holds this host's runs: the local record
// beside a central store (the central one may have missed a run), else
// the run store itself.
func (rs *runStore) own() *store.Store {
	if rs.local != nil {
		return rs.local
	}
	return rs.history
}

// Close releases the locker's connection and closes the stores.
func (rs *runStore) Close() {
	for i := len(rs.closes) - 1; i >= 0; i-- {
		rs.closes[i]()
	}
}

// fallbackLocker takes fleet locks, and a lock on this host only when the
// central store cannot be reached (PLANRUN_LOCK_FALLBACK=local): runs on
// this host still exclude each other, other hosts are not seen.
type fallbackLocker struct {
	fleet, host engine.ResourceLocker
	warn        func(error)
	once        sync.Once
	fellBack    atomic.Bool // the last TryLock was answered by host
}

// Scope is where the last TryLock's answer came from.
func (l *fallbackLocker) Scope() string {
	if l.fellBack.Load() {
		return l.host.Scope()
	}
	return l.fleet.Scope()
}

func (l *fallbackLocker) TryLock(ctx context.Context, resource string, h engine.LockHolder) (engine.HeldLock, *engine.LockHolder, error) {
	held, holder, err := l.fleet.TryLock(ctx, resource, h)
	l.fellBack.Store(err != nil)
	if err == nil {
		return held, holder, nil
	}
	l.once.Do(func() {
		l.warn(fmt.Errorf("%w: taking resource locks on this host only (PLANRUN_LOCK_FALLBACK=local)", err))
	})
	return l.host.TryLock(ctx, resource, h)
}
