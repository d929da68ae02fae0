package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
)

// groupRig runs pushes in one group transaction, deterministically: the store has one
// group slot, held by a push that waits for a row lock a plain-SQL transaction holds
// (the plug) while the pushes queue; releasing the plug lets one of them lead a group
// of all of them.
type groupRig struct {
	t    *testing.T
	s    *postgres.Store
	h    *storetest.Harness
	conn *pgx.Conn // the checking connection
}

func newGroupRig(t *testing.T) *groupRig {
	s := openTestStore(t, postgres.WithGroupSlots(1))
	h := storetest.NewHarnessWith(t, s, storetest.TeamsSchema(t))
	return &groupRig{t: t, s: s, h: h, conn: plainConn(t)}
}

// lockRow starts a plain-SQL transaction that locks the row id of table; release
// ends it.
func (r *groupRig) lockRow(table, id string) (release func()) {
	r.t.Helper()
	conn := plainConn(r.t)
	ctx := context.Background()
	sqlExec(r.t, conn, `BEGIN`)
	sqlExec(r.t, conn, `SELECT 1 FROM "`+r.s.SchemaName()+`".`+table+` WHERE id = $1 FOR UPDATE`, id)
	return func() { conn.Exec(ctx, `COMMIT`) }
}

// waitFor polls cond until it holds, failing the test after 10 s.
func (r *groupRig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			r.t.Fatalf("waited 10 s for %s", what)
		}
	}
}

// lockWaiters is the number of backends of the test's schema waiting for a lock.
func (r *groupRig) lockWaiters() int {
	var n int
	if err := r.conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// pushResult is what one push of a group got.
type pushResult struct {
	resp *melonsync.PushResponse
	err  error
}

// inOneGroup runs pushes (each returning its answer) as one group and returns their
// answers in order, once all have been answered.
func (r *groupRig) inOneGroup(pushes ...func() (*melonsync.PushResponse, error)) []pushResult {
	r.t.Helper()
	r.h.MustPush("plug", "p", 0, `{"notes":{"created":[{"id":"plug","body":"x"}]}}`)
	release := r.lockRow("notes", "plug")
	waiters := r.lockWaiters()
	plugged := make(chan error, 1)
	go func() {
		_, err := r.h.Push("plug", "p", 0, `{"notes":{"updated":[{"id":"plug","body":"y"}]}}`)
		plugged <- err
	}()
	r.waitFor("the plug to wait for its row", func() bool { return r.lockWaiters() > waiters })
	out := make([]pushResult, len(pushes))
	var wg sync.WaitGroup
	for i, push := range pushes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].resp, out[i].err = push()
		}()
	}
	r.waitFor("the pushes to queue", func() bool { return r.s.QueuedWrites() == len(pushes) })
	release()
	if err := <-plugged; err != nil {
		r.t.Fatalf("the plug's push: %v", err)
	}
	wg.Wait()
	sqlExec(r.t, r.conn, `DELETE FROM "`+r.s.SchemaName()+`".notes WHERE id = 'plug'`)
	return out
}

func pushAs(h *storetest.Harness, user, device string, since int64, changes string) func() (*melonsync.PushResponse, error) {
	return func() (*melonsync.PushResponse, error) { return h.Push(user, device, since, changes) }
}

// TestGroupCommit: 16 users' pushes run as one transaction (one version for all),
// each user's records are written as its own (owner, device), and each user pulls
// exactly its own.
func TestGroupCommit(t *testing.T) {
	r := newGroupRig(t)
	var pushes []func() (*melonsync.PushResponse, error)
	for i := range 16 {
		u := fmt.Sprintf("u%d", i)
		pushes = append(pushes, pushAs(r.h, u, "d-"+u, 0, `{"notes":{"created":[{"id":"`+u+`-a","body":"a"},{"id":"`+u+`-b","body":"b"}]}}`))
	}
	before := r.s.GroupStats()
	out := r.inOneGroup(pushes...)
	after := r.s.GroupStats()
	if g, n := after.Groups-before.Groups, after.Grouped-before.Grouped; g != 1 || n != 16 {
		t.Fatalf("%d groups committing %d pushes, want 1 group of 16", g, n)
	}
	version := out[0].resp.Timestamp
	for i, o := range out {
		if o.err != nil {
			t.Fatalf("push %d: %v", i, o.err)
		}
		if o.resp.Timestamp != version {
			t.Errorf("push %d has timestamp %d, push 0 %d: not one transaction", i, o.resp.Timestamp, version)
		}
	}
	for i := range 16 {
		u := fmt.Sprintf("u%d", i)
		got := storetest.IDs(r.h.PullFrom(u, "d-"+u+"-2", 0).Changes["notes"].Created)
		if want := []string{u + "-a", u + "-b"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s pulls %v, want %v", u, got, want)
		}
		var owner, device string
		if err := r.conn.QueryRow(context.Background(), `SELECT __owner, __created_device FROM "`+r.s.SchemaName()+`".notes WHERE id = $1`, u+"-a").Scan(&owner, &device); err != nil {
			t.Fatal(err)
		}
		if owner != u || device != "d-"+u {
			t.Errorf("%s-a is owned by %q from device %q", u, owner, device)
		}
	}
}

// TestGroupCommitSameRecord: two devices update one record from the same
// lastPulledAt in one group. One wins, the other is a conflict — as if they had run
// one after the other; a group answering both OK would lose an update.
func TestGroupCommitSameRecord(t *testing.T) {
	r := newGroupRig(t)
	t0 := r.h.MustPush("alice", "a1", 0, `{"notes":{"created":[{"id":"n1","body":"first"}]}}`).Timestamp
	before := r.s.GroupStats()
	out := r.inOneGroup(
		pushAs(r.h, "alice", "a2", t0, `{"notes":{"updated":[{"id":"n1","body":"from a2"}]}}`),
		pushAs(r.h, "alice", "a3", t0, `{"notes":{"updated":[{"id":"n1","body":"from a3"}]}}`),
		pushAs(r.h, "bob", "b1", 0, `{"notes":{"created":[{"id":"n2","body":"bob's"}]}}`))
	ok, conflicts := 0, 0
	for _, o := range out[:2] {
		var e *melonsync.Error
		switch {
		case o.err == nil:
			ok++
		case errors.As(o.err, &e) && e.Code == melonsync.EConflict:
			conflicts++
		default:
			t.Fatalf("push: %v", o.err)
		}
	}
	if ok != 1 || conflicts != 1 {
		t.Fatalf("%d of the two updates were accepted and %d were conflicts; want one of each", ok, conflicts)
	}
	if out[2].err != nil {
		t.Fatalf("bob's push: %v", out[2].err)
	}
	if st := r.s.GroupStats(); st.Alone-before.Alone != 1 {
		t.Errorf("%d pushes ran alone, want 1 (the second look-up of n1)", st.Alone-before.Alone)
	}
}

// TestGroupCommitFounders: alice and bob found the same new team in one group. The
// first-member rule gives it one founder; a group admitting both would make both
// founders of a team neither was invited to.
func TestGroupCommitFounders(t *testing.T) {
	r := newGroupRig(t)
	found := func(user string) func() (*melonsync.PushResponse, error) {
		return pushAs(r.h, user, user+"1", 0, `{
			"teams":{"created":[{"id":"t9-`+user+`","name":"`+user+`'s"}]},
			"team_members":{"created":[{"id":"m-`+user+`","team_id":"t9","user_id":"`+user+`"}]},
			"projects":{"created":[{"id":"p-`+user+`","team_id":"t9","name":"mine"}]}}`)
	}
	out := r.inOneGroup(found("alice"), found("bob"))
	founders := 0
	for i, o := range out {
		if o.err != nil {
			t.Fatalf("push %d: %v", i, o.err)
		}
		if len(storetest.Rejected(o.resp, "team_members")) == 0 {
			founders++
		}
	}
	if founders != 1 {
		t.Fatalf("%d founders of t9, want 1", founders)
	}
	var members int
	if err := r.conn.QueryRow(context.Background(), `SELECT count(*) FROM "`+r.s.SchemaName()+`".team_members WHERE team_id = 't9'`).Scan(&members); err != nil {
		t.Fatal(err)
	}
	if members != 1 {
		t.Errorf("t9 has %d members, want 1", members)
	}
}

// TestGroupCommitLockStall: a group member needs a row another transaction holds.
// The group gives up waiting after a moment and its members run alone: the others
// are answered while the row is still held, and only that push waits for it.
func TestGroupCommitLockStall(t *testing.T) {
	r := newGroupRig(t)
	r.h.MustPush("carol", "c1", 0, `{"notes":{"created":[{"id":"held","body":"x"}]}}`)
	hold := r.lockRow("notes", "held")
	released := make(chan struct{})
	heldDone := make(chan struct{})
	start := time.Now()
	var others time.Duration
	var mu sync.Mutex
	pushes := []func() (*melonsync.PushResponse, error){func() (*melonsync.PushResponse, error) {
		defer close(heldDone)
		resp, err := r.h.Push("carol", "c1", 0, `{"notes":{"updated":[{"id":"held","body":"y"}]}}`)
		select {
		case <-released:
		default:
			t.Errorf("the push of the held row was answered before the row was released: %v", err)
		}
		return resp, err
	}}
	for i := range 6 {
		u := fmt.Sprintf("o%d", i)
		pushes = append(pushes, func() (*melonsync.PushResponse, error) {
			resp, err := r.h.Push(u, "d", 0, `{"notes":{"created":[{"id":"`+u+`","body":"z"}]}}`)
			mu.Lock()
			others = max(others, time.Since(start))
			mu.Unlock()
			return resp, err
		})
	}
	watch := plainConn(t)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		// The others are answered while the row is held (for at most 10 s); then it
		// is released.
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			var n int
			watch.QueryRow(context.Background(), `SELECT count(*) FROM "`+r.s.SchemaName()+`".notes WHERE id LIKE 'o%'`).Scan(&n)
			if n == 6 {
				break
			}
		}
		time.Sleep(300 * time.Millisecond)
		close(released)
		hold()
	}()
	out := r.inOneGroup(pushes...)
	<-heldDone
	<-watched
	for i, o := range out {
		if o.err != nil {
			t.Fatalf("push %d: %v", i, o.err)
		}
	}
	if st := r.s.GroupStats(); st.Alone < 7 {
		t.Errorf("%d pushes ran alone, want all 7 (the group gave up on the lock)", st.Alone)
	}
	if others > 5*time.Second {
		t.Errorf("the other pushes waited %v for a row they do not touch", others.Round(time.Millisecond))
	}
	t.Logf("the other pushes were answered within %v", others.Round(time.Millisecond))
}

// TestGroupCommitNotifies: every member of a group is announced to listening
// processes with its own user and device (so that the pushing device's own streams
// are not woken) and the group's version.
func TestGroupCommitNotifies(t *testing.T) {
	r := newGroupRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan server.Change, 100)
	watching := make(chan error, 1)
	go func() { watching <- r.s.Watch(ctx, func(c server.Change) { changes <- c }) }()
	defer func() { cancel(); <-watching }()
	// Watch may not listen yet: push until it hears.
	for heard := false; !heard; {
		r.h.MustPush("probe", "p", 0, `{"notes":{"created":[{"id":"probe-`+fmt.Sprint(time.Now().UnixNano())+`","body":"x"}]}}`)
		select {
		case <-changes:
			heard = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	out := r.inOneGroup(
		pushAs(r.h, "u0", "d0", 0, `{"notes":{"created":[{"id":"n0","body":"a"}]}}`),
		pushAs(r.h, "u1", "d1", 0, `{"notes":{"created":[{"id":"n1","body":"b"}]}}`),
		pushAs(r.h, "u2", "d2", 0, `{"notes":{"created":[{"id":"n2","body":"c"}]}}`))
	v := out[0].resp.Timestamp
	got := map[string]string{}
	for end := time.After(5 * time.Second); len(got) < 3; {
		select {
		case c := <-changes:
			if c.Version == v {
				got[c.User] = c.Device
			}
		case <-end:
			t.Fatalf("heard of %v at version %d, want u0, u1 and u2", got, v)
		}
	}
	for i := range 3 {
		if u := fmt.Sprintf("u%d", i); got[u] != fmt.Sprintf("d%d", i) {
			t.Errorf("%s's change announced from device %q, want d%d", u, got[u], i)
		}
	}
}
