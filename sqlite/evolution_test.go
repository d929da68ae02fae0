package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

// openApp opens the store file as the app's own code would: another connection,
// plain SQL (closed when t ends).
func openApp(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", sqlite.DSN(path, "immediate"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// newStore opens a store in a fresh file and prepares it with the todo schema.
func newStore(t *testing.T) (*storetest.Harness, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return storetest.NewHarness(t, s), path
}

// TestRefusedRecords: a trigger of the app's that raises refuses records one by one,
// never the whole push with a 500.
func TestRefusedRecords(t *testing.T) {
	h, path := newStore(t)
	exec(t, openApp(t, path), `CREATE TRIGGER app_comment_task BEFORE INSERT ON comments
		WHEN NEW.task_id NOT IN (SELECT id FROM tasks WHERE __deleted = 0)
		BEGIN SELECT RAISE(ABORT, 'app_comment_task: comments.task_id must name a task'); END`)
	exec(t, openApp(t, path), `CREATE TRIGGER app_comment_task_upd BEFORE UPDATE OF task_id ON comments
		WHEN NEW.task_id NOT IN (SELECT id FROM tasks WHERE __deleted = 0)
		BEGIN SELECT RAISE(ABORT, 'app_comment_task: comments.task_id must name a task'); END`)
	storetest.CheckRefusedRecords(t, h, "app_comment_task")
}

// TestRefusedUnique: a unique index of the app's.
func TestRefusedUnique(t *testing.T) {
	h, path := newStore(t)
	exec(t, openApp(t, path), `CREATE UNIQUE INDEX app_project_name ON projects (name) WHERE __deleted = 0`)
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	resp := h.MustPush("alice", "a", t0, `{"projects":{"created":[{"id":"p1","name":"Home"},{"id":"p2","name":"Home"},{"id":"p3","name":"Work"}]}}`)
	if got := resp.RejectedIDs["projects"]; len(got) != 1 || got[0] != "p2" {
		t.Fatalf("rejected %v, want [p2]", resp.RejectedIDs)
	}
	if why := resp.RejectedReasons["p2"]; why != "refused by the database: UNIQUE constraint failed: projects.name" {
		t.Errorf("reason %q", why)
	}
}

// TestSchemaEvolution: type changes and dropped tables or columns that hold data are
// refused at start unless allowed; allowed, they are converted or dropped.
func TestSchemaEvolution(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	storetest.CheckSchemaEvolution(t, func() server.Store {
		s, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
