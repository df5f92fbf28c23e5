package store

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// schemaText lists the store's tables, columns and indexes.
func schemaText(t *testing.T, st *Store) string {
	t.Helper()
	q := `SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master ORDER BY name`
	if st.Backend() == "postgres" {
		q = `SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' ||
				coalesce(collation_name, '') || ' ' || is_nullable || ' ' || coalesce(column_default, '')
			FROM information_schema.columns WHERE table_schema = current_schema()
			UNION ALL
			SELECT 'index ' || indexname || ': ' || indexdef FROM pg_indexes WHERE schemaname = current_schema()
			ORDER BY 1`
	}
	rows, err := st.db.Query(q)
	require.NoError(t, err)
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		b.WriteString(s + "\n")
	}
	require.NoError(t, rows.Err())
	return b.String()
}

func TestMigrateTwiceIsNoop(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.dsn(t)
		st, err := Open(dsn)
		require.NoError(t, err)
		finished(t, st, run("keep", "p", t0, engine.StatusSuccess), time.Second)
		before := schemaText(t, st)
		require.NoError(t, st.migrate(ctx, migrations), "second migrate")
		assert.Equal(t, before, schemaText(t, st), "schema changed by a second migrate")
		st.Close()

		st, err = Open(dsn) // reopening migrates again
		require.NoError(t, err)
		defer st.Close()
		v, err := st.SchemaVersion(ctx)
		require.NoError(t, err)
		assert.Equal(t, len(migrations), v)
		assert.Equal(t, before, schemaText(t, st), "schema changed by reopening")
		_, _, err = st.Run(ctx, "keep")
		assert.NoError(t, err, "run lost after reopen")
	})
}

func TestOlderDatabaseUpgrades(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		dsn := b.dsn(t)
		old, err := open(ctx, dsn, migrations[:1]) // a store written by an older planrun
		require.NoError(t, err)
		// Written as version 1 wrote it: without the columns later migrations add.
		_, err = old.conn().exec(ctx, `INSERT INTO runs (id, plan, started, finished, status) VALUES (?, ?, ?, ?, ?)`,
			"from-v1", "p", fmtTime(t0), fmtTime(t0.Add(time.Second)), engine.StatusSuccess)
		require.NoError(t, err)
		v, err := old.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, v)
		require.NotContains(t, schemaText(t, old), "runs_plan_started", "version 1 already has version 2's index; the test proves nothing")
		old.Close()

		st, err := Open(dsn)
		require.NoError(t, err)
		defer st.Close()
		v, err = st.SchemaVersion(ctx)
		require.NoError(t, err)
		assert.Equal(t, len(migrations), v)
		assert.Contains(t, schemaText(t, st), "runs_plan_started", "upgrade did not create the version 2 index")
		r, ok, err := st.LastSuccess(ctx, "p")
		if err != nil || !ok || r.ID != "from-v1" || r.Kind != engine.KindApply || r.LockWaits != nil {
			t.Errorf("data written at version 1 not readable after upgrade: %+v %v %v", r, ok, err)
		}
	})
}

func TestNewerDatabaseRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.dsn(t)
		st, err := Open(dsn)
		require.NoError(t, err)
		bump := `PRAGMA user_version = 99`
		if st.Backend() == "postgres" {
			bump = `UPDATE schema_version SET version = 99`
		}
		_, err = st.db.Exec(bump)
		require.NoError(t, err)
		where := st.Where()
		st.Close()
		_, err = Open(dsn)
		if err == nil || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), where) {
			t.Fatalf("Open of a newer schema: %v", err)
		}
	})
}

// Stores opening one fresh database at once (two hosts upgrading, two
// cron jobs) serialise their migrations: each finds the schema complete.
func TestConcurrentMigrationsSerialise(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		dsn := b.dsn(t)
		const openers = 4
		start := make(chan struct{})
		errs := make([]error, openers)
		var wg sync.WaitGroup
		for i := range openers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				st, err := Open(dsn)
				if err != nil {
					errs[i] = err
					return
				}
				defer st.Close()
				errs[i] = st.StartRun(context.Background(), run("r"+string(rune('a'+i)), "p", t0, engine.StatusRunning))
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			assert.NoError(t, err, "opener %d", i)
		}
		st, err := Open(dsn)
		require.NoError(t, err)
		defer st.Close()
		v, err := st.SchemaVersion(context.Background())
		require.NoError(t, err)
		assert.Equal(t, len(migrations), v)
		runs, err := st.Runs(context.Background(), RunFilter{})
		require.NoError(t, err)
		assert.Len(t, runs, openers)
	})
}
