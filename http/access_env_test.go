package http_test

import (
	"context"
	"path/filepath"
	"testing"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// teamsSchema loads the teams example (teams, members, projects, tasks, public tags,
// private notes).
func teamsSchema(t testing.TB) *schema.Schema {
	t.Helper()
	s, err := schema.Load(filepath.Join(testutil.Root(), "examples", "teams", "schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testStores are the stores a test runs on: SQLite always, PostgreSQL when
// MELONSYNC_TEST_POSTGRES is set. open returns a fresh, empty store closed with t.
var testStores = []struct {
	name string
	open func(t *testing.T) server.Store
}{
	{"sqlite", func(t *testing.T) server.Store { return testutil.SQLiteStore(t, t.TempDir()) }},
	{"postgres", func(t *testing.T) server.Store {
		dsn := testutil.PostgresDSN(t)
		name, _ := testutil.PostgresSchema(t, dsn, "melon_http")
		s, err := postgres.Open(context.Background(), dsn, postgres.WithSchema(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// newSchemaEnv serves store prepared for sch over HTTP, as newEnv does for the todo
// schema.
func newSchemaEnv(t *testing.T, store server.Store, sch *schema.Schema) *env {
	t.Helper()
	srv := testutil.NewStoreServer(t, store, sch, mhttp.Options{})
	return &env{t: t, srv: srv.Server, auth: srv.Auth, store: store}
}
