package storetest

import (
	"context"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// accessTests are the access-rule cases (SPEC §6), run on the teams test schema.
var accessTests = []struct {
	name string
	fn   func(t *testing.T, h *Harness)
}{
	{"FirstMemberRule", testFirstMember},
	{"JoinBringsOldRows", testJoinBringsOldRows},
	{"LeaveDeletes", testLeaveDeletes},
	{"MoveBetweenGroups", testMoveBetweenGroups},
	{"NonMemberPushRefusedPerRecord", testNonMemberPush},
	{"ReadOnlyAndPublicTables", testReadOnlyAndPublic},
	{"OwnerTableUnchanged", testAccessOwnerTable},
	{"RejoinIsIncremental", testRejoin},
	{"RevocationPurgedMeansReplacement", testRevocationPurged},
	{"MembershipMovesUser", testMembershipMovesUser},
	{"LiveUpdatesReachMembersOnly", testAccessFeed},
}

// TeamsSchema loads the suite's teams schema: teams, team_members, projects and tasks
// shared by team; audit read-only by team; tags public; notes owned.
func TeamsSchema(t testing.TB) *schema.Schema {
	_, file, _, _ := runtime.Caller(0)
	s, err := schema.Load(filepath.Join(filepath.Dir(file), "testdata", "teams.json"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// NewHarnessWith prepares store with schema s and closes it when t ends.
func NewHarnessWith(t testing.TB, store server.Store, s *schema.Schema) *Harness {
	if err := store.Prepare(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &Harness{T: t, Svc: server.New(store, s), Store: store, Schema: s}
}

// Rejected returns the ids a push answer refused for table.
func Rejected(r *melonsync.PushResponse, table string) []string {
	out := append([]string{}, r.RejectedIDs[table]...)
	sort.Strings(out)
	return out
}

// Deleted returns the sorted deleted ids of table in a pull answer.
func Deleted(resp *melonsync.PullResponse, table string) []string {
	out := append([]string{}, tc(resp, table).Deleted...)
	sort.Strings(out)
	return out
}

// team pushes, as user on device, a new team with the user as its first member.
func team(h *Harness, user, device string, since int64, id string) {
	h.T.Helper()
	r := h.MustPush(user, device, since, `{
		"teams":{"created":[{"id":"`+id+`","name":"team `+id+`"}]},
		"team_members":{"created":[{"id":"m-`+id+`-`+user+`","team_id":"`+id+`","user_id":"`+user+`","role":"owner"}]}}`)
	if len(r.RejectedIDs) > 0 {
		h.T.Fatalf("founding team %s: rejected %v", id, r.RejectedIDs)
	}
}

// member adds (as user, a member) who to team id.
func member(h *Harness, user, device string, since int64, id, who string) {
	h.T.Helper()
	r := h.MustPush(user, device, since, `{"team_members":{"created":[{"id":"m-`+id+`-`+who+`","team_id":"`+id+`","user_id":"`+who+`"}]}}`)
	if len(r.RejectedIDs) > 0 {
		h.T.Fatalf("adding %s to %s: rejected %v", who, id, r.RejectedIDs)
	}
}

func now(h *Harness, user string) int64 {
	h.T.Helper()
	return h.PullFrom(user, "probe", 0).Timestamp
}

func testFirstMember(t *testing.T, h *Harness) {
	t0 := now(h, "alice")
	// Founding: the team, its first member (the pusher) and its first rows together.
	r := h.MustPush("alice", "a1", t0, `{
		"teams":{"created":[{"id":"t1","name":"One"}]},
		"team_members":{"created":[{"id":"m1","team_id":"t1","user_id":"alice"}]},
		"projects":{"created":[{"id":"p1","team_id":"t1","name":"first"}]}}`)
	eq(t, "founding rejected", r.RejectedIDs, map[string][]string(nil))
	// A second founder of the same id is refused: the group has members now.
	r = h.MustPush("bob", "b1", t0, `{
		"team_members":{"created":[{"id":"m2","team_id":"t1","user_id":"bob"}]},
		"projects":{"created":[{"id":"p2","team_id":"t1","name":"squat"}]}}`)
	eq(t, "squatter team_members", Rejected(r, "team_members"), []string{"m2"})
	eq(t, "squatter projects", Rejected(r, "projects"), []string{"p2"})
	// A first membership must name the pusher.
	r = h.MustPush("bob", "b1", t0, `{"team_members":{"created":[{"id":"m3","team_id":"t2","user_id":"carol"}]},
		"teams":{"created":[{"id":"t2","name":"Two"}]}}`)
	eq(t, "first member not the pusher", Rejected(r, "team_members"), []string{"m3"})
	eq(t, "its team row", Rejected(r, "teams"), []string{"t2"})
	// Rows of a group with no members cannot be created without founding it.
	r = h.MustPush("bob", "b1", t0, `{"projects":{"created":[{"id":"p3","team_id":"t3","name":"orphan"}]}}`)
	eq(t, "orphan row", Rejected(r, "projects"), []string{"p3"})
	// A record naming no group is nobody's.
	r = h.MustPush("alice", "a1", t0, `{"projects":{"created":[{"id":"p4","name":"no team"}]}}`)
	eq(t, "no group", Rejected(r, "projects"), []string{"p4"})

	bob := h.PullFrom("bob", "b1", 0)
	for _, table := range []string{"teams", "team_members", "projects"} {
		eq(t, "bob sees "+table, IDs(tc(bob, table).Created), []string{})
	}
	alice := h.PullFrom("alice", "a2", 0)
	eq(t, "alice projects", IDs(tc(alice, "projects").Created), []string{"p1"})
	eq(t, "alice members", IDs(tc(alice, "team_members").Created), []string{"m1"})

	// After everyone left, the team's rows stay and nobody can claim it by push.
	h.MustPush("alice", "a1", alice.Timestamp, `{"team_members":{"deleted":["m1"]}}`)
	r = h.MustPush("bob", "b1", alice.Timestamp, `{"team_members":{"created":[{"id":"m5","team_id":"t1","user_id":"bob"}]}}`)
	eq(t, "claiming an abandoned team", Rejected(r, "team_members"), []string{"m5"})
}

func testJoinBringsOldRows(t *testing.T, h *Harness) {
	t0 := now(h, "alice")
	team(h, "alice", "a1", t0, "t1")
	h.MustPush("alice", "a1", t0, `{"projects":{"created":[{"id":"p1","team_id":"t1","name":"old"}]},
		"tasks":{"created":[{"id":"k1","team_id":"t1","title":"old task"},{"id":"k2","team_id":"t1","title":"done","done":true}]}}`)
	h.MustPush("alice", "a1", t0, `{"tasks":{"deleted":["k2"]}}`)
	bob0 := h.PullFrom("bob", "b1", 0)
	eq(t, "bob before", IDs(tc(bob0, "tasks").Created), []string{})
	time.Sleep(2 * time.Millisecond)
	member(h, "alice", "a1", bob0.Timestamp, "t1", "bob")

	// Bob's next pull brings the whole team as created, however old, no tombstones.
	r := h.PullFrom("bob", "b1", bob0.Timestamp)
	eq(t, "teams created", IDs(tc(r, "teams").Created), []string{"t1"})
	eq(t, "members created", IDs(tc(r, "team_members").Created), []string{"m-t1-alice", "m-t1-bob"})
	eq(t, "projects created", IDs(tc(r, "projects").Created), []string{"p1"})
	eq(t, "tasks created", IDs(tc(r, "tasks").Created), []string{"k1"})
	eq(t, "tasks updated", IDs(tc(r, "tasks").Updated), []string{})
	eq(t, "tasks deleted", Deleted(r, "tasks"), []string{})
	eq(t, "values", tc(r, "tasks").Created[0], map[string]any{"id": "k1", "team_id": "t1", "title": "old task", "done": false})
	// Nothing again after that.
	r2 := h.PullFrom("bob", "b1", r.Timestamp)
	eq(t, "nothing more", IDs(tc(r2, "tasks").Created), []string{})
	// Bob writes to the team now; alice's device gets it.
	a := h.PullFrom("alice", "a1", 0).Timestamp
	rr := h.MustPush("bob", "b1", r.Timestamp, `{"tasks":{"updated":[{"id":"k1","team_id":"t1","title":"by bob"}],"created":[{"id":"k3","team_id":"t1","title":"new"}]}}`)
	eq(t, "member push rejected", rr.RejectedIDs, map[string][]string(nil))
	ra := h.PullFrom("alice", "a1", a)
	eq(t, "alice updated", IDs(tc(ra, "tasks").Updated), []string{"k1"})
	eq(t, "alice created", IDs(tc(ra, "tasks").Created), []string{"k3"})

	// A row this device pushed itself comes back updated in a grant (no lost delete):
	// carol founds t2 on device c1, then joins t1 and t2's rows are already hers.
	c0 := now(h, "carol")
	team(h, "carol", "c1", c0, "t2")
	member(h, "alice", "a1", c0, "t1", "carol")
	rc := h.PullFrom("carol", "c1", c0)
	eq(t, "carol t1+t2 teams created", IDs(tc(rc, "teams").Created), []string{"t1"})
	eq(t, "carol own team updated", IDs(tc(rc, "teams").Updated), []string{"t2"})
}

func testLeaveDeletes(t *testing.T, h *Harness) {
	t0 := now(h, "alice")
	team(h, "alice", "a1", t0, "t1")
	team(h, "bob", "b1", t0, "t2")
	member(h, "alice", "a1", t0, "t1", "bob")
	h.MustPush("alice", "a1", t0, `{"projects":{"created":[{"id":"p1","team_id":"t1","name":"x"}]},
		"tasks":{"created":[{"id":"k1","team_id":"t1","title":"a"},{"id":"k2","team_id":"t1","title":"b"}]}}`)
	h.MustPush("bob", "b1", t0, `{"tasks":{"created":[{"id":"k9","team_id":"t2","title":"bob's own team"}]},"notes":{"created":[{"id":"n1","body":"mine"}]}}`)
	b := h.PullFrom("bob", "b1", 0)
	eq(t, "bob has t1 and t2 tasks", IDs(tc(b, "tasks").Created), []string{"k1", "k2", "k9"})
	// After bob's pull: one task changes, then bob is removed.
	time.Sleep(2 * time.Millisecond)
	h.MustPush("alice", "a1", b.Timestamp, `{"tasks":{"updated":[{"id":"k2","title":"changed"}]}}`)
	h.MustPush("alice", "a1", b.Timestamp, `{"team_members":{"deleted":["m-t1-bob"]}}`)
	r := h.PullFrom("bob", "b1", b.Timestamp)
	eq(t, "teams deleted", Deleted(r, "teams"), []string{"t1"})
	eq(t, "members deleted", Deleted(r, "team_members"), []string{"m-t1-alice", "m-t1-bob"})
	eq(t, "projects deleted", Deleted(r, "projects"), []string{"p1"})
	eq(t, "tasks deleted", Deleted(r, "tasks"), []string{"k1", "k2"})
	eq(t, "no task updated", IDs(tc(r, "tasks").Updated), []string{})
	eq(t, "no task created", IDs(tc(r, "tasks").Created), []string{})
	// Bob keeps his own team and notes.
	f := h.PullFrom("bob", "b2", 0)
	eq(t, "bob's tasks now", IDs(tc(f, "tasks").Created), []string{"k9"})
	eq(t, "bob's notes", IDs(tc(f, "notes").Created), []string{"n1"})
	// And bob can no longer write t1.
	rr := h.MustPush("bob", "b1", r.Timestamp, `{"tasks":{"updated":[{"id":"k1","title":"sneak"}],"deleted":["k2"]}}`)
	eq(t, "ex-member push", Rejected(rr, "tasks"), []string{"k1", "k2"})
	// Alice still sees t1 unharmed.
	a := h.PullFrom("alice", "a2", 0)
	eq(t, "alice tasks", IDs(tc(a, "tasks").Created), []string{"k1", "k2"})
}

func testMoveBetweenGroups(t *testing.T, h *Harness) {
	t0 := now(h, "alice")
	team(h, "alice", "a1", t0, "A")
	team(h, "bob", "b1", t0, "B")
	member(h, "alice", "a1", t0, "A", "carol")
	member(h, "bob", "b1", t0, "B", "carol")
	h.MustPush("alice", "a1", t0, `{"tasks":{"created":[{"id":"x","team_id":"A","title":"moving"}]}}`)
	sa := h.PullFrom("alice", "a1", 0).Timestamp
	sb := h.PullFrom("bob", "b1", 0)
	eq(t, "bob does not see x", IDs(tc(sb, "tasks").Created), []string{})
	sc := h.PullFrom("carol", "c1", 0)
	eq(t, "carol sees x", IDs(tc(sc, "tasks").Created), []string{"x"})
	// Alice may not move it into B (she is not in B): refused, nothing changes.
	r := h.MustPush("alice", "a1", sa, `{"tasks":{"updated":[{"id":"x","team_id":"B"}]}}`)
	eq(t, "move into a group not joined", Rejected(r, "tasks"), []string{"x"})
	// Carol, in both, moves it.
	time.Sleep(2 * time.Millisecond)
	r = h.MustPush("carol", "c1", sc.Timestamp, `{"tasks":{"updated":[{"id":"x","team_id":"B","title":"moved"}]}}`)
	eq(t, "carol's move", r.RejectedIDs, map[string][]string(nil))
	ra := h.PullFrom("alice", "a1", sa)
	eq(t, "alice: deleted", Deleted(ra, "tasks"), []string{"x"})
	eq(t, "alice: not updated", IDs(tc(ra, "tasks").Updated), []string{})
	rb := h.PullFrom("bob", "b1", sb.Timestamp)
	eq(t, "bob: created", IDs(tc(rb, "tasks").Created), []string{"x"})
	eq(t, "bob: values", tc(rb, "tasks").Created[0]["title"], "moved")
	rc := h.PullFrom("carol", "c2", sc.Timestamp)
	eq(t, "carol (other device): updated", IDs(tc(rc, "tasks").Updated), []string{"x"})
	eq(t, "carol: not created", IDs(tc(rc, "tasks").Created), []string{})
	eq(t, "carol: not deleted", Deleted(rc, "tasks"), []string{})
	// Moved back and forth within one pull interval: B→A→B leaves alice nothing.
	sa2 := h.PullFrom("alice", "a1", 0).Timestamp
	time.Sleep(2 * time.Millisecond)
	h.MustPush("carol", "c1", rc.Timestamp, `{"tasks":{"updated":[{"id":"x","team_id":"A"}]}}`)
	h.MustPush("carol", "c1", rc.Timestamp, `{"tasks":{"updated":[{"id":"x","team_id":"B"}]}}`)
	ra = h.PullFrom("alice", "a1", sa2)
	eq(t, "alice after A and back: nothing", []any{IDs(tc(ra, "tasks").Created), IDs(tc(ra, "tasks").Updated), Deleted(ra, "tasks")}, []any{[]string{}, []string{}, []string{}})
	// Bob: A→B move-in when he had it before stays updated.
	rb = h.PullFrom("bob", "b1", rb.Timestamp)
	eq(t, "bob after B→A→B: updated", IDs(tc(rb, "tasks").Updated), []string{"x"})
	eq(t, "bob: not deleted", Deleted(rb, "tasks"), []string{})
	// A deletion in B reaches bob and carol, not alice.
	sa3 := h.PullFrom("alice", "a1", 0).Timestamp
	h.MustPush("bob", "b1", rb.Timestamp, `{"tasks":{"deleted":["x"]}}`)
	eq(t, "carol sees the deletion", Deleted(h.PullFrom("carol", "c2", rc.Timestamp), "tasks"), []string{"x"})
	eq(t, "alice does not", Deleted(h.PullFrom("alice", "a1", sa3), "tasks"), []string{})
}

func testNonMemberPush(t *testing.T, h *Harness) {
	t0 := now(h, "alice")
	team(h, "alice", "a1", t0, "t1")
	h.MustPush("alice", "a1", t0, `{"tasks":{"created":[{"id":"k1","team_id":"t1","title":"a"},{"id":"k2","team_id":"t1","title":"b"}]}}`)
	s := now(h, "mallory")
	r := h.MustPush("mallory", "m1", s, `{
		"tasks":{"created":[{"id":"k1","team_id":"t1","title":"overwrite"},{"id":"k3","team_id":"t1","title":"inject"},{"id":"k4","team_id":"m","title":"own?"}],
			"updated":[{"id":"k2","title":"changed"}],"deleted":[]},
		"team_members":{"created":[{"id":"mm","team_id":"t1","user_id":"mallory"}],"updated":[{"id":"m-t1-alice","user_id":"mallory"}]},
		"teams":{"deleted":["t1"]},
		"notes":{"created":[{"id":"n1","body":"mine"}]}}`)
	eq(t, "tasks rejected", Rejected(r, "tasks"), []string{"k1", "k2", "k3", "k4"})
	eq(t, "members rejected", Rejected(r, "team_members"), []string{"m-t1-alice", "mm"})
	eq(t, "teams rejected", Rejected(r, "teams"), []string{"t1"})
	eq(t, "notes applied", Rejected(r, "notes"), []string{})
	a := h.PullFrom("alice", "a2", 0)
	eq(t, "alice's tasks intact", tc(a, "tasks").Created, []map[string]any{
		{"id": "k1", "team_id": "t1", "title": "a", "done": false}, {"id": "k2", "team_id": "t1", "title": "b", "done": false}})
	eq(t, "alice's members intact", IDs(tc(a, "team_members").Created), []string{"m-t1-alice"})
	eq(t, "team intact", IDs(tc(a, "teams").Created), []string{"t1"})
	m := h.PullFrom("mallory", "m1", 0)
	eq(t, "mallory notes", IDs(tc(m, "notes").Created), []string{"n1"})
	eq(t, "mallory tasks", IDs(tc(m, "tasks").Created), []string{})
	eq(t, "mallory incremental", Deleted(h.PullFrom("mallory", "m1", s), "tasks"), []string{})
}

// serverWrite writes rows as the app's backend would: a store transaction with no
// pushing user.
func serverWrite(h *Harness, table string, ops ...server.Op) int64 {
	h.T.Helper()
	tb := h.Schema.Table(table)
	var v int64
	err := h.Store.Write(context.Background(), func(tx server.WriteTx) error {
		var err error
		if v, err = tx.Version(); err != nil {
			return err
		}
		return tx.Apply(tb, ops)
	})
	if err != nil {
		h.T.Fatal(err)
	}
	return v
}

func testReadOnlyAndPublic(t *testing.T, h *Harness) {
	t0 := now(h, "alice")
	team(h, "alice", "a1", t0, "t1")
	// Members may not write a read-only table, nobody may write a public one.
	r := h.MustPush("alice", "a1", t0, `{"audit":{"created":[{"id":"au1","team_id":"t1","text":"forged"}]},
		"tags":{"created":[{"id":"g1","label":"mine"}]},"projects":{"created":[{"id":"p1","team_id":"t1","name":"ok"}]}}`)
	eq(t, "audit rejected", Rejected(r, "audit"), []string{"au1"})
	eq(t, "tags rejected", Rejected(r, "tags"), []string{"g1"})
	eq(t, "projects applied", Rejected(r, "projects"), []string{})
	s := h.PullFrom("bob", "b1", 0).Timestamp
	sa := h.PullFrom("alice", "a1", 0).Timestamp
	// The backend writes both.
	serverWrite(h, "audit", server.Op{Kind: server.OpInsert, ID: "au2", Values: []any{"t1", "by the backend"}, Owner: "", Group: "t1"})
	serverWrite(h, "tags", server.Op{Kind: server.OpInsert, ID: "g2", Values: []any{"urgent"}})
	for _, u := range []string{"bob", "carol"} {
		p := h.PullFrom(u, "x", s)
		eq(t, u+" public created", IDs(tc(p, "tags").Created), []string{"g2"})
		eq(t, u+" no audit", IDs(tc(p, "audit").Created), []string{})
	}
	p := h.PullFrom("alice", "a1", sa)
	eq(t, "alice audit", IDs(tc(p, "audit").Created), []string{"au2"})
	eq(t, "alice tags", IDs(tc(p, "tags").Created), []string{"g2"})
	// Clients may not update or delete them either.
	r = h.MustPush("alice", "a1", p.Timestamp, `{"audit":{"updated":[{"id":"au2","text":"x"}]},"tags":{"deleted":["g2"]}}`)
	eq(t, "audit update rejected", Rejected(r, "audit"), []string{"au2"})
	eq(t, "tag delete rejected", Rejected(r, "tags"), []string{"g2"})
	// A backend delete of a public row reaches everyone.
	serverWrite(h, "tags", server.Op{Kind: server.OpDelete, ID: "g2"})
	eq(t, "bob public deleted", Deleted(h.PullFrom("bob", "b1", s), "tags"), []string{"g2"})
}

func testAccessOwnerTable(t *testing.T, h *Harness) {
	t0 := now(h, "alice")
	h.MustPush("alice", "a1", t0, `{"notes":{"created":[{"id":"n1","body":"private"}]}}`)
	r := h.MustPush("bob", "b1", t0, `{"notes":{"updated":[{"id":"n1","body":"stolen"}]}}`)
	eq(t, "bob rejected", Rejected(r, "notes"), []string{"n1"})
	eq(t, "bob sees nothing", IDs(tc(h.PullFrom("bob", "b1", 0), "notes").Created), []string{})
	eq(t, "alice no device: updated", IDs(tc(h.PullFrom("alice", "", t0), "notes").Updated), []string{"n1"})
}

func testRejoin(t *testing.T, h *Harness) {
	t0 := now(h, "alice")
	team(h, "alice", "a1", t0, "t1")
	member(h, "alice", "a1", t0, "t1", "bob")
	h.MustPush("alice", "a1", t0, `{"tasks":{"created":[{"id":"k1","team_id":"t1","title":"a"},{"id":"k2","team_id":"t1","title":"b"}]}}`)
	b := h.PullFrom("bob", "b1", 0)
	time.Sleep(2 * time.Millisecond)
	h.MustPush("alice", "a1", b.Timestamp, `{"team_members":{"deleted":["m-t1-bob"]}}`)
	h.MustPush("alice", "a1", b.Timestamp, `{"tasks":{"updated":[{"id":"k2","title":"while away"}]}}`)
	h.MustPush("alice", "a1", b.Timestamp, `{"team_members":{"created":[{"id":"m-t1-bob2","team_id":"t1","user_id":"bob"}]}}`)
	// Bob was a member at his last pull and is one now: only the changes come.
	r := h.PullFrom("bob", "b1", b.Timestamp)
	eq(t, "tasks updated", IDs(tc(r, "tasks").Updated), []string{"k2"})
	eq(t, "tasks created", IDs(tc(r, "tasks").Created), []string{})
	eq(t, "members", []any{IDs(tc(r, "team_members").Created), Deleted(r, "team_members")}, []any{[]string{"m-t1-bob2"}, []string{"m-t1-bob"}})
}

func testRevocationPurged(t *testing.T, h *Harness) {
	t0 := now(h, "alice")
	team(h, "alice", "a1", t0, "t1")
	member(h, "alice", "a1", t0, "t1", "bob")
	b := h.PullFrom("bob", "b1", 0)
	time.Sleep(2 * time.Millisecond)
	h.MustPush("alice", "a1", b.Timestamp, `{"team_members":{"deleted":["m-t1-bob"]}}`)
	now := h.PullFrom("alice", "a1", 0).Timestamp
	if _, err := h.Store.PurgeTombstones(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	r := h.PullFrom("bob", "b1", b.Timestamp)
	eq(t, "strategy", r.Strategy, melonsync.StrategyReplacement)
	eq(t, "replacement has no team", IDs(tc(r, "teams").Created), []string{})
}

func testMembershipMovesUser(t *testing.T, h *Harness) {
	t0 := now(h, "alice")
	team(h, "alice", "a1", t0, "t1")
	member(h, "alice", "a1", t0, "t1", "bob")
	h.MustPush("alice", "a1", t0, `{"tasks":{"created":[{"id":"k1","team_id":"t1","title":"a"}]}}`)
	b := h.PullFrom("bob", "b1", 0)
	c := h.PullFrom("carol", "c1", 0)
	time.Sleep(2 * time.Millisecond)
	// The membership row is handed from bob to carol.
	r := h.MustPush("alice", "a1", b.Timestamp, `{"team_members":{"updated":[{"id":"m-t1-bob","user_id":"carol"}]}}`)
	eq(t, "hand-over", r.RejectedIDs, map[string][]string(nil))
	rb := h.PullFrom("bob", "b1", b.Timestamp)
	eq(t, "bob loses the team", Deleted(rb, "tasks"), []string{"k1"})
	rc := h.PullFrom("carol", "c1", c.Timestamp)
	eq(t, "carol gets the team", IDs(tc(rc, "tasks").Created), []string{"k1"})
}

func testAccessFeed(t *testing.T, h *Harness) {
	t0 := now(h, "alice")
	team(h, "alice", "a1", t0, "t1")
	member(h, "alice", "a1", t0, "t1", "bob")
	feed := h.Svc.Feed()
	bob, stopB := feed.Subscribe("bob", "")
	defer stopB()
	carol, stopC := feed.Subscribe("carol", "")
	defer stopC()
	drain := func(ch <-chan int64) {
		for {
			select {
			case <-ch:
			default:
				return
			}
		}
	}
	expect := func(what string, ch <-chan int64, want bool) {
		t.Helper()
		select {
		case <-ch:
			if !want {
				t.Errorf("%s: got an event", what)
			}
		case <-time.After(200 * time.Millisecond):
			if want {
				t.Errorf("%s: no event", what)
			}
		}
	}
	drain(bob)
	drain(carol)
	h.MustPush("alice", "a1", t0, `{"tasks":{"created":[{"id":"k1","team_id":"t1","title":"a"}]}}`)
	expect("member bob", bob, true)
	expect("non-member carol", carol, false)
	// A removed member is told (the removal is a change they must pull).
	h.MustPush("alice", "a1", t0, `{"team_members":{"deleted":["m-t1-bob"]}}`)
	expect("removed bob", bob, true)
	h.MustPush("alice", "a1", t0, `{"tasks":{"created":[{"id":"k2","team_id":"t1","title":"b"}]}}`)
	expect("ex-member bob", bob, false)
}
