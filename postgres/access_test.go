package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server/storetest"
)

// TestPlainSQLMembership: the app's backend adds a member, moves a row between teams
// and removes a member with plain SQL; pulls treat it exactly as if pushed.
func TestPlainSQLMembership(t *testing.T) {
	s := openTestStore(t)
	h := storetest.NewHarnessWith(t, s, storetest.TeamsSchema(t))
	conn := plainConn(t)
	storetest.PlainSQLAccess(t, h, func(q string) error {
		_, err := conn.Exec(context.Background(), q)
		return err
	}, func(table string) string { return `"` + s.SchemaName() + `".` + table })
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
