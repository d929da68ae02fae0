package postgres_test

import (
	"context"
	"testing"

	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
)

// pgExec runs plain SQL in the store's schema, as the app's own code would.
func pgExec(t *testing.T, s *postgres.Store, q string) {
	t.Helper()
	if _, err := s.Pool().Exec(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestRefusedRecords: a foreign key that the app's own SQL added refuses records one
// by one, never the whole push with a 500 — checked at once or deferred to commit.
func TestRefusedRecords(t *testing.T) {
	for _, mode := range []string{"", " DEFERRABLE INITIALLY DEFERRED"} {
		t.Run("fk"+mode, func(t *testing.T) {
			s := openTestStore(t)
			h := storetest.NewHarness(t, s)
			pgExec(t, s, `ALTER TABLE comments ADD CONSTRAINT app_comment_task FOREIGN KEY (task_id) REFERENCES tasks (id)`+mode)
			storetest.CheckRefusedRecords(t, h, "app_comment_task")
		})
	}
}

// TestRefusedUnique: a unique index of the app's.
func TestRefusedUnique(t *testing.T) {
	s := openTestStore(t)
	h := storetest.NewHarness(t, s)
	pgExec(t, s, `CREATE UNIQUE INDEX app_project_name ON projects (name)`)
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	resp := h.MustPush("alice", "a", t0, `{"projects":{"created":[{"id":"p1","name":"Home"},{"id":"p2","name":"Home"},{"id":"p3","name":"Work"}]}}`)
	if got := resp.RejectedIDs["projects"]; len(got) != 1 || got[0] != "p2" {
		t.Fatalf("rejected %v, want [p2]", resp.RejectedIDs)
	}
	if why := resp.RejectedReasons["p2"]; why != `refused by the database: duplicate key value violates unique constraint "app_project_name"` {
		t.Errorf("reason %q", why)
	}
}

// TestSchemaEvolution: type changes and dropped tables or columns that hold data are
// refused at start unless allowed; allowed, they are converted or dropped.
func TestSchemaEvolution(t *testing.T) {
	dsn := testDSN(t)
	name := newSchemaName(t)
	storetest.CheckSchemaEvolution(t, func() server.Store {
		s, err := postgres.Open(context.Background(), dsn, postgres.WithSchema(name))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
