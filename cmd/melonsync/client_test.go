package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startServe runs the serve command on 127.0.0.1:0 over a fresh SQLite file and
// returns its URL and database path; it stops when the test ends.
func startServe(t *testing.T) (url, db string) {
	t.Helper()
	return startServeWith(t, "../../examples/todo/schema.json")
}

// startServeWith is startServe with another schema file.
func startServeWith(t *testing.T, schemaPath string) (url, db string) {
	t.Helper()
	t.Setenv("MELONSYNC_JWT_SECRET", "")
	db = filepath.Join(t.TempDir(), "server.db")
	s := runServe(t, "--addr", "127.0.0.1:0", "--db", db, "--schema", schemaPath)
	return "http://" + s.addr, db
}

// cli runs "melonsync ARGS…" in-process and returns stdout and the error.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), err
}

// mustCLI is cli that fails the test on an error.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cli(t, args...)
	if err != nil {
		t.Fatalf("melonsync %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// listJSON returns the records of table in a client database.
func listJSON(t *testing.T, db, table string, extra ...string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	out := mustCLI(t, append([]string{"client", "list", table, "--db", db, "--json"}, extra...)...)
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("list --json printed %q: %v", out, err)
	}
	return recs
}

// TestClientCommands drives two client databases of one user and one of another
// user through the client commands against a real serve.
func TestClientCommands(t *testing.T) {
	url, serverDB := startServe(t)
	token := func(user string) string {
		return strings.TrimSpace(mustCLI(t, "token", "--user", user, "--db", serverDB))
	}
	alice, bob := token("alice"), token("bob")
	dir := t.TempDir()
	laptop, phone, other := filepath.Join(dir, "laptop.db"), filepath.Join(dir, "phone.db"), filepath.Join(dir, "bob.db")
	for _, db := range []string{laptop, phone, other} {
		out := mustCLI(t, "client", "init", "--db", db, "--schema", "../../examples/todo/schema.json")
		if !strings.Contains(out, "schema version 3") {
			t.Errorf("init printed %q", out)
		}
	}

	// Commands before init, and bad input, fail with a message and change nothing.
	if _, err := cli(t, "client", "list", "tasks", "--db", filepath.Join(dir, "none.db")); err == nil || !strings.Contains(err.Error(), "client init") {
		t.Errorf("list on a missing database: %v", err)
	}
	for _, args := range [][]string{
		{"create", "tasks", "nope=1"},
		{"create", "tasks", "position=abc"},
		{"create", "tasks", "is_done=maybe"},
		{"create", "nosuchtable", "name=x"},
		{"create", "tasks", "name"},
		{"update", "tasks", "missing-id", "name=x"},
		{"delete", "tasks", "missing-id"},
	} {
		if _, err := cli(t, append(append([]string{"client"}, args...), "--db", laptop)...); err == nil {
			t.Errorf("client %v succeeded", args)
		}
	}
	if n := len(listJSON(t, laptop, "tasks")); n != 0 {
		t.Fatalf("failed commands wrote %d task(s)", n)
	}

	id := strings.TrimSpace(mustCLI(t, "client", "create", "tasks", "name=Buy milk", "position=2", "--db", laptop))
	mustCLI(t, "client", "create", "projects", "name=Home", "--id", "p1", "--db", laptop)
	if recs := listJSON(t, laptop, "tasks"); len(recs) != 1 || recs[0]["id"] != id || recs[0]["_status"] != "created" || recs[0]["position"] != 2.0 {
		t.Fatalf("after create: %v", recs)
	}
	var st map[string]any
	json.Unmarshal([]byte(mustCLI(t, "client", "status", "--db", laptop, "--json")), &st)
	if st["unsyncedCount"] != 2.0 || st["lastPulledAt"] != nil {
		t.Errorf("status before sync: %v", st)
	}

	syncAs := func(db, tok string) map[string]any {
		t.Helper()
		var sum map[string]any
		out := mustCLI(t, "client", "sync", "--db", db, "--url", url, "--token", tok, "--json")
		if err := json.Unmarshal([]byte(out), &sum); err != nil || sum["ok"] != true {
			t.Fatalf("sync printed %q (%v)", out, err)
		}
		return sum
	}
	syncAs(laptop, alice)
	if recs := listJSON(t, laptop, "tasks"); recs[0]["_status"] != "synced" {
		t.Errorf("after sync the task is %v", recs[0]["_status"])
	}
	syncAs(phone, alice)
	recs := listJSON(t, phone, "tasks", "--where", "name=Buy milk")
	if len(recs) != 1 || recs[0]["id"] != id || recs[0]["position"] != 2.0 {
		t.Fatalf("phone after sync: %v", recs)
	}

	// An update on one device and a delete on the other travel both ways.
	mustCLI(t, "client", "update", "tasks", id, "is_done=true", "description=null", "--db", phone)
	syncAs(phone, alice)
	syncAs(laptop, alice)
	if recs := listJSON(t, laptop, "tasks"); len(recs) != 1 || recs[0]["is_done"] != true {
		t.Fatalf("laptop after the phone's update: %v", recs)
	}
	mustCLI(t, "client", "delete", "projects", "p1", "--db", laptop)
	if recs := listJSON(t, laptop, "projects"); len(recs) != 0 {
		t.Errorf("a deleted record is still listed: %v", recs)
	}
	syncAs(laptop, alice)
	syncAs(phone, alice)
	if recs := listJSON(t, phone, "projects"); len(recs) != 0 {
		t.Errorf("the deletion did not reach the phone: %v", recs)
	}

	// Another user sees none of it, and cannot change it.
	syncAs(other, bob)
	if recs := listJSON(t, other, "tasks"); len(recs) != 0 {
		t.Fatalf("bob pulled alice's tasks: %v", recs)
	}
	mustCLI(t, "client", "create", "tasks", "name=mine", "--id", id, "--db", other)
	sum := syncAs(other, bob)
	if b, _ := json.Marshal(sum); !strings.Contains(string(b), id) {
		t.Errorf("the summary does not list the rejected id: %s", b)
	}
	syncAs(laptop, alice)
	if recs := listJSON(t, laptop, "tasks"); len(recs) != 1 || recs[0]["name"] != "Buy milk" {
		t.Errorf("bob's push changed alice's task: %v", recs)
	}

	// A bad token fails with an auth error and no local change.
	if _, err := cli(t, "client", "sync", "--db", laptop, "--url", url, "--token", "not-a-token"); err == nil || !strings.Contains(err.Error(), "auth") {
		t.Errorf("sync with a bad token: %v", err)
	}
	out := mustCLI(t, "client", "status", "--db", laptop)
	if !strings.Contains(out, "unsynced:        none") || !strings.Contains(out, "last sync:       failed") {
		t.Errorf("status after a failed sync:\n%s", out)
	}
}

// TestClientWatch runs "client watch" and checks that a change pushed by another
// device arrives without an explicit sync.
func TestClientWatch(t *testing.T) {
	url, serverDB := startServe(t)
	tok := strings.TrimSpace(mustCLI(t, "token", "--user", "alice", "--db", serverDB))
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	for _, db := range []string{a, b} {
		mustCLI(t, "client", "init", "--db", db, "--schema", "../../examples/todo/schema.json")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out := &syncWriter{w: &bytes.Buffer{}}
	go func() {
		done <- run(ctx, []string{"client", "watch", "--db", a, "--url", url, "--token", tok, "--interval", "1h", "--debounce", "50ms"}, out, &bytes.Buffer{})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("watch: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("watch did not stop")
		}
	}()
	// Whether the change commits before the watcher connects or after, the event
	// stream tells it (the "ready" event carries the current timestamp).
	id := strings.TrimSpace(mustCLI(t, "client", "create", "tasks", "name=from b", "--db", b))
	mustCLI(t, "client", "sync", "--db", b, "--url", url, "--token", tok)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if recs := watchList(t, a); len(recs) == 1 && recs[0]["id"] == id {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watched database never got the record; watch printed:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// watchList lists tasks while another goroutine holds the database open; a busy
// database is retried by the caller's loop.
func watchList(t *testing.T, db string) []map[string]any {
	out, err := cli(t, "client", "list", "tasks", "--db", db, "--json")
	if err != nil {
		return nil
	}
	var recs []map[string]any
	json.Unmarshal([]byte(out), &recs)
	return recs
}

// syncWriter is a writer safe to read from another goroutine.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}
