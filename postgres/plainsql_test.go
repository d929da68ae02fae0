package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
)

// plainConn returns a connection with the server's default search_path (not the
// store's schema), as the team's own code would have: triggers must work from there.
func plainConn(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func sqlExec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func changes(r *melonsync.PullResponse, table string) *melonsync.TableChanges {
	if c := r.Changes[table]; c != nil {
		return c
	}
	return &melonsync.TableChanges{}
}

// TestPlainSQLWrites: rows inserted, updated and deleted with plain SQL by other code
// reach clients on their next pull, get versions in commit order, and take part in
// conflict checks; melonsync's own writes are stamped once.
func TestPlainSQLWrites(t *testing.T) {
	s := openTestStore(t)
	h := storetest.NewHarness(t, s)
	sch := `"` + s.SchemaName() + `".`
	conn := plainConn(t)
	ctx := context.Background()

	t0 := h.PullFrom("alice", "a", 0).Timestamp
	push := h.MustPush("alice", "a", t0, `{"projects":{"created":[{"id":"p1","name":"A"},{"id":"p2","name":"B"}]}}`)
	// melonsync's own write carries exactly the push's version, set once.
	var v, cv int64
	if err := conn.QueryRow(ctx, `SELECT __version, __created_version FROM `+sch+`projects WHERE id = 'p1'`).Scan(&v, &cv); err != nil {
		t.Fatal(err)
	}
	if v != push.Timestamp || cv != push.Timestamp {
		t.Fatalf("pushed row has version %d/%d, push answered %d", v, cv, push.Timestamp)
	}
	t1 := h.PullFrom("alice", "a", t0).Timestamp

	// Insert (leaving out every column but the name: defaults apply), update, delete.
	sqlExec(t, conn, `INSERT INTO `+sch+`tasks (id, __owner, name) VALUES ('ext1', 'alice', 'from sql'), ('ext2', 'alice', 'doomed'), ('bobs', 'bob', 'not alice''s')`)
	sqlExec(t, conn, `UPDATE `+sch+`projects SET name = 'renamed in sql' WHERE id = 'p1'`)
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

	// A plain DELETE leaves a tombstone; the table itself holds only live rows.
	sqlExec(t, conn, `DELETE FROM `+sch+`tasks WHERE id = 'ext2'`)
	r = h.PullFrom("alice", "a", t2)
	if got := jsonOf(changes(r, "tasks").Deleted); got != `["ext2"]` {
		t.Errorf("tasks deleted = %s", got)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+sch+`tasks WHERE id = 'ext2'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("deleted row still in the table (%d, %v)", n, err)
	}
	t3 := r.Timestamp

	// Bob sees his row, alice never does.
	if got := storetest.IDs(changes(h.PullFrom("bob", "b", 0), "tasks").Created); jsonOf(got) != `["bobs"]` {
		t.Errorf("bob's tasks = %v", got)
	}

	// The SQL update of p1 happened after t1: a push based on t1 conflicts; p2 was
	// not touched and may be updated.
	if _, err := h.Push("alice", "a", t1, `{"projects":{"updated":[{"id":"p1","name":"mine"}]}}`); melonsync.ErrorCode(err) != melonsync.EConflict {
		t.Errorf("push over a newer SQL update: want conflict, got %v", err)
	}
	h.MustPush("alice", "a", t1, `{"projects":{"updated":[{"id":"p2","name":"B2"}]}}`)
	// Updating a record deleted with SQL conflicts (the client must pull the deletion).
	if _, err := h.Push("alice", "a", t3, `{"tasks":{"updated":[{"id":"ext2","name":"back"}]}}`); melonsync.ErrorCode(err) != melonsync.EConflict {
		t.Errorf("update of a record deleted with SQL: want conflict, got %v", err)
	}

	// Re-inserting a deleted id with SQL brings it back (and removes the tombstone).
	sqlExec(t, conn, `INSERT INTO `+sch+`tasks (id, __owner, name) VALUES ('ext2', 'alice', 'back again')`)
	r = h.PullFrom("alice", "z", t3)
	if got := storetest.IDs(changes(r, "tasks").Created); jsonOf(got) != `["ext2"]` {
		t.Errorf("re-inserted: created = %v", got)
	}
	if len(changes(r, "tasks").Deleted) != 0 {
		t.Errorf("re-inserted record still listed as deleted")
	}

	// The same through several statements in one transaction, including a row
	// inserted then updated then deleted, and one inserted and deleted.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t4 := h.PullFrom("alice", "a", 0).Timestamp
	for _, q := range []string{
		`INSERT INTO ` + sch + `comments (id, __owner, body) VALUES ('c1', 'alice', 'one'), ('c2', 'alice', 'two'), ('c3', 'alice', 'three')`,
		`UPDATE ` + sch + `comments SET body = body || '!'`,
		`DELETE FROM ` + sch + `comments WHERE id = 'c3'`,
		`UPDATE ` + sch + `comments SET body = 'TWO' WHERE id = 'c2'`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r = h.PullFrom("alice", "a", t4)
	if got := jsonOf(changes(r, "comments")); got != `{"created":[{"body":"one!","id":"c1","task_id":""},{"body":"TWO","id":"c2","task_id":""}],"updated":[],"deleted":["c3"]}` {
		t.Errorf("comments = %s", got)
	}
	// One transaction, one version, stamped at commit.
	if err := conn.QueryRow(ctx, `SELECT count(DISTINCT v) FROM (SELECT __version AS v FROM `+sch+`comments UNION ALL SELECT version FROM `+sch+`__melon_tombstones WHERE tbl = 'comments') x`).Scan(&n); err != nil || n != 1 {
		t.Errorf("one external transaction got %d versions (%v)", n, err)
	}

	// What cannot be synced is refused.
	if _, err := conn.Exec(ctx, `TRUNCATE `+sch+`comments`); err == nil || !strings.Contains(err.Error(), "TRUNCATE") {
		t.Errorf("TRUNCATE: want an error, got %v", err)
	}
	if _, err := conn.Exec(ctx, `UPDATE `+sch+`comments SET id = 'c9' WHERE id = 'c1'`); err == nil {
		t.Errorf("changing an id: want an error")
	}
	if _, err := conn.Exec(ctx, `INSERT INTO `+sch+`comments (id, body) VALUES ('c8', 'no owner')`); err == nil {
		t.Errorf("insert without __owner: want an error")
	}
}

// TestPlainSQLCommitOrder: an external transaction that wrote early but commits late
// gets a version after every pull that did not see it, so nothing is missed; the same
// in REPEATABLE READ and SERIALIZABLE transactions, which the clock must not break.
func TestPlainSQLCommitOrder(t *testing.T) {
	s := openTestStore(t)
	h := storetest.NewHarness(t, s)
	sch := `"` + s.SchemaName() + `".`
	ctx := context.Background()
	for _, iso := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.RepeatableRead, pgx.Serializable} {
		t.Run(string(iso), func(t *testing.T) {
			conn := plainConn(t)
			last := h.PullFrom("alice", "a", 0).Timestamp
			id := "late_" + strings.ReplaceAll(string(iso), " ", "_")
			tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: iso})
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, `INSERT INTO `+sch+`tasks (id, __owner, name) VALUES ($1, 'alice', 'late')`, id); err != nil {
				t.Fatal(err)
			}
			// Meanwhile melonsync commits pushes and a client pulls past them.
			for i := 0; i < 3; i++ {
				h.MustPush("alice", "b", last, `{"projects":{"created":[{"id":"`+id+`_`+string(rune('a'+i))+`","name":"x"}]}}`)
			}
			r := h.PullFrom("alice", "a", last)
			if n := len(changes(r, "projects").Created); n != 3 {
				t.Fatalf("pull saw %d of 3 pushes", n)
			}
			for _, rec := range changes(r, "tasks").Created {
				t.Fatalf("pull saw an uncommitted row %v", rec["id"])
			}
			last = r.Timestamp
			if err := tx.Commit(ctx); err != nil {
				t.Fatalf("commit: %v", err)
			}
			r = h.PullFrom("alice", "a", last)
			if got := storetest.IDs(changes(r, "tasks").Created); jsonOf(got) != `["`+id+`"]` {
				t.Fatalf("after the late commit, a pull from %d got tasks %v", last, got)
			}
		})
	}
}

// TestWatch: Watch reports commits of melonsync's pushes and of plain SQL.
func TestWatch(t *testing.T) {
	defer postgres.SetWatchPing(100 * time.Millisecond)()
	s := openTestStore(t)
	h := storetest.NewHarness(t, s)
	sch := `"` + s.SchemaName() + `".`
	ctx, cancel := context.WithCancel(context.Background())
	type event struct {
		user   string
		v      int64
		device string
	}
	events := make(chan event, 100)
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- s.Watch(ctx, func(ch server.Change) {
			if ch.User != "" {
				events <- event{ch.User, ch.Version, ch.Device}
			}
		})
	}()
	defer cancel()
	wait := func(what, user string) int64 {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case e := <-events:
				if e.user == user {
					if e.device != "" {
						t.Errorf("%s: a plain SQL write was announced with device %q", what, e.device)
					}
					return e.v
				}
			case <-timeout:
				t.Fatalf("%s: no notification for %s", what, user)
			}
		}
	}
	// The listener may not be listening yet: push until it reports.
	deadline := time.Now().Add(5 * time.Second)
	var got int64
	for got == 0 && time.Now().Before(deadline) {
		resp := h.MustPush("alice", "a", 0, `{"projects":{"created":[{"id":"w1","name":"x"}]}}`)
		select {
		case e := <-events:
			if e.user == "alice" && e.v == resp.Timestamp {
				got = e.v
				if e.device != "a" {
					t.Errorf("a push by device a was announced with device %q", e.device)
				}
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
	if got == 0 {
		t.Fatal("no notification for a push")
	}
	conn := plainConn(t)
	sqlExec(t, conn, `INSERT INTO `+sch+`tasks (id, __owner, name) VALUES ('w2', 'carol', 'x')`)
	if v := wait("plain insert", "carol"); v <= got {
		t.Errorf("plain insert notified version %d ≤ %d", v, got)
	}
	sqlExec(t, conn, `DELETE FROM `+sch+`tasks WHERE id = 'w2'`)
	wait("plain delete", "carol")
	// Idle for a few connection checks, it still listens.
	time.Sleep(350 * time.Millisecond)
	sqlExec(t, conn, `INSERT INTO `+sch+`tasks (id, __owner, name) VALUES ('w3', 'dave', 'x')`)
	wait("insert after idling", "dave")
	// A lost connection ends Watch with an unavailable error (the caller re-watches).
	var inst string
	if err := conn.QueryRow(context.Background(), `SELECT value FROM `+sch+`__melon_meta WHERE key = 'instance'`).Scan(&inst); err != nil {
		t.Fatal(err)
	}
	var killed int
	if err := conn.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, `melonsync watch `+inst).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listeners (%v)", killed, err)
	}
	select {
	case err := <-watchErr:
		if !errors.Is(err, melonsync.ErrUnavailable) {
			t.Errorf("watch after its connection was killed: %v, want unavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("watch did not notice its connection was killed")
	}
	// Watch ends with nil when its context does.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel2() }()
	if err := s.Watch(ctx2, func(server.Change) {}); err != nil {
		t.Errorf("watch ended by its context: %v", err)
	}
}

// TestPrepareTwice: a second Prepare (another process starting, or a restart) changes
// nothing and adds what a newer schema has.
func TestPrepareTwice(t *testing.T) {
	s := openTestStore(t)
	h := storetest.NewHarness(t, s)
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, `{"projects":{"created":[{"id":"p1","name":"A"}]}}`)
	s2, err := postgres.Open(context.Background(), testDSN(t), postgres.WithSchema(s.SchemaName()))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Prepare(context.Background(), storetest.TodoSchema(t)); err != nil {
		t.Fatal(err)
	}
	h2 := storetest.NewHarness(t, s2)
	if got := storetest.IDs(changes(h2.PullFrom("alice", "z", 0), "projects").Created); jsonOf(got) != `["p1"]` {
		t.Errorf("second store sees %v", got)
	}
	a, _ := s.Secret(context.Background())
	b, _ := s2.Secret(context.Background())
	if string(a) != string(b) || len(a) == 0 {
		t.Errorf("two processes have different secrets")
	}
}

// TestPlainSQLOtherRole: the team's code may use a role with rights on the synced
// tables only; the triggers need nothing more.
func TestPlainSQLOtherRole(t *testing.T) {
	s := openTestStore(t)
	h := storetest.NewHarness(t, s)
	ctx := context.Background()
	admin := plainConn(t)
	role := s.SchemaName() + "_writer"
	if _, err := admin.Exec(ctx, `CREATE ROLE `+role+` LOGIN`); err != nil {
		t.Skipf("cannot create a role here: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testDSN(t))
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), `DROP OWNED BY `+role)
		c.Exec(context.Background(), `DROP ROLE `+role)
	})
	sch := `"` + s.SchemaName() + `"`
	sqlExec(t, admin, `GRANT USAGE ON SCHEMA `+sch+` TO `+role)
	sqlExec(t, admin, `GRANT SELECT, INSERT, UPDATE, DELETE ON `+sch+`.tasks TO `+role)
	cfg, err := pgx.ParseConfig(testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role
	cfg.Password = ""
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Skipf("cannot log in as a new role here: %v", err)
	}
	defer conn.Close(ctx)
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	sqlExec(t, conn, `INSERT INTO `+sch+`.tasks (id, __owner, name) VALUES ('r1', 'alice', 'x'), ('r2', 'alice', 'y')`)
	sqlExec(t, conn, `DELETE FROM `+sch+`.tasks WHERE id = 'r2'`)
	r := h.PullFrom("alice", "a", t0)
	if got := jsonOf(changes(r, "tasks")); got != `{"created":[{"description":null,"id":"r1","is_done":false,"name":"x","position":0,"project_id":""}],"updated":[],"deleted":["r2"]}` {
		t.Errorf("tasks = %s", got)
	}
	// And it cannot touch melonsync's own tables.
	if _, err := conn.Exec(ctx, `DELETE FROM `+sch+`.__melon_tombstones`); err == nil {
		t.Errorf("the writer role could delete tombstones")
	}
	if _, err := conn.Exec(ctx, `SELECT `+sch+`.__melon_version('x', 'y')`); err == nil {
		t.Errorf("the writer role could call __melon_version")
	}
}

// TestCascade: a foreign key with ON DELETE CASCADE between synced tables, added by
// the team: a push that deletes the parent deletes the children, and apps learn both.
func TestCascade(t *testing.T) {
	s := openTestStore(t)
	h := storetest.NewHarness(t, s)
	conn := plainConn(t)
	sch := `"` + s.SchemaName() + `".`
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, `{"tasks":{"created":[{"id":"t1","name":"x"}]},"comments":{"created":[{"id":"c1","task_id":"t1","body":"b"},{"id":"c2","task_id":"t1","body":"b"}]}}`)
	sqlExec(t, conn, `ALTER TABLE `+sch+`comments ADD FOREIGN KEY (task_id) REFERENCES `+sch+`tasks (id) ON DELETE CASCADE`)
	t1 := h.PullFrom("alice", "a", t0).Timestamp
	resp := h.MustPush("alice", "a", t1, `{"tasks":{"deleted":["t1"]}}`)
	r := h.PullFrom("alice", "b", t1)
	if got := jsonOf(changes(r, "comments").Deleted); got != `["c1","c2"]` && got != `["c2","c1"]` {
		t.Errorf("comments deleted = %s", got)
	}
	if got := jsonOf(changes(r, "tasks").Deleted); got != `["t1"]` {
		t.Errorf("tasks deleted = %s", got)
	}
	var v int64
	if err := conn.QueryRow(context.Background(), `SELECT max(version) FROM `+sch+`__melon_tombstones WHERE tbl = 'comments'`).Scan(&v); err != nil || v != resp.Timestamp {
		t.Errorf("cascaded tombstones have version %d, the push %d (%v)", v, resp.Timestamp, err)
	}
}

// TestPrepareForeignTable: a table of that name that melonsync did not create is an
// error naming it, not a silent half-synced table.
func TestPrepareForeignTable(t *testing.T) {
	s := openTestStore(t)
	conn := plainConn(t)
	sqlExec(t, conn, `CREATE TABLE "`+s.SchemaName()+`".tasks (id text PRIMARY KEY, name text)`)
	err := s.Prepare(context.Background(), storetest.TodoSchema(t))
	if err == nil || !strings.Contains(err.Error(), "tasks") || !strings.Contains(err.Error(), "__owner") {
		t.Errorf("prepare over a foreign table: %v", err)
	}
}
