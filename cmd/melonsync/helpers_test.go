package main

import (
	"context"
	"database/sql"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync/sqlite"

	"github.com/melonsync/melonsync/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveBinary()
	os.Exit(code)
}

// pgDSN returns $MELONSYNC_TEST_POSTGRES with search_path set to a fresh schema
// (not created; dropped with everything in it when t ends), skipping the test when
// the variable is not set.
func pgDSN(t testing.TB) (dsn, schemaName string) {
	t.Helper()
	schemaName, dsn = testutil.PostgresSchema(t, testutil.PostgresDSN(t), "melon_cmd")
	if dsn == "" {
		t.Fatal("MELONSYNC_TEST_POSTGRES is not a postgres:// URL")
	}
	return dsn, schemaName
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

// openAppDB opens a SQLite store file as the app's own code would (plain SQL).
func openAppDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", sqlite.DSN(path, "immediate"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
