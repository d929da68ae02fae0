package postgres_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server/storetest"
)

func sortedIDs(ids []string) []string {
	out := append([]string{}, ids...)
	sort.Strings(out)
	return out
}

// TestPlainSQLMembership: the app's backend adds a member, moves a row between teams
// and removes a member with plain SQL; pulls treat it exactly as if pushed.
func TestPlainSQLMembership(t *testing.T) {
	s := openTestStore(t)
	h := storetest.NewHarnessWith(t, s, storetest.TeamsSchema(t))
	sch := `"` + s.SchemaName() + `".`
	conn := plainConn(t)

	t0 := h.PullFrom("alice", "a1", 0).Timestamp
	h.MustPush("alice", "a1", t0, `{"teams":{"created":[{"id":"t1","name":"One"}]},
		"team_members":{"created":[{"id":"m-alice","team_id":"t1","user_id":"alice"}]},
		"tasks":{"created":[{"id":"k1","team_id":"t1","title":"old"},{"id":"k2","team_id":"t1","title":"older"}]}}`)
	h.MustPush("carol", "c1", t0, `{"teams":{"created":[{"id":"t2","name":"Two"}]},
		"team_members":{"created":[{"id":"m-carol","team_id":"t2","user_id":"carol"}]}}`)
	b := h.PullFrom("bob", "b1", 0)
	c := h.PullFrom("carol", "c1", 0)
	if got := len(changes(b, "tasks").Created); got != 0 {
		t.Fatalf("bob sees %d tasks before joining", got)
	}

	// The backend adds bob to t1.
	sqlExec(t, conn, `INSERT INTO `+sch+`team_members (id, __owner, team_id, user_id) VALUES ('m-bob', 'backend', 't1', 'bob')`)
	r := h.PullFrom("bob", "b1", b.Timestamp)
	if got := jsonOf(sortedIDs(storetest.IDs(changes(r, "tasks").Created))); got != `["k1","k2"]` {
		t.Errorf("bob after a plain-SQL join: tasks created %s", got)
	}
	if got := jsonOf(storetest.IDs(changes(r, "teams").Created)); got != `["t1"]` {
		t.Errorf("bob after a plain-SQL join: teams created %s", got)
	}
	// And bob may now push to t1.
	if resp := h.MustPush("bob", "b1", r.Timestamp, `{"tasks":{"updated":[{"id":"k1","title":"by bob"}]}}`); len(resp.RejectedIDs) > 0 {
		t.Errorf("bob's push after a plain-SQL join rejected %v", resp.RejectedIDs)
	}
	b = h.PullFrom("bob", "b1", r.Timestamp)

	// The backend moves k2 from t1 to t2: bob loses it, carol gets it.
	sqlExec(t, conn, `UPDATE `+sch+`tasks SET team_id = 't2' WHERE id = 'k2'`)
	rb := h.PullFrom("bob", "b1", b.Timestamp)
	if got := jsonOf(changes(rb, "tasks").Deleted); got != `["k2"]` {
		t.Errorf("bob after a plain-SQL move: deleted %s", got)
	}
	rc := h.PullFrom("carol", "c1", c.Timestamp)
	if got := jsonOf(storetest.IDs(changes(rc, "tasks").Created)); got != `["k2"]` {
		t.Errorf("carol after a plain-SQL move: created %s", got)
	}

	// The backend removes bob: his next pull deletes everything of t1 he had.
	sqlExec(t, conn, `DELETE FROM `+sch+`team_members WHERE id = 'm-bob'`)
	rb2 := h.PullFrom("bob", "b1", rb.Timestamp)
	if got := jsonOf(sortedIDs(changes(rb2, "team_members").Deleted)); got != `["m-alice","m-bob"]` {
		t.Errorf("bob after a plain-SQL removal: members deleted %s", got)
	}
	if got := jsonOf(changes(rb2, "tasks").Deleted); got != `["k1"]` {
		t.Errorf("bob after a plain-SQL removal: tasks deleted %s", got)
	}
	if resp := h.MustPush("bob", "b1", rb2.Timestamp, `{"tasks":{"updated":[{"id":"k1","title":"sneak"}]}}`); jsonOf(resp.RejectedIDs["tasks"]) != `["k1"]` {
		t.Errorf("bob's push after a plain-SQL removal: rejected %v", resp.RejectedIDs)
	}
}

// TestAccessLiveUpdatesAcrossProcesses: two server processes on one database; a
// change to a team's rows pushed on one reaches the members' event streams on the
// other (and only theirs), and so does a plain-SQL write.
func TestAccessLiveUpdatesAcrossProcesses(t *testing.T) {
	defer postgres.SetWatchPing(100 * time.Millisecond)()
	s1 := openTestStore(t)
	h1 := storetest.NewHarnessWith(t, s1, storetest.TeamsSchema(t))
	s2, err := postgres.Open(context.Background(), testDSN(t), postgres.WithSchema(s1.SchemaName()))
	if err != nil {
		t.Fatal(err)
	}
	h2 := storetest.NewHarnessWith(t, s2, storetest.TeamsSchema(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h2.Svc.WatchStore(ctx) }()
	defer func() { cancel(); <-done }()

	t0 := h1.PullFrom("alice", "a1", 0).Timestamp
	h1.MustPush("alice", "a1", t0, `{"teams":{"created":[{"id":"t1","name":"One"}]},
		"team_members":{"created":[{"id":"m-alice","team_id":"t1","user_id":"alice"},{"id":"m-bob","team_id":"t1","user_id":"bob"}]}}`)
	bob, stopB := h2.Svc.Feed().Subscribe("bob", "")
	defer stopB()
	carol, stopC := h2.Svc.Feed().Subscribe("carol", "")
	defer stopC()
	// The watcher may not listen yet: push until bob hears of it.
	heard := false
	for i := 0; i < 50 && !heard; i++ {
		h1.MustPush("alice", "a1", t0, `{"tasks":{"created":[{"id":"k`+string(rune('a'+i%26))+string(rune('a'+i/26))+`","team_id":"t1","title":"x"}]}}`)
		select {
		case <-bob:
			heard = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !heard {
		t.Fatal("bob never heard of a change to his team pushed on the other process")
	}
	select {
	case <-carol:
		t.Error("carol, not a member, got an event")
	case <-time.After(300 * time.Millisecond):
	}
	// A plain-SQL write to the team's rows reaches bob too.
	for len(bob) > 0 {
		<-bob
	}
	conn := plainConn(t)
	sqlExec(t, conn, `INSERT INTO "`+s1.SchemaName()+`".tasks (id, __owner, team_id, title) VALUES ('sql1', 'backend', 't1', 'from sql')`)
	select {
	case <-bob:
	case <-time.After(5 * time.Second):
		t.Error("bob did not hear of a plain-SQL write to his team")
	}
	select {
	case <-carol:
		t.Error("carol got an event for the plain-SQL write")
	case <-time.After(300 * time.Millisecond):
	}
	// A public row written by the backend reaches everyone.
	sqlExec(t, conn, `INSERT INTO "`+s1.SchemaName()+`".tags (id, __owner, label) VALUES ('g1', '', 'new')`)
	select {
	case <-carol:
	case <-time.After(5 * time.Second):
		t.Error("carol did not hear of a public row")
	}
}
