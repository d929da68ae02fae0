package postgres_test

import (
	"context"
	"os"
	"testing"

	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/postgres"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveBinary()
	os.Exit(code)
}

// testDSN returns $MELONSYNC_TEST_POSTGRES, skipping the test when it is not set.
func testDSN(t testing.TB) string { return testutil.PostgresDSN(t) }

// newSchemaName returns a fresh PostgreSQL schema name, dropped (with everything in
// it) when t ends, so that tests never see each other's tables.
func newSchemaName(t testing.TB) string {
	t.Helper()
	name, _ := testutil.PostgresSchema(t, testDSN(t), "melon_test")
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
