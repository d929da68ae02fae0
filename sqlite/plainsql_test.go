package sqlite_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

func changes(r *melonsync.PullResponse, table string) *melonsync.TableChanges {
	if c := r.Changes[table]; c != nil {
		return c
	}
	return &melonsync.TableChanges{}
}

// TestPlainSQLWrites: rows inserted, updated and deleted with plain SQL by the app's
// own code (another connection to the file) reach clients on their next pull, in
// commit order, and take part in conflict checks — as on PostgreSQL.
func TestPlainSQLWrites(t *testing.T) {
	h, path := newStore(t)
	app := openApp(t, path)

	t0 := h.PullFrom("alice", "a", 0).Timestamp
	push := h.MustPush("alice", "a", t0, `{"projects":{"created":[{"id":"p1","name":"A"},{"id":"p2","name":"B"}]}}`)
	var v, cv int64
	if err := app.QueryRow(`SELECT __version, __created_version FROM projects WHERE id = 'p1'`).Scan(&v, &cv); err != nil {
		t.Fatal(err)
	}
	if v != push.Timestamp || cv != push.Timestamp {
		t.Fatalf("pushed row has version %d/%d, push answered %d", v, cv, push.Timestamp)
	}
	t1 := h.PullFrom("alice", "a", t0).Timestamp

	exec(t, app, `INSERT INTO tasks (id, __owner, name) VALUES ('ext1', 'alice', 'from sql'), ('ext2', 'alice', 'doomed'), ('bobs', 'bob', 'not alice''s')`)
	exec(t, app, `UPDATE projects SET name = 'renamed in sql' WHERE id = 'p1'`)
	r := h.PullFrom("alice", "a", t1)
	if got := jsonOf(changes(r, "tasks").Created); got != `[{"description":null,"id":"ext1","is_done":false,"name":"from sql","position":0,"project_id":""},{"description":null,"id":"ext2","is_done":false,"name":"doomed","position":0,"project_id":""}]` {
		t.Errorf("tasks created = %s", got)
	}
	if got := jsonOf(changes(r, "projects").Updated); got != `[{"id":"p1","is_favorite":false,"name":"renamed in sql","position":0}]` {
		t.Errorf("projects updated = %s", got)
	}
	if r.Timestamp <= t1 {
		t.Errorf("timestamp did not move: %d ≤ %d", r.Timestamp, t1)
	}
	t2 := r.Timestamp

	exec(t, app, `DELETE FROM tasks WHERE id = 'ext2'`)
	r = h.PullFrom("alice", "a", t2)
	if got := jsonOf(changes(r, "tasks").Deleted); got != `["ext2"]` {
		t.Errorf("tasks deleted = %s", got)
	}
	t3 := r.Timestamp
	if got := storetest.IDs(changes(h.PullFrom("bob", "b", 0), "tasks").Created); jsonOf(got) != `["bobs"]` {
		t.Errorf("bob's tasks = %v", got)
	}
	if _, err := h.Push("alice", "a", t1, `{"projects":{"updated":[{"id":"p1","name":"mine"}]}}`); melonsync.ErrorCode(err) != melonsync.EConflict {
		t.Errorf("push over a newer SQL update: want conflict, got %v", err)
	}
	h.MustPush("alice", "a", t1, `{"projects":{"updated":[{"id":"p2","name":"B2"}]}}`)
	if _, err := h.Push("alice", "a", t3, `{"tasks":{"updated":[{"id":"ext2","name":"back"}]}}`); melonsync.ErrorCode(err) != melonsync.EConflict {
		t.Errorf("update of a record deleted with SQL: want conflict, got %v", err)
	}
	// Re-inserting a deleted id brings it back.
	exec(t, app, `INSERT INTO tasks (id, __owner, name) VALUES ('ext2', 'alice', 'back again')`)
	r = h.PullFrom("alice", "z", t3)
	if got := storetest.IDs(changes(r, "tasks").Created); jsonOf(got) != `["ext2"]` || len(changes(r, "tasks").Deleted) != 0 {
		t.Errorf("re-inserted: %s", jsonOf(changes(r, "tasks")))
	}

	// Several statements in one transaction.
	t4 := h.PullFrom("alice", "a", 0).Timestamp
	tx, err := app.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO comments (id, __owner, body) VALUES ('c1', 'alice', 'one'), ('c2', 'alice', 'two'), ('c3', 'alice', 'three')`,
		`UPDATE comments SET body = body || '!'`,
		`DELETE FROM comments WHERE id = 'c3'`,
		`UPDATE comments SET body = 'TWO' WHERE id = 'c2'`,
	} {
		if _, err := tx.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	r = h.PullFrom("alice", "a", t4)
	if got := jsonOf(changes(r, "comments")); got != `{"created":[{"body":"one!","id":"c1","task_id":""},{"body":"TWO","id":"c2","task_id":""}],"updated":[],"deleted":["c3"]}` {
		t.Errorf("comments = %s", got)
	}
	// What cannot be synced is refused.
	if _, err := app.Exec(`UPDATE comments SET id = 'c9' WHERE id = 'c1'`); err == nil || !strings.Contains(err.Error(), "cannot change") {
		t.Errorf("changing an id: want an error, got %v", err)
	}
	if _, err := app.Exec(`INSERT INTO comments (id, body) VALUES ('c8', 'no owner')`); err == nil {
		t.Errorf("insert without __owner: want an error")
	}
}

// TestPlainSQLCommitOrder: a plain-SQL transaction that commits while pulls run gets
// versions after every pull that did not see it, so the next pull gets it.
func TestPlainSQLCommitOrder(t *testing.T) {
	h, path := newStore(t)
	app := openApp(t, path)
	last := h.PullFrom("alice", "a", 0).Timestamp
	for i := 0; i < 20; i++ {
		id := "x" + string(rune('a'+i))
		exec(t, app, `INSERT INTO tasks (id, __owner, name) VALUES (?, 'alice', 'x')`, id)
		h.MustPush("alice", "b", last, `{"projects":{"created":[{"id":"p`+id+`","name":"x"}]}}`)
		r := h.PullFrom("alice", "a", last)
		if got := storetest.IDs(changes(r, "tasks").Created); jsonOf(got) != `["`+id+`"]` {
			t.Fatalf("round %d: tasks %v", i, got)
		}
		if n := len(changes(r, "projects").Created); n != 1 {
			t.Fatalf("round %d: %d projects", i, n)
		}
		last = r.Timestamp
	}
}

// TestUpgradeOldLayout: a file written before plain-SQL writes were supported (its
// __version had no default) is rebuilt once at start: records, versions and the app's
// own indexes survive, and plain-SQL inserts then work.
func TestUpgradeOldLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	app := openApp(t, path)
	for _, name := range []string{"projects", "tasks", "comments"} {
		exec(t, app, `CREATE TABLE `+name+` ("id" TEXT PRIMARY KEY NOT NULL, "__owner" TEXT NOT NULL, "__version" INTEGER NOT NULL,
			"__created_version" INTEGER NOT NULL, "__created_device" TEXT NOT NULL DEFAULT '', "__device" TEXT NOT NULL DEFAULT '',
			"__deleted" INTEGER NOT NULL DEFAULT 0)`)
	}
	exec(t, app, `ALTER TABLE projects ADD COLUMN name TEXT`)
	exec(t, app, `INSERT INTO projects VALUES ('p1', 'alice', 5, 5, 'dev', 'dev', 0, 'Old')`)
	exec(t, app, `CREATE INDEX app_projects_name ON projects (name)`)
	if _, err := app.Exec(`INSERT INTO projects (id, __owner, name) VALUES ('p2', 'alice', 'x')`); err == nil {
		t.Fatal("the old layout took a plain insert: the test does not test anything")
	}
	h := storetest.NewHarness(t, s)
	exec(t, app, `INSERT INTO projects (id, __owner, name) VALUES ('p2', 'alice', 'new')`)
	r := h.PullFrom("alice", "d", 0)
	if got := jsonOf(changes(r, "projects").Created); got != `[{"id":"p1","is_favorite":false,"name":"Old","position":0},{"id":"p2","is_favorite":false,"name":"new","position":0}]` {
		t.Errorf("after the upgrade: %s", got)
	}
	var n int
	app.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'app_projects_name'`).Scan(&n)
	if n != 1 {
		t.Errorf("the app's index was lost")
	}
	if r := h.PullFrom("alice", "dev", 5); len(changes(r, "projects").Updated)+len(changes(r, "projects").Created) != 1 {
		t.Errorf("the old record's version was not kept: %s", jsonOf(r.Changes))
	}
}

// TestPlainSQLMembership: memberships and moves written by the app's own SQL count
// as pushed ones (the access bookkeeping triggers).
func TestPlainSQLMembership(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	h := storetest.NewHarnessWith(t, s, storetest.TeamsSchema(t))
	app := openApp(t, path)
	storetest.PlainSQLAccess(t, h, func(q string) error {
		_, err := app.Exec(q)
		return err
	}, func(table string) string { return table })
}
