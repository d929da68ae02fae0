package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
)

// openStore opens the store named by --db: a postgres:// or postgresql:// URL, or a
// SQLite file path (the default).
// readConns sizes PostgreSQL's pool of pulls (0: its default).
func openStore(db string, readConns int) (server.Store, error) {
	if isPostgres(db) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var opts []postgres.Option
		if readConns > 0 {
			opts = append(opts, postgres.WithReadConns(int32(readConns)))
		}
		s, err := postgres.Open(ctx, db, opts...)
		if err != nil {
			return nil, fmt.Errorf("--db %s: %w", redact(db), err)
		}
		return s, nil
	}
	return sqlite.Open(db)
}

// isPostgres tells a PostgreSQL URL from a SQLite path.
func isPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// redact hides a password in a database URL.
func redact(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 {
		return dsn
	}
	creds := dsn[scheme+3 : at]
	if user, _, ok := strings.Cut(creds, ":"); ok {
		return dsn[:scheme+3] + user + ":***" + dsn[at:]
	}
	return dsn
}
