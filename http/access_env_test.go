package http_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	mhttp "github.com/melonsync/melonsync/http"
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
		dsn := os.Getenv("MELONSYNC_TEST_POSTGRES")
		if dsn == "" {
			t.Skip("MELONSYNC_TEST_POSTGRES is not set")
		}
		b := make([]byte, 6)
		rand.Read(b)
		name := "melon_http_" + hex.EncodeToString(b)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if conn, err := pgx.Connect(ctx, dsn); err == nil {
				conn.Exec(ctx, `DROP SCHEMA IF EXISTS "`+name+`" CASCADE`)
				conn.Close(ctx)
			}
		})
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
	if err := store.Prepare(context.Background(), sch); err != nil {
		store.Close()
		t.Fatal(err)
	}
	auth, err := mhttp.NewAuth(secret)
	if err != nil {
		t.Fatal(err)
	}
	h := mhttp.NewHandler(server.New(store, sch), mhttp.Options{Auth: auth})
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
		store.Close()
	})
	return &env{t: t, srv: srv, auth: auth, store: store}
}
