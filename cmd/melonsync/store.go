package main

import (
	"fmt"
	"strings"

	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
)

// openStore opens the store named by --db: a SQLite file path (the default).
func openStore(db string) (server.Store, error) {
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		return nil, fmt.Errorf("--db %s: PostgreSQL is not available in this build", redact(db))
	}
	return sqlite.Open(db)
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
