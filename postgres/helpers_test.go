package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync/postgres"
)

// testDSN returns $MELONSYNC_TEST_POSTGRES, skipping the test when it is not set.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("MELONSYNC_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("MELONSYNC_TEST_POSTGRES is not set")
	}
	return dsn
}

// newSchemaName returns a fresh PostgreSQL schema name, dropped (with everything in
// it) when t ends, so that tests never see each other's tables.
func newSchemaName(t testing.TB) string {
	t.Helper()
	dsn := testDSN(t)
	b := make([]byte, 6)
	rand.Read(b)
	name := "melon_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Logf("drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS "`+name+`" CASCADE`); err != nil {
			t.Logf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// openTestStore opens a store in a fresh schema, closed when t ends.
func openTestStore(t testing.TB, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	dsn := testDSN(t)
	name := newSchemaName(t)
	s, err := postgres.Open(context.Background(), dsn, append([]postgres.Option{postgres.WithSchema(name)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
