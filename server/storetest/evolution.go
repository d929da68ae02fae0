package storetest

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/melonsync/melonsync"
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
