package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// connectTimeout bounds connecting to PostgreSQL when neither the URL's
// connect_timeout nor PGCONNECT_TIMEOUT says otherwise: a run whose
// central store is down falls back to its local one soon.
const connectTimeout = 5 * time.Second

// maxPGConns: a planrun process records one run; a few connections let
// queries overlap without crowding a server that many hosts share.
const maxPGConns = 4

// IsPostgresURL reports whether a run store name is a PostgreSQL URL (a
// central store) rather than a SQLite file.
func IsPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

func openPostgres(ctx context.Context, dsn string, steps []migration) (*Store, error) {
	where := redactedURL(dsn)
	secret := urlPassword(dsn)
	fail := func(err error) error {
		return fmt.Errorf("run store %s: %w", where, scrubPassword(err, secret))
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fail(err)
	}
	if cfg.Password != "" {
		secret = cfg.Password // also PGPASSWORD's or the password file's
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "planrun" // who is connected, in pg_stat_activity
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxPGConns)
	db.SetMaxIdleConns(maxPGConns)
	db.SetConnMaxIdleTime(time.Minute)
	st := &Store{db: db, d: &postgresDialect{}, where: where}
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	err = db.PingContext(pingCtx)
	cancel()
	if err != nil {
		db.Close()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("run store %s: no answer within %s (connect_timeout)", where, cfg.ConnectTimeout)
		}
		return nil, fail(err)
	}
	if err := st.migrate(ctx, steps); err != nil {
		db.Close()
		return nil, fail(err)
	}
	return st, nil
}

// redactedURL is the URL without password, query or fragment; it never
// returns dsn itself when dsn does not parse.
func redactedURL(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		scheme, _, _ := strings.Cut(dsn, "://")
		return scheme + "://(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	u.RawQuery, u.Fragment, u.RawFragment = "", "", ""
	return u.String()
}

// urlPassword is the password dsn carries (in the user info or as a
// password= option), "" for none.
func urlPassword(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return ""
	}
	if p, ok := u.User.Password(); ok && p != "" {
		return p
	}
	return u.Query().Get("password")
}

// redact masks secret in msg, in the forms a URL may spell it.
func redact(msg, secret string) string {
	if secret == "" {
		return msg
	}
	for _, s := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}
