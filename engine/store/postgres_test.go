package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenChoosesTheBackend(t *testing.T) {
	st := openTemp(t)
	assert.Equal(t, "sqlite", st.Backend())
	assert.True(t, strings.HasSuffix(st.Where(), "runs.db"), st.Where())

	dsn := testenv.PGDatabase(t)
	for _, scheme := range []string{"postgres", "postgresql"} {
		u, err := url.Parse(dsn)
		require.NoError(t, err)
		u.Scheme = scheme
		// trust auth ignores the password; Where must not show it.
		u.User = url.UserPassword(u.User.Username(), "s3cret-pw")
		st, err := Open(u.String())
		require.NoError(t, err)
		assert.Equal(t, "postgres", st.Backend())
		assert.Equal(t, scheme+"://"+u.User.Username()+"@"+u.Host+u.Path, st.Where(), "no password, no options")
		assert.NotContains(t, st.Where(), "s3cret")
		st.Close()
	}
}

// closedPort is a loopback port nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// openWithin opens dsn; a hang past limit fails the test (Open must give
// up by itself: its connect timeout).
func openWithin(t *testing.T, dsn string, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		st, err := Open(dsn)
		if err == nil {
			st.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("Open(%s) still connecting after %s", redactedURL(dsn), limit)
		return nil
	}
}

func TestOpenPostgresDownNamesTheStoreNotThePassword(t *testing.T) {
	addr := closedPort(t)
	for _, dsn := range []string{
		"postgres://planrun:s3cret-pw@" + addr + "/planrun",
		"postgres://planrun@" + addr + "/planrun?password=s3cret-pw&sslmode=disable",
		"postgresql://planrun:s3cret%2Fpw@" + addr + "/planrun?connect_timeout=2",
		"postgres://planrun:s3cret-pw@" + addr + "/planrun?sslmode=bogus",      // a parse error
		"postgres://planrun:s3cret-pw@" + addr + ":99999999999/planrun",        // not a URL
		"postgres://planrun:s3cret-pw@[" + addr + "/planrun?connect_timeout=1", // not a URL either
	} {
		err := openWithin(t, dsn, 30*time.Second)
		require.Error(t, err, dsn)
		msg := err.Error()
		assert.NotContains(t, msg, "s3cret", "the password leaked")
		assert.Contains(t, msg, "run store postgres", msg)
		if !strings.Contains(dsn, "[") && !strings.Contains(dsn, "99999") {
			assert.Contains(t, msg, "planrun@"+addr+"/planrun", "names Where()")
		}
	}
}

// A server that accepts connections but never answers: Open gives up
// after the connect timeout (the URL's connect_timeout here).
func TestOpenPostgresSilentServerTimesOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	dsn := "postgres://planrun:s3cret-pw@" + l.Addr().String() + "/planrun?sslmode=disable&connect_timeout=1"
	err = openWithin(t, dsn, 30*time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "postgres://planrun@"+l.Addr().String()+"/planrun")
	assert.NotContains(t, err.Error(), "s3cret")
}

func TestRedactedURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:pw@db:5432/planrun?sslmode=require": "postgres://u@db:5432/planrun",
		"postgresql://db/planrun?password=pw":             "postgresql://db/planrun",
		"postgres:///planrun?host=/run/postgresql":        "postgres:///planrun",
		"postgres://u:pw@[::1/x":                          "postgres://(unparsable URL)",
	} {
		assert.Equal(t, want, redactedURL(in), in)
	}
}

// pgDatabaseCollated is testenv.PGDatabase with a default collation that
// is not bytewise (ICU en-US: "b" < "B" < "c"), as many servers have.
func pgDatabaseCollated(t *testing.T) string {
	t.Helper()
	base := testenv.PGDatabase(t) // fails or skips as PGDatabase does
	admin, err := sql.Open("pgx", base)
	require.NoError(t, err)
	defer admin.Close()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "planrun_t_icu_" + hex.EncodeToString(b[:])
	_, err = admin.Exec(`CREATE DATABASE ` + name + ` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`)
	require.NoError(t, err, "an ICU database")
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer admin.Close()
		if _, err := admin.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	require.NoError(t, err)
	u.Path = "/" + name
	return u.String()
}

// On a database whose collation is not bytewise, ids, times and names
// still compare as SQLite compares them: the store's columns say
// COLLATE "C".
func TestPostgresComparesBytewiseWhateverTheCollation(t *testing.T) {
	dsn := pgDatabaseCollated(t)
	st, err := Open(dsn)
	require.NoError(t, err)
	defer st.Close()
	var collated string
	require.NoError(t, st.db.QueryRow(`SELECT 'b' < 'B'`).Scan(&collated))
	require.Equal(t, "true", collated, "the database's own collation is not bytewise; the test proves nothing")

	ctx := context.Background()
	for _, id := range []string{"b-1", "B-2", "ab", "aB", "a_c"} {
		onHost(t, st, id, "h", "p", engine.KindApply, engine.StatusSuccess, t0)
	}
	assert.Equal(t, []string{"b-1", "ab", "a_c", "aB", "B-2"}, runIDs(t, st, RunFilter{}))
	r, _, err := st.Run(ctx, "aB")
	require.NoError(t, err)
	assert.Equal(t, "aB", r.ID)
	_, _, err = st.Run(ctx, "a")
	assert.ErrorIs(t, err, ErrAmbiguous)
	r, _, err = st.Run(ctx, "B")
	require.NoError(t, err, "B- is the only run starting with B")
	assert.Equal(t, "B-2", r.ID)
}

func TestDollarPlaceholders(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT 1`:                       `SELECT 1`,
		`a = ? AND b IN (?, ?)`:          `a = $1 AND b IN ($2, $3)`,
		`x = '?' AND y = ? AND "q?" = ?`: `x = '?' AND y = $1 AND "q?" = $2`,
		`e = 'it''s ?' AND f = ?`:        `e = 'it''s ?' AND f = $1`,
		strings.Repeat("?,", 10) + "?":   "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11",
	} {
		assert.Equal(t, want, dollarPlaceholders(in), in)
	}
}
