package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgDSN returns $MELONSYNC_TEST_POSTGRES with search_path set to a fresh schema
// (not created; dropped with everything in it when t ends), skipping the test when
// the variable is not set.
func pgDSN(t testing.TB) (dsn, schemaName string) {
	t.Helper()
	base := os.Getenv("MELONSYNC_TEST_POSTGRES")
	if base == "" {
		t.Skip("MELONSYNC_TEST_POSTGRES is not set")
	}
	b := make([]byte, 6)
	rand.Read(b)
	schemaName = "melon_cmd_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, base); err == nil {
			conn.Exec(ctx, `DROP SCHEMA IF EXISTS "`+schemaName+`" CASCADE`)
			conn.Close(ctx)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schemaName)
	u.RawQuery = q.Encode()
	return u.String(), schemaName
}

// pgExec runs sql on the test database (outside any store).
func pgExec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
