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
	"github.com/melonsync/melonsync/sqlite"
)

// requireAccessRules skips t when this build does not apply the schema's "access"
// rules (SPEC §6) yet: a client's push to a public table must be refused.
func requireAccessRules(t testing.TB) {
	t.Helper()
	sch, err := schema.Parse([]byte(`{"version":1,"tables":[{"name":"a","columns":[]}],"access":{"tables":{"a":{"public":true}}}}`))
	if err != nil {
		t.Skip("this build does not read the schema's \"access\" object yet")
	}
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "probe.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Prepare(context.Background(), sch); err != nil {
		t.Fatal(err)
	}
	p, err := server.DecodePush(sch, []byte(`{"lastPulledAt":0,"changes":{"a":{"created":[{"id":"x"}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := server.New(store, sch).Push(context.Background(), server.Caller{User: "u"}, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.RejectedIDs["a"]) == 0 {
		t.Skip("this build does not apply the schema's \"access\" rules yet")
	}
}

// teamsSchema loads the teams example (teams, members, projects, tasks, public tags,
// private notes).
func teamsSchema(t testing.TB) *schema.Schema {
	t.Helper()
	s, err := schema.Load(filepath.Join("..", "examples", "teams", "schema.json"))
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
	{"sqlite", func(t *testing.T) server.Store {
		s, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"postgres", func(t *testing.T) server.Store {
		dsn := testutil.PostgresDSN(t)
		name, _ := testutil.PostgresSchema(t, dsn, "melon_http")
		s, err := postgres.Open(context.Background(), dsn, postgres.WithSchema(name))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// newSchemaEnv serves store prepared for sch over HTTP, as newEnv does for the todo
// schema.
func newSchemaEnv(t *testing.T, store server.Store, sch *schema.Schema) *env {
	t.Helper()
	t.Cleanup(func() { store.Close() })
	srv := testutil.NewStoreServer(t, store, sch, mhttp.Options{})
	return &env{t: t, srv: srv.Server, auth: srv.Auth, store: store}
}
