package storetest

import (
	"encoding/json"
	"testing"
)

// PlainSQLAccess checks that membership changes and moves made by the app's own
// backend with plain SQL count exactly as pushed ones (SPEC §6, §8): a member added
// by SQL gets the team's old rows, a row moved by SQL leaves one team for another,
// a member removed by SQL loses the team. h must be a teams harness (NewHarnessWith
// and TeamsSchema); exec runs one statement on the store's database as the backend
// would, with table names passed through table (a schema prefix, say).
func PlainSQLAccess(t *testing.T, h *Harness, exec func(query string) error, table func(string) string) {
	run := func(q string) {
		t.Helper()
		if err := exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	t0 := h.PullFrom("alice", "a1", 0).Timestamp
	h.MustPush("alice", "a1", t0, `{"teams":{"created":[{"id":"t1","name":"One"}]},
		"team_members":{"created":[{"id":"m-alice","team_id":"t1","user_id":"alice"}]},
		"tasks":{"created":[{"id":"k1","team_id":"t1","title":"old"},{"id":"k2","team_id":"t1","title":"older"}]}}`)
	h.MustPush("carol", "c1", t0, `{"teams":{"created":[{"id":"t2","name":"Two"}]},
		"team_members":{"created":[{"id":"m-carol","team_id":"t2","user_id":"carol"}]}}`)
	b := h.PullFrom("bob", "b1", 0)
	c := h.PullFrom("carol", "c1", 0)
	if got := len(tc(b, "tasks").Created); got != 0 {
		t.Fatalf("bob sees %d tasks before joining", got)
	}

	// The backend adds bob to t1.
	run(`INSERT INTO ` + table("team_members") + ` (id, __owner, team_id, user_id) VALUES ('m-bob', 'backend', 't1', 'bob')`)
	r := h.PullFrom("bob", "b1", b.Timestamp)
	if got := js(IDs(tc(r, "tasks").Created)); got != `["k1","k2"]` {
		t.Errorf("bob after a plain-SQL join: tasks created %s", got)
	}
	if got := js(IDs(tc(r, "teams").Created)); got != `["t1"]` {
		t.Errorf("bob after a plain-SQL join: teams created %s", got)
	}
	if resp := h.MustPush("bob", "b1", r.Timestamp, `{"tasks":{"updated":[{"id":"k1","title":"by bob"}]}}`); len(resp.RejectedIDs) > 0 {
		t.Errorf("bob's push after a plain-SQL join rejected %v", resp.RejectedIDs)
	}
	b = h.PullFrom("bob", "b1", r.Timestamp)

	// The backend moves k2 from t1 to t2: bob loses it, carol gets it.
	run(`UPDATE ` + table("tasks") + ` SET team_id = 't2' WHERE id = 'k2'`)
	rb := h.PullFrom("bob", "b1", b.Timestamp)
	if got := js(Deleted(rb, "tasks")); got != `["k2"]` {
		t.Errorf("bob after a plain-SQL move: deleted %s", got)
	}
	rc := h.PullFrom("carol", "c1", c.Timestamp)
	if got := js(IDs(tc(rc, "tasks").Created)); got != `["k2"]` {
		t.Errorf("carol after a plain-SQL move: created %s", got)
	}

	// The backend removes bob: his next pull deletes everything of t1 he had.
	run(`DELETE FROM ` + table("team_members") + ` WHERE id = 'm-bob'`)
	rb2 := h.PullFrom("bob", "b1", rb.Timestamp)
	if got := js(Deleted(rb2, "team_members")); got != `["m-alice","m-bob"]` {
		t.Errorf("bob after a plain-SQL removal: members deleted %s", got)
	}
	if got := js(Deleted(rb2, "tasks")); got != `["k1"]` {
		t.Errorf("bob after a plain-SQL removal: tasks deleted %s", got)
	}
	if got := js(Deleted(rb2, "teams")); got != `["t1"]` {
		t.Errorf("bob after a plain-SQL removal: teams deleted %s", got)
	}
	if resp := h.MustPush("bob", "b1", rb2.Timestamp, `{"tasks":{"updated":[{"id":"k1","title":"sneak"}]}}`); js(resp.RejectedIDs["tasks"]) != `["k1"]` {
		t.Errorf("bob's push after a plain-SQL removal: rejected %v", resp.RejectedIDs)
	}
	// A membership handed to another user by SQL moves the team with it.
	c = h.PullFrom("carol", "c1", rc.Timestamp)
	run(`UPDATE ` + table("team_members") + ` SET user_id = 'dave' WHERE id = 'm-carol'`)
	if got := js(Deleted(h.PullFrom("carol", "c1", c.Timestamp), "tasks")); got != `["k2"]` {
		t.Errorf("carol after her membership went to dave: tasks deleted %s", got)
	}
	if got := js(IDs(tc(h.PullFrom("dave", "d1", c.Timestamp), "tasks").Created)); got != `["k2"]` {
		t.Errorf("dave after carol's membership went to him: tasks created %s", got)
	}
}
