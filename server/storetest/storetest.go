// Package storetest is the conformance suite every server.Store passes: the sync
// protocol's rules (SPEC §3) checked through server.Service on a real store.
//
// A store package calls Run from its tests with a function that returns a fresh,
// empty store; the suite prepares it with the todo example schema.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// Run runs the conformance suite. newStore returns a fresh, empty, unprepared store
// (the suite closes it).
func Run(t *testing.T, newStore func(t *testing.T) server.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h *Harness)
	}{
		{"FirstSyncAllCreated", testFirstSync},
		{"CreatedVsUpdated", testCreatedVsUpdated},
		{"UpdateKeepsMissingColumns", testUpdateKeepsMissingColumns},
		{"DeleteTombstones", testDelete},
		{"Conflicts", testConflicts},
		{"ConflictAbortsWholePush", testConflictAtomic},
		{"RetriedPushSameDevice", testRetriedPush},
		{"CreateExistingUpdates", testCreateExisting},
		{"UpdatedMissingCreates", testUpdatedMissing},
		{"DeletedThenCreated", testDeletedThenCreated},
		{"OtherUsersRecords", testOtherUsers},
		{"SchemaVersionFilter", testSchemaVersion},
		{"MigrationSync", testMigrationSync},
		{"Replacement", testReplacement},
		{"Sanitize", testSanitize},
		{"SendCreatedAsUpdated", testCreatedAsUpdated},
		{"Timestamps", testTimestamps},
		{"SecretIsStable", testSecret},
		{"ConcurrentPushPull", testConcurrent},
		{"SchemaVersionAhead", testSchemaAhead},
		{"PushAboveClock", testPushAboveClock},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHarness(t, newStore(t))
			tc.fn(t, h)
		})
	}
	for _, tc := range accessTests {
		t.Run("Access/"+tc.name, func(t *testing.T) {
			h := NewHarnessWith(t, newStore(t), TeamsSchema(t))
			tc.fn(t, h)
		})
	}
	runPolicies(t, newStore)
	runPaging(t, newStore)
}

// Harness drives a Service in tests.
type Harness struct {
	T      testing.TB
	Svc    *server.Service
	Store  server.Store
	Schema *schema.Schema
}

// TodoSchema loads the todo example schema (version 3, with migrations).
func TodoSchema(t testing.TB) *schema.Schema {
	_, file, _, _ := runtime.Caller(0)
	s, err := schema.Load(filepath.Join(filepath.Dir(file), "..", "..", "examples", "todo", "schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// NewHarness prepares store with the todo schema and closes it when t ends.
func NewHarness(t testing.TB, store server.Store) *Harness {
	s := TodoSchema(t)
	if err := store.Prepare(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &Harness{T: t, Svc: server.New(store, s), Store: store, Schema: s}
}

// Push pushes changes (JSON) as user/device with lastPulledAt.
func (h *Harness) Push(user, device string, lastPulledAt int64, changes string) (*melonsync.PushResponse, error) {
	h.T.Helper()
	p, err := server.DecodePush(h.Schema, []byte(fmt.Sprintf(`{"lastPulledAt":%d,"changes":%s}`, lastPulledAt, changes)))
	if err != nil {
		return nil, err
	}
	return h.Svc.Push(context.Background(), server.Caller{User: user, Device: device}, p)
}

// MustPush pushes and fails the test on error.
func (h *Harness) MustPush(user, device string, lastPulledAt int64, changes string) *melonsync.PushResponse {
	h.T.Helper()
	r, err := h.Push(user, device, lastPulledAt, changes)
	if err != nil {
		h.T.Fatalf("push: %v", err)
	}
	return r
}

// Pull pulls as caller with params and decodes the answer.
func (h *Harness) Pull(c server.Caller, p server.PullParams) *melonsync.PullResponse {
	h.T.Helper()
	var buf bytes.Buffer
	if err := h.Svc.Pull(context.Background(), c, p, &buf); err != nil {
		h.T.Fatalf("pull: %v", err)
	}
	var resp melonsync.PullResponse
	if err := json.Unmarshal(buf.Bytes(), &resp); err != nil {
		h.T.Fatalf("pull answer is not JSON: %v\n%s", err, buf.String())
	}
	return &resp
}

// PullFrom pulls as user/device since lastPulledAt at the current schema version.
func (h *Harness) PullFrom(user, device string, lastPulledAt int64) *melonsync.PullResponse {
	h.T.Helper()
	return h.Pull(server.Caller{User: user, Device: device}, server.PullParams{LastPulledAt: lastPulledAt})
}

// IDs returns the sorted ids of records.
func IDs(recs []melonsync.RawRecord) []string {
	out := []string{}
	for _, r := range recs {
		out = append(out, r["id"].(string))
	}
	sort.Strings(out)
	return out
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("%s = %s, want %s", what, g, w)
	}
}

func tc(resp *melonsync.PullResponse, table string) *melonsync.TableChanges {
	if c := resp.Changes[table]; c != nil {
		return c
	}
	return &melonsync.TableChanges{}
}

func code(err error) string { return melonsync.ErrorCode(err) }

const proj = `{"projects":{"created":[%s],"updated":[%s],"deleted":[%s]}}`

func projects(created, updated, deleted string) string {
	return fmt.Sprintf(proj, created, updated, deleted)
}

func testFirstSync(t *testing.T, h *Harness) {
	empty := h.PullFrom("alice", "d1", 0)
	if empty.Timestamp <= 0 || empty.Timestamp >= 1<<53 {
		t.Fatalf("timestamp %d out of range", empty.Timestamp)
	}
	for _, name := range []string{"projects", "tasks", "comments"} {
		if empty.Changes[name] == nil {
			t.Errorf("table %s missing from the answer", name)
		}
	}
	h.MustPush("alice", "d1", empty.Timestamp, projects(`{"id":"p1","name":"A"},{"id":"p2","name":"B"}`, "", ""))
	h.MustPush("alice", "d1", empty.Timestamp, `{"tasks":{"created":[{"id":"t1","project_id":"p1","name":"x"}]}}`)
	first := h.PullFrom("alice", "d2", 0)
	eq(t, "projects created", IDs(tc(first, "projects").Created), []string{"p1", "p2"})
	eq(t, "tasks created", IDs(tc(first, "tasks").Created), []string{"t1"})
	eq(t, "projects updated", IDs(tc(first, "projects").Updated), []string{})
	if len(tc(first, "projects").Deleted) != 0 {
		t.Errorf("first sync lists deletions")
	}
	// Same device, first sync: still created (lastPulledAt null or 0).
	again := h.PullFrom("alice", "d1", 0)
	eq(t, "own first sync", IDs(tc(again, "projects").Created), []string{"p1", "p2"})
	// Records carry exactly the schema columns.
	rec := tc(first, "tasks").Created[0]
	eq(t, "task record", rec, map[string]any{"id": "t1", "project_id": "p1", "name": "x", "is_done": false, "position": 0, "description": nil})
}

func testCreatedVsUpdated(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "d1", 0).Timestamp
	h.MustPush("alice", "d1", t0, projects(`{"id":"old","name":"A"}`, "", ""))
	t1 := h.PullFrom("alice", "d1", t0).Timestamp
	h.MustPush("alice", "d1", t1, projects(`{"id":"mine","name":"B"}`, `{"id":"old","name":"A2"}`, ""))
	h.MustPush("alice", "d2", t1, projects(`{"id":"theirs","name":"C"}`, "", ""))

	// Device d1 pulls since t1: its own creation is updated, d2's is created.
	r := h.PullFrom("alice", "d1", t1)
	eq(t, "d1 created", IDs(tc(r, "projects").Created), []string{"theirs"})
	eq(t, "d1 updated", IDs(tc(r, "projects").Updated), []string{"mine", "old"})
	// Device d3 sees both new records as created, old as updated.
	r = h.PullFrom("alice", "d3", t1)
	eq(t, "d3 created", IDs(tc(r, "projects").Created), []string{"mine", "theirs"})
	eq(t, "d3 updated", IDs(tc(r, "projects").Updated), []string{"old"})
	// No device header: the user created them all, so all are updated.
	r = h.PullFrom("alice", "", t1)
	eq(t, "no-device created", IDs(tc(r, "projects").Created), []string{})
	eq(t, "no-device updated", IDs(tc(r, "projects").Updated), []string{"mine", "old", "theirs"})
}

func testUpdateKeepsMissingColumns(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "d1", 0).Timestamp
	h.MustPush("alice", "d1", t0, `{"tasks":{"created":[{"id":"t1","project_id":"p1","name":"x","position":3,"description":"keep"}]}}`)
	t1 := h.PullFrom("alice", "d1", t0).Timestamp
	// An older client that does not know "description" and "position".
	h.MustPush("alice", "d1", t1, `{"tasks":{"updated":[{"id":"t1","name":"y","is_done":true,"_status":"updated","_changed":"name,is_done","unknown_col":5}]}}`)
	r := h.PullFrom("alice", "d2", 0)
	eq(t, "merged", tc(r, "tasks").Created[0], map[string]any{"id": "t1", "project_id": "p1", "name": "y", "is_done": true, "position": 3, "description": "keep"})
}

func testDelete(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "d1", 0).Timestamp
	h.MustPush("alice", "d1", t0, projects(`{"id":"p1","name":"A"},{"id":"p2","name":"B"}`, "", ""))
	t1 := h.PullFrom("alice", "d1", t0).Timestamp
	h.MustPush("alice", "d1", t1, projects("", "", `"p1","nope"`))
	r := h.PullFrom("alice", "d2", t1)
	eq(t, "deleted", tc(r, "projects").Deleted, []string{"p1"})
	eq(t, "not listed as changed", IDs(tc(r, "projects").Updated), []string{})
	// A first sync never sees tombstones.
	r = h.PullFrom("alice", "d2", 0)
	eq(t, "first sync after delete", IDs(tc(r, "projects").Created), []string{"p2"})
	// Deleting again, or deleting a missing id, is ignored.
	t2 := r.Timestamp
	if _, err := h.Push("alice", "d1", t1, projects("", "", `"p1"`)); err != nil {
		t.Errorf("re-delete: %v", err)
	}
	if _, err := h.Push("alice", "d1", t2, projects("", "", `"never"`)); err != nil {
		t.Errorf("delete missing: %v", err)
	}
}

func testConflicts(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, projects(`{"id":"p1","name":"A"},{"id":"p2","name":"B"},{"id":"p3","name":"C"}`, "", ""))
	t1 := h.PullFrom("alice", "a", t0).Timestamp
	h.MustPush("alice", "b", t1, projects("", `{"id":"p1","name":"by b"},{"id":"p2","name":"by b"}`, `"p3"`))
	// Device a pushes changes to all three based on t1: every one conflicts.
	_, err := h.Push("alice", "a", t1, projects("", `{"id":"p1","name":"by a"},{"id":"p3","name":"by a"}`, `"p2"`))
	if code(err) != melonsync.EConflict {
		t.Fatalf("want conflict, got %v", err)
	}
	var me *melonsync.Error
	errors.As(err, &me)
	conf := me.Details["conflicts"].(map[string][]string)["projects"]
	sort.Strings(conf)
	eq(t, "conflicting ids", conf, []string{"p1", "p2", "p3"})
	// After pulling, the same push goes through (p3 stays deleted: update of a
	// deleted record conflicts even then).
	t2 := h.PullFrom("alice", "a", t1).Timestamp
	if _, err := h.Push("alice", "a", t2, projects("", `{"id":"p3","name":"by a"}`, "")); code(err) != melonsync.EConflict {
		t.Errorf("update of a deleted record: want conflict, got %v", err)
	}
	h.MustPush("alice", "a", t2, projects("", `{"id":"p1","name":"by a"}`, `"p2"`))
	r := h.PullFrom("alice", "c", 0)
	eq(t, "final", tc(r, "projects").Created, []map[string]any{{"id": "p1", "name": "by a", "is_favorite": false, "position": 0}})
}

func testConflictAtomic(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, projects(`{"id":"p1","name":"A"}`, "", ""))
	t1 := h.PullFrom("alice", "a", t0).Timestamp
	h.MustPush("alice", "b", t1, projects("", `{"id":"p1","name":"B"}`, ""))
	before := h.PullFrom("alice", "z", 0)
	_, err := h.Push("alice", "a", t1, `{"projects":{"created":[{"id":"new1","name":"N"}],"updated":[{"id":"p1","name":"A2"}]},"tasks":{"created":[{"id":"t9","name":"T"}]}}`)
	if code(err) != melonsync.EConflict {
		t.Fatalf("want conflict, got %v", err)
	}
	after := h.PullFrom("alice", "z", 0)
	if after.Timestamp != before.Timestamp {
		t.Errorf("a refused push moved the clock: %d → %d", before.Timestamp, after.Timestamp)
	}
	eq(t, "projects unchanged", tc(after, "projects").Created, tc(before, "projects").Created)
	eq(t, "tasks unchanged", IDs(tc(after, "tasks").Created), []string{})
}

func testRetriedPush(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	push := projects(`{"id":"p1","name":"A"}`, `{"id":"p0","name":"Z"}`, "")
	h.MustPush("alice", "a", t0, push)
	// The answer was lost; the device retries the same push: not a conflict.
	if _, err := h.Push("alice", "a", t0, push); err != nil {
		t.Errorf("retried push from the same device: %v", err)
	}
	// Another device, or no device, conflicts.
	if _, err := h.Push("alice", "b", t0, push); code(err) != melonsync.EConflict {
		t.Errorf("other device: want conflict, got %v", err)
	}
	if _, err := h.Push("alice", "", t0, push); code(err) != melonsync.EConflict {
		t.Errorf("no device: want conflict, got %v", err)
	}
}

func testCreateExisting(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, projects(`{"id":"p1","name":"A","position":1}`, "", ""))
	t1 := h.PullFrom("alice", "a", t0).Timestamp
	h.MustPush("alice", "b", t1, projects(`{"id":"p1","name":"again"}`, "", ""))
	r := h.PullFrom("alice", "c", 0)
	eq(t, "created again = updated", tc(r, "projects").Created, []map[string]any{{"id": "p1", "name": "again", "is_favorite": false, "position": 1}})
}

func testUpdatedMissing(t *testing.T, h *Harness) {
	// A client with a newer schema lists its new (empty) tables: ignored.
	if _, err := h.Push("alice", "a", 0, `{"tags":{"created":[],"updated":[],"deleted":[]}}`); err != nil {
		t.Errorf("empty unknown table: %v", err)
	}
	if _, err := h.Push("alice", "a", 0, `{"tags":{"created":[{"id":"x"}]}}`); code(err) != melonsync.EInvalid {
		t.Errorf("records in an unknown table: want invalid_request, got %v", err)
	}
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, projects("", `{"id":"ghost","name":"G"}`, ""))
	r := h.PullFrom("alice", "c", 0)
	eq(t, "updated missing = created", IDs(tc(r, "projects").Created), []string{"ghost"})
}

func testDeletedThenCreated(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, projects(`{"id":"p1","name":"A"}`, "", ""))
	t1 := h.PullFrom("alice", "a", t0).Timestamp
	h.MustPush("alice", "a", t1, projects("", "", `"p1"`))
	// Device b has not seen the deletion: creating p1 conflicts.
	if _, err := h.Push("alice", "b", t1, projects(`{"id":"p1","name":"B"}`, "", "")); code(err) != melonsync.EConflict {
		t.Errorf("create over an unseen deletion: want conflict, got %v", err)
	}
	// After pulling the deletion, creating it again is allowed.
	t2 := h.PullFrom("alice", "b", t1).Timestamp
	h.MustPush("alice", "b", t2, projects(`{"id":"p1","name":"B"}`, "", ""))
	r := h.PullFrom("alice", "a", t2)
	eq(t, "re-created", IDs(tc(r, "projects").Created), []string{"p1"})
}

func testOtherUsers(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, projects(`{"id":"secret","name":"alice's secret"},{"id":"s2","name":"x"},{"id":"s3","name":"y"}`, "", ""))
	tb := h.PullFrom("bob", "b", 0)
	if len(tc(tb, "projects").Created) != 0 {
		t.Fatalf("bob sees alice's records: %v", tc(tb, "projects").Created)
	}
	resp, err := h.Push("bob", "b", tb.Timestamp, projects(`{"id":"secret","name":"bob was here"},{"id":"bobs","name":"mine"}`, `{"id":"s2","name":"bob"}`, `"s3"`))
	if err != nil {
		t.Fatalf("push with foreign ids must succeed for the rest: %v", err)
	}
	rej := resp.RejectedIDs["projects"]
	sort.Strings(rej)
	eq(t, "rejected", rej, []string{"s2", "s3", "secret"})
	ra := h.PullFrom("alice", "z", 0)
	eq(t, "alice's data untouched", tc(ra, "projects").Created, []map[string]any{
		{"id": "secret", "name": "alice's secret", "is_favorite": false, "position": 0},
		{"id": "s2", "name": "x", "is_favorite": false, "position": 0},
		{"id": "s3", "name": "y", "is_favorite": false, "position": 0},
	})
	rb := h.PullFrom("bob", "z", 0)
	eq(t, "bob's", IDs(tc(rb, "projects").Created), []string{"bobs"})
	// Incremental pulls do not leak either.
	rb = h.PullFrom("bob", "b", tb.Timestamp)
	eq(t, "bob's incremental", IDs(append(tc(rb, "projects").Created, tc(rb, "projects").Updated...)), []string{"bobs"})
}

func testSchemaVersion(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, `{"tasks":{"created":[{"id":"t1","name":"x","description":"d"}]},"comments":{"created":[{"id":"c1","body":"b"}]}}`)
	r := h.Pull(server.Caller{User: "alice", Device: "v1"}, server.PullParams{SchemaVersion: 1})
	if _, ok := r.Changes["comments"]; ok {
		t.Errorf("schema version 1 gets the comments table (added in version 2)")
	}
	if _, ok := tc(r, "tasks").Created[0]["description"]; ok {
		t.Errorf("schema version 1 gets tasks.description (added in version 3)")
	}
	r = h.Pull(server.Caller{User: "alice", Device: "v2"}, server.PullParams{SchemaVersion: 2})
	eq(t, "v2 comments", IDs(tc(r, "comments").Created), []string{"c1"})
}

func testMigrationSync(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, `{"tasks":{"created":[{"id":"t1","name":"x","description":"d"},{"id":"t2","name":"y"}]},"comments":{"created":[{"id":"c1","body":"b"}]}}`)
	t1 := h.PullFrom("alice", "a", t0).Timestamp
	h.MustPush("alice", "a", t1, `{"tasks":{"created":[{"id":"t3","name":"z","description":"new"}]},"projects":{"created":[{"id":"p9","name":"p"}]}}`)
	// An old client at version 1 synced at t1 and now upgrades to version 3.
	m := &melonsync.Migration{From: 1, Tables: []string{"comments", "nonexistent"}, Columns: []melonsync.MigrationColumns{
		{Table: "tasks", Columns: []string{"description", "bogus"}}, {Table: "bogus", Columns: []string{"x"}}}}
	r := h.Pull(server.Caller{User: "alice", Device: "old"}, server.PullParams{LastPulledAt: t1, SchemaVersion: 3, Migration: m})
	eq(t, "new table as created", IDs(tc(r, "comments").Created), []string{"c1"})
	eq(t, "tasks created (new since t1, other device)", IDs(tc(r, "tasks").Created), []string{"t3"})
	eq(t, "tasks updated (new column set)", IDs(tc(r, "tasks").Updated), []string{"t1"})
	eq(t, "projects as usual", IDs(tc(r, "projects").Created), []string{"p9"})
	if _, ok := r.Changes["nonexistent"]; ok {
		t.Errorf("migration table not in the server schema was served")
	}
}

func testReplacement(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, projects(`{"id":"p1","name":"A"},{"id":"p2","name":"B"}`, "", ""))
	t1 := h.PullFrom("alice", "a", t0).Timestamp
	h.MustPush("alice", "a", t1, projects("", "", `"p1"`))
	t2 := h.PullFrom("alice", "a", t1).Timestamp
	if r := h.PullFrom("alice", "b", t1); r.Strategy != "" {
		t.Fatalf("strategy %q before purge", r.Strategy)
	}
	n, err := h.Store.PurgeTombstones(context.Background(), t2)
	if err != nil || n != 1 {
		t.Fatalf("purge: %d %v", n, err)
	}
	r := h.PullFrom("alice", "b", t1)
	if r.Strategy != melonsync.StrategyReplacement {
		t.Fatalf("after purge, a pull from before it must be a replacement, got %q", r.Strategy)
	}
	eq(t, "replacement set", IDs(append(tc(r, "projects").Created, tc(r, "projects").Updated...)), []string{"p2"})
	// Pulls from after the purged deletion stay incremental.
	if r := h.PullFrom("alice", "b", t2); r.Strategy != "" {
		t.Errorf("pull after the purge horizon got strategy %q", r.Strategy)
	}
	// A lastPulledAt this server never handed out is answered with a replacement.
	if r := h.PullFrom("alice", "b", t2+1e9); r.Strategy != melonsync.StrategyReplacement {
		t.Errorf("future lastPulledAt got strategy %q", r.Strategy)
	}
}

func testSanitize(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, `{"tasks":{"created":[
		{"id":"t1","name":5,"is_done":1,"position":"7","description":false,"project_id":null},
		{"id":"t2","name":"ok","is_done":"yes","position":1.5e300,"description":["x"],"project_id":{"a":1}},
		{"id":"t3","is_done":0,"position":-0}]}}`)
	r := h.PullFrom("alice", "z", 0)
	got := tc(r, "tasks").Created
	sort.Slice(got, func(i, j int) bool { return got[i]["id"].(string) < got[j]["id"].(string) })
	eq(t, "sanitized", got, []map[string]any{
		{"id": "t1", "project_id": "", "name": "", "is_done": true, "position": 0, "description": nil},
		{"id": "t2", "project_id": "", "name": "ok", "is_done": false, "position": 1.5e300, "description": nil},
		{"id": "t3", "project_id": "", "name": "", "is_done": false, "position": 0, "description": nil},
	})
}

func testCreatedAsUpdated(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "b", t0, projects(`{"id":"p1","name":"A"}`, "", ""))
	c := server.Caller{User: "alice", Device: "a", CreatedAsUpdated: true}
	r := h.Pull(c, server.PullParams{LastPulledAt: t0})
	eq(t, "created", IDs(tc(r, "projects").Created), []string{})
	eq(t, "updated", IDs(tc(r, "projects").Updated), []string{"p1"})
	r = h.Pull(c, server.PullParams{})
	eq(t, "first sync updated", IDs(tc(r, "projects").Updated), []string{"p1"})
}

func testTimestamps(t *testing.T, h *Harness) {
	last := h.PullFrom("alice", "a", 0).Timestamp
	for i := 0; i < 20; i++ {
		resp := h.MustPush("alice", "a", last, projects(fmt.Sprintf(`{"id":"p%d","name":"x"}`, i), "", ""))
		if resp.Timestamp <= last {
			t.Fatalf("push %d timestamp %d not after %d", i, resp.Timestamp, last)
		}
		pull := h.PullFrom("alice", "a", last)
		if pull.Timestamp < resp.Timestamp {
			t.Fatalf("pull timestamp %d < push timestamp %d", pull.Timestamp, resp.Timestamp)
		}
		if n := len(tc(pull, "projects").Updated); n != 1 {
			t.Fatalf("pull %d sees %d changes", i, n)
		}
		last = pull.Timestamp
	}
	// A push that changes nothing does not move the clock.
	resp := h.MustPush("alice", "a", last, projects("", "", `"missing"`))
	if resp.Timestamp != last {
		t.Errorf("empty push timestamp %d, want %d", resp.Timestamp, last)
	}
	if now := time.Now().UnixMilli(); last > now+60_000 || last < now-365*24*3600*1000 {
		t.Logf("note: timestamps are not near the wall clock (%d vs %d)", last, now)
	}
}

func testSecret(t *testing.T, h *Harness) {
	a, err := h.Store.Secret(context.Background())
	if err != nil || len(a) < 16 {
		t.Fatalf("secret: %v (%d bytes)", err, len(a))
	}
	b, _ := h.Store.Secret(context.Background())
	if !bytes.Equal(a, b) {
		t.Errorf("secret changed between calls")
	}
}

// testConcurrent: pushers write while pullers follow from their last timestamp;
// every committed change must be seen by every puller, and no response may list an
// id twice.
func testConcurrent(t *testing.T, h *Harness) {
	const pushers, pushesEach, pullers = 6, 15, 3
	start := h.PullFrom("alice", "x", 0).Timestamp
	var wg sync.WaitGroup
	var mu sync.Mutex
	committed := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for p := 0; p < pushers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < pushesEach && ctx.Err() == nil; i++ {
				id := fmt.Sprintf("c%d_%d", p, i)
				_, err := h.Push("alice", fmt.Sprintf("dev%d", p), start, fmt.Sprintf(`{"comments":{"created":[{"id":%q,"body":"x"}]}}`, id))
				if err != nil {
					t.Errorf("push %s: %v", id, err)
					return
				}
				mu.Lock()
				committed[id] = true
				mu.Unlock()
			}
		}(p)
	}
	seen := make([]map[string]bool, pullers)
	done := make(chan struct{})
	var pwg sync.WaitGroup
	for q := 0; q < pullers; q++ {
		seen[q] = map[string]bool{}
		pwg.Add(1)
		go func(q int) {
			defer pwg.Done()
			last := start
			final := false
			for {
				select {
				case <-done:
					final = true
				default:
				}
				r := h.PullFrom("alice", fmt.Sprintf("puller%d", q), last)
				c := tc(r, "comments")
				inResp := map[string]bool{}
				for _, id := range append(IDs(c.Created), IDs(c.Updated)...) {
					if inResp[id] {
						t.Errorf("id %s twice in one response", id)
					}
					inResp[id] = true
					seen[q][id] = true
				}
				if r.Timestamp < last {
					t.Errorf("timestamp went back: %d < %d", r.Timestamp, last)
				}
				last = r.Timestamp
				if final || ctx.Err() != nil {
					return
				}
			}
		}(q)
	}
	wg.Wait()
	close(done)
	pwg.Wait()
	if len(committed) != pushers*pushesEach {
		t.Fatalf("only %d pushes committed", len(committed))
	}
	for q := range seen {
		for id := range committed {
			if !seen[q][id] {
				t.Errorf("puller %d missed %s", q, id)
			}
		}
	}
	t.Logf("%d pushes, %d pullers each saw all of them", len(committed), pullers)
}
