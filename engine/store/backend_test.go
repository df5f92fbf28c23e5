package store

import (
	"path/filepath"
	"testing"

	"github.com/planrun/planrun/internal/testenv"
)

// backend is one implementation of the store under test: the store
// tests run against each (one conformance suite).
type backend struct {
	name string
	// dsn names a new, empty database (a file that does not exist yet,
	// or a fresh PostgreSQL database dropped when the test ends).
	dsn func(t testing.TB) string
}

var backends = []backend{
	{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "state", "runs.db") }},
	// In CI (CI=true) a missing PostgreSQL fails the test (testenv).
	{"postgres", testenv.PGDatabase},
}

// open opens a store on a new, empty database, closed when the test ends.
func (b backend) open(t testing.TB) *Store {
	t.Helper()
	st, err := Open(b.dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// forEachBackend runs test once per backend, as a subtest named after it.
func forEachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b) })
	}
}

// openTemp opens a new SQLite store: the tests of what only SQLite does.
func openTemp(t testing.TB) *Store {
	t.Helper()
	return backends[0].open(t)
}

// benchEachBackend runs bench once per backend on a new, empty store.
func benchEachBackend(b *testing.B, bench func(b *testing.B, st *Store)) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) { bench(b, be.open(b)) })
	}
}
