package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// testSchemaAhead: a pull from a client whose schema is newer than the server's (a
// rolling upgrade) is a conflict to retry later, never an answer with a timestamp
// that would make the client skip what the server does not know.
func testSchemaAhead(t *testing.T, h *Harness) {
	h.MustPush("alice", "a", 0, projects(`{"id":"p1","name":"A"}`, "", ""))
	next := h.Schema.Version + 1
	err := h.Svc.Pull(context.Background(), server.Caller{User: "alice", Device: "new"},
		server.PullParams{SchemaVersion: next}, io.Discard)
	var me *melonsync.Error
	if !errors.As(err, &me) || me.Code != melonsync.EConflict {
		t.Fatalf("pull at schema version %d from a version %d server: want conflict, got %v", next, h.Schema.Version, err)
	}
	eq(t, "details", me.Details, map[string]any{
		"reason": server.ReasonSchemaAhead, "schemaVersion": next,
		"serverSchemaVersion": h.Schema.Version, "retryAfter": server.SchemaAheadRetry,
	})
	// The current and older versions are served.
	r := h.Pull(server.Caller{User: "alice", Device: "cur"}, server.PullParams{SchemaVersion: h.Schema.Version})
	eq(t, "current version", IDs(tc(r, "projects").Created), []string{"p1"})
}

// testPushAboveClock: a push whose lastPulledAt the server never handed out (above
// its clock) is a conflict for every record, and writes nothing; it must not skip
// conflict detection.
func testPushAboveClock(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, projects(`{"id":"p1","name":"A"}`, "", ""))
	t1 := h.PullFrom("alice", "a", t0).Timestamp
	h.MustPush("alice", "b", t1, projects("", `{"id":"p1","name":"by b"}`, ""))
	before := h.PullFrom("alice", "z", 0)
	future := before.Timestamp + 1_000_000
	_, err := h.Push("alice", "a", future, `{"projects":{"updated":[{"id":"p1","name":"by a"}]},"tasks":{"created":[{"id":"t1","name":"T"}]}}`)
	var me *melonsync.Error
	if !errors.As(err, &me) || me.Code != melonsync.EConflict {
		t.Fatalf("push with lastPulledAt %d above the clock %d: want conflict, got %v", future, before.Timestamp, err)
	}
	eq(t, "conflicts", me.Details["conflicts"], map[string][]string{"projects": {"p1"}, "tasks": {"t1"}})
	eq(t, "reason", me.Details["reason"], "last_pulled_at_ahead")
	after := h.PullFrom("alice", "z", 0)
	eq(t, "nothing written", after, before)
	// The timestamp itself is fine.
	h.MustPush("alice", "b", before.Timestamp, projects("", `{"id":"p1","name":"again"}`, ""))
}

// CheckRefusedRecords checks a store on which the caller made the database refuse
// comments whose task_id names no task (a foreign key, a trigger: a constraint the
// app's own SQL added): a push carrying such a comment is not a failure; the comment
// is refused on its own (experimentalRejectedIds, with the database's reason in
// rejectedReasons, naming constraintWord), the rest of the push applies, and a push
// that breaks nothing is untouched.
func CheckRefusedRecords(t *testing.T, h *Harness, constraintWord string) {
	t.Helper()
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	resp, err := h.Push("alice", "a", t0, `{
		"tasks":{"created":[{"id":"t1","name":"T"}]},
		"comments":{"created":[{"id":"c1","task_id":"nope","body":"orphan"},{"id":"c2","task_id":"t1","body":"ok"},{"id":"c3","task_id":"gone","body":"orphan"}]}}`)
	if err != nil {
		t.Fatalf("push with records the database refuses: want them refused one by one, got %v (code %s)", err, code(err))
	}
	eq(t, "rejected", resp.RejectedIDs, map[string][]string{"comments": {"c1", "c3"}})
	for _, id := range []string{"c1", "c3"} {
		if why := resp.RejectedReasons[id]; !strings.Contains(why, constraintWord) {
			t.Errorf("reason for %s = %q, want it to name %q", id, why, constraintWord)
		}
	}
	r := h.PullFrom("alice", "b", 0)
	eq(t, "tasks", IDs(tc(r, "tasks").Created), []string{"t1"})
	eq(t, "comments", IDs(tc(r, "comments").Created), []string{"c2"})
	if resp.Timestamp != r.Timestamp {
		t.Errorf("push timestamp %d, pull timestamp %d", resp.Timestamp, r.Timestamp)
	}
	// An update that breaks the constraint is refused too; the record keeps its value.
	resp, err = h.Push("alice", "a", r.Timestamp, `{"comments":{"updated":[{"id":"c2","task_id":"nope"}]}}`)
	if err != nil {
		t.Fatalf("update refused by the database: %v", err)
	}
	eq(t, "rejected update", resp.RejectedIDs, map[string][]string{"comments": {"c2"}})
	r = h.PullFrom("alice", "b", 0)
	eq(t, "c2 unchanged", tc(r, "comments").Created, []map[string]any{{"id": "c2", "task_id": "t1", "body": "ok"}})
	resp = h.MustPush("alice", "a", r.Timestamp, `{"comments":{"created":[{"id":"c4","task_id":"t1","body":"fine"}]}}`)
	if len(resp.RejectedIDs) != 0 {
		t.Errorf("a push that breaks nothing was refused: %v", resp.RejectedIDs)
	}
}

// evolveSchema returns the todo schema (hand-written form, no migrations) at version
// v with edit applied to its tables.
func evolveSchema(t *testing.T, v int, edit func(tables map[string]map[string]any)) *schema.Schema {
	t.Helper()
	tables := map[string]map[string]any{
		"projects": {"name": map[string]any{"type": "string"}, "is_favorite": map[string]any{"type": "boolean"}, "position": map[string]any{"type": "number"}},
		"tasks": {"project_id": map[string]any{"type": "string", "isIndexed": true}, "name": map[string]any{"type": "string"},
			"is_done": map[string]any{"type": "boolean"}, "position": map[string]any{"type": "number"},
			"description": map[string]any{"type": "string", "isOptional": true}},
		"comments": {"task_id": map[string]any{"type": "string", "isIndexed": true}, "body": map[string]any{"type": "string"}},
	}
	if edit != nil {
		edit(tables)
	}
	var out []map[string]any
	for _, name := range []string{"projects", "tasks", "comments", "tags"} {
		cols, ok := tables[name]
		if !ok {
			continue
		}
		var list []map[string]any
		for _, cn := range sortedKeys(cols) {
			c := map[string]any{"name": cn}
			for k, v := range cols[cn].(map[string]any) {
				c[k] = v
			}
			list = append(list, c)
		}
		out = append(out, map[string]any{"name": name, "columns": list})
	}
	b, _ := json.Marshal(map[string]any{"version": v, "tables": out})
	s, err := schema.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// CheckSchemaEvolution checks what a store does at start with a schema that no
// longer matches its data. open opens the same store again each time (the caller
// closes it when the test ends).
func CheckSchemaEvolution(t *testing.T, open func() server.Store) {
	ctx := context.Background()
	prepare := func(s *schema.Schema, c server.SchemaChanges) (server.Store, error) {
		t.Helper()
		st := open()
		st.(server.SchemaPreparer).SetSchemaChanges(c)
		return st, st.Prepare(ctx, s)
	}
	base := TodoSchema(t)
	st, err := prepare(base, server.SchemaChanges{})
	if err != nil {
		t.Fatal(err)
	}
	h := &Harness{T: t, Svc: server.New(st, base), Store: st, Schema: base}
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, `{"projects":{"created":[{"id":"p1","name":"A","is_favorite":true,"position":3},{"id":"p2","name":"B","position":2.5}]},
		"comments":{"created":[{"id":"c1","body":"hi"}]}}`)
	t1 := h.PullFrom("alice", "a", t0).Timestamp
	st.Close()

	// A type change is refused, naming the column and the flag.
	retyped := evolveSchema(t, 3, func(tb map[string]map[string]any) {
		tb["projects"]["position"] = map[string]any{"type": "string"}
	})
	st, err = prepare(retyped, server.SchemaChanges{})
	st.Close()
	var ee *server.EvolveError
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), "projects.position") || !strings.Contains(err.Error(), "--convert") {
		t.Fatalf("type change: want an EvolveError naming projects.position and --convert, got %v", err)
	}
	// A dropped column and a dropped table that hold data are refused too.
	dropped := evolveSchema(t, 4, func(tb map[string]map[string]any) {
		delete(tb["projects"], "is_favorite")
		delete(tb, "comments")
	})
	st, err = prepare(dropped, server.SchemaChanges{})
	st.Close()
	if !errors.As(err, &ee) || len(ee.Problems) != 2 || !strings.Contains(err.Error(), "projects.is_favorite") ||
		!strings.Contains(err.Error(), "table comments") || !strings.Contains(err.Error(), "--allow-drop") {
		t.Fatalf("dropped column and table: want an EvolveError naming both and --allow-drop, got %v", err)
	}
	// Nothing changed: the original schema still serves everything.
	st, err = prepare(base, server.SchemaChanges{})
	if err != nil {
		t.Fatalf("the original schema after refusals: %v", err)
	}
	h = &Harness{T: t, Svc: server.New(st, base), Store: st, Schema: base}
	eq(t, "comments kept", IDs(tc(h.PullFrom("alice", "z", 0), "comments").Created), []string{"c1"})
	st.Close()

	// --convert converts the values; converted records reach clients as updates.
	st, err = prepare(retyped, server.SchemaChanges{Convert: true})
	if err != nil {
		t.Fatalf("type change with Convert: %v", err)
	}
	h = &Harness{T: t, Svc: server.New(st, retyped), Store: st, Schema: retyped}
	r := h.PullFrom("alice", "a", t1)
	eq(t, "converted", tc(r, "projects").Updated, []map[string]any{
		{"id": "p1", "is_favorite": true, "name": "A", "position": "3"},
		{"id": "p2", "is_favorite": false, "name": "B", "position": "2.5"}})
	h.MustPush("alice", "a", r.Timestamp, `{"projects":{"created":[{"id":"p3","name":"C","position":"top"}]}}`)
	st.Close()

	// --allow-drop drops them; the next start needs no flag.
	dropped = evolveSchema(t, 4, func(tb map[string]map[string]any) {
		delete(tb["projects"], "is_favorite")
		delete(tb, "comments")
		tb["projects"]["position"] = map[string]any{"type": "string"}
	})
	st, err = prepare(dropped, server.SchemaChanges{Drop: true})
	if err != nil {
		t.Fatalf("drops with Drop: %v", err)
	}
	st.Close()
	st, err = prepare(dropped, server.SchemaChanges{})
	if err != nil {
		t.Fatalf("start after the drops: %v", err)
	}
	h = &Harness{T: t, Svc: server.New(st, dropped), Store: st, Schema: dropped}
	eq(t, "after drops", tc(h.PullFrom("alice", "z", 0), "projects").Created, []map[string]any{
		{"id": "p1", "name": "A", "position": "3"}, {"id": "p2", "name": "B", "position": "2.5"}, {"id": "p3", "name": "C", "position": "top"}})
	st.Close()

	// A process on an older schema (a rolling upgrade, a rollback) starts: what the
	// newer schema added is left alone, not taken for a drop.
	newer := evolveSchema(t, 5, func(tb map[string]map[string]any) {
		delete(tb["projects"], "is_favorite")
		delete(tb, "comments")
		tb["projects"]["position"] = map[string]any{"type": "string"}
		tb["tags"] = map[string]any{"label": map[string]any{"type": "string"}}
	})
	st, err = prepare(newer, server.SchemaChanges{})
	if err != nil {
		t.Fatal(err)
	}
	h = &Harness{T: t, Svc: server.New(st, newer), Store: st, Schema: newer}
	h.MustPush("alice", "a", 0, `{"tags":{"created":[{"id":"g1","label":"x"}]}}`)
	st.Close()
	st, err = prepare(dropped, server.SchemaChanges{})
	if err != nil {
		t.Fatalf("an older schema after a newer one: %v", err)
	}
	st.Close()
	st, err = prepare(newer, server.SchemaChanges{})
	if err != nil {
		t.Fatal(err)
	}
	h = &Harness{T: t, Svc: server.New(st, newer), Store: st, Schema: newer}
	eq(t, "tags kept", IDs(tc(h.PullFrom("alice", "z", 0), "tags").Created), []string{"g1"})
	st.Close()
}
