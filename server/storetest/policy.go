package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// PolicySchema is the schema of the conflict-policy cases: four tables with the same
// columns, one per policy.
const PolicySchema = `{
  "version": 1,
  "tables": [
    {"name": "t_reject", "columns": [
      {"name": "title", "type": "string"}, {"name": "done", "type": "boolean"},
      {"name": "note", "type": "string", "isOptional": true}, {"name": "updated_at", "type": "number"}]},
    {"name": "t_client", "columns": [
      {"name": "title", "type": "string"}, {"name": "done", "type": "boolean"},
      {"name": "note", "type": "string", "isOptional": true}, {"name": "updated_at", "type": "number"}]},
    {"name": "t_server", "columns": [
      {"name": "title", "type": "string"}, {"name": "done", "type": "boolean"},
      {"name": "note", "type": "string", "isOptional": true}, {"name": "updated_at", "type": "number"}]},
    {"name": "t_lww", "columns": [
      {"name": "title", "type": "string"}, {"name": "done", "type": "boolean"},
      {"name": "note", "type": "string", "isOptional": true}, {"name": "updated_at", "type": "number"}]}
  ],
  "conflicts": {
    "t_reject": "reject",
    "t_client": "client-wins",
    "t_server": "server-wins",
    "t_lww": {"last-write-wins": "updated_at"}
  }
}`

// NewPolicyHarness prepares store with PolicySchema.
func NewPolicyHarness(t testing.TB, store server.Store) *Harness {
	s, err := schema.Parse([]byte(PolicySchema))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Prepare(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &Harness{T: t, Svc: server.New(store, s), Store: store, Schema: s}
}

// runPolicies runs the conflict-policy and write-hook cases (SPEC §9).
func runPolicies(t *testing.T, newStore func(t *testing.T) server.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h *Harness)
	}{
		{"Reject", testPolicyReject},
		{"ClientWins", testPolicyClientWins},
		{"ServerWins", testPolicyServerWins},
		{"LastWriteWins", testPolicyLastWriteWins},
		{"DeletedOnServerStaysDeleted", testPolicyDeletedStays},
		{"PushedDeletion", testPolicyPushedDeletion},
		{"OtherUsersRecords", testPolicyOtherUsers},
		{"WholePushOrNothing", testPolicyAtomic},
		{"HookRejects", testHookRejects},
		{"HookRewrites", testHookRewrites},
		{"HookFailures", testHookFailures},
		{"HookTables", testHookTables},
		{"HookRace", testHookRace},
		{"HookAndPolicy", testHookAndPolicy},
	}
	for _, tc := range tests {
		t.Run("Policy/"+tc.name, func(t *testing.T) {
			tc.fn(t, NewPolicyHarness(t, newStore(t)))
		})
	}
}

// rec is a policy-table record: title, done, note, updated_at.
type rec struct {
	Title string
	Done  bool
	At    float64
}

func (r rec) json(id, changed string) string {
	s := fmt.Sprintf(`{"id":%q,"title":%q,"done":%t,"note":"n","updated_at":%g,"_status":"updated"`, id, r.Title, r.Done, r.At)
	if changed != "" {
		s += fmt.Sprintf(`,"_changed":%q`, changed)
	}
	return s + "}"
}

func (r rec) raw(id string) map[string]any {
	return map[string]any{"id": id, "title": r.Title, "done": r.Done, "note": "n", "updated_at": r.At}
}

// scenario is the worked example of docs/conflicts.md: device a creates two tasks,
// devices b and c sync; c renames both; then b, offline since, pushes its edit of
// another column of the first (done) and of the same column of the second (title),
// with updated_at = at.
type scenario struct {
	h       *Harness
	table   string
	diff    string // the record b and c change in different columns
	same    string // the record both rename
	tb      int64  // b's lastPulledAt
	tc      int64  // c's push timestamp
	push    string // b's push
	initial rec
	byC     rec
}

func newScenario(h *Harness, table, prefix string, at float64) *scenario {
	s := &scenario{h: h, table: table, diff: prefix + "diff", same: prefix + "same",
		initial: rec{"first", false, 100}, byC: rec{"by c", false, 200}}
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, fmt.Sprintf(`{%q:{"created":[%s,%s]}}`, table,
		s.initial.json(s.diff, ""), s.initial.json(s.same, "")))
	s.tb = h.PullFrom("alice", "b", t0).Timestamp
	tcBase := h.PullFrom("alice", "c", t0).Timestamp
	s.tc = h.MustPush("alice", "c", tcBase, fmt.Sprintf(`{%q:{"updated":[%s,%s]}}`, table,
		s.byC.json(s.diff, "title,updated_at"), s.byC.json(s.same, "title,updated_at"))).Timestamp
	s.push = fmt.Sprintf(`{%q:{"updated":[%s,%s]}}`, table,
		rec{"first", true, at}.json(s.diff, "done,updated_at"), rec{"by b", false, at}.json(s.same, "title,updated_at"))
	return s
}

// settled checks a push answered 200 with both records resolved, that the final
// values are want (diff, same) for every device — the pusher included — as
// "updated", and that a retried push from b gives the same result.
func (s *scenario) settled(t *testing.T, wantDiff, wantSame rec) {
	t.Helper()
	h := s.h
	resp, err := h.Push("alice", "b", s.tb, s.push)
	if err != nil {
		t.Fatalf("b's push: %v (want it settled by the policy)", err)
	}
	got := append([]string(nil), resp.ResolvedIDs[s.table]...)
	sort.Strings(got)
	eq(t, "resolvedIds", got, sortedIDs(s.diff, s.same))
	if resp.Timestamp <= s.tc {
		t.Errorf("push timestamp %d is not after c's change %d", resp.Timestamp, s.tc)
	}
	s.check(t, "after b's push", true, wantDiff, wantSame)
	// The answer was lost: b pushes the same again. Its own device's write must not
	// pass as "not a conflict": the policy decides the same way again.
	if _, err := h.Push("alice", "b", s.tb, s.push); err != nil {
		t.Fatalf("b's retried push: %v", err)
	}
	s.check(t, "after b's retried push", true, wantDiff, wantSame)
}

// check pulls as a and b since b's last pull and wants both records updated with
// these values; when written, device c — whose push made the server's change — must
// get them too in a pull since its push (the settled record has a new version).
func (s *scenario) check(t *testing.T, when string, written bool, wantDiff, wantSame rec) {
	t.Helper()
	want := []map[string]any{wantDiff.raw(s.diff), wantSame.raw(s.same)}
	sortRecs(want)
	for _, dev := range []struct {
		name  string
		since int64
	}{{"a", s.tb}, {"b", s.tb}, {"c", s.tc}} {
		r := s.h.PullFrom("alice", dev.name, dev.since)
		ch := tc(r, s.table)
		eq(t, when+": device "+dev.name+" pulls as created", IDs(ch.Created), []string{})
		got := append([]map[string]any(nil), ch.Updated...)
		sortRecs(got)
		if dev.name == "c" && !written {
			eq(t, when+": device c pulls", IDs(got), []string{})
			continue
		}
		eq(t, when+": device "+dev.name+" pulls as updated", got, want)
	}
}

func sortedIDs(ids ...string) []string {
	sort.Strings(ids)
	return ids
}

func sortRecs(rs []map[string]any) {
	sort.Slice(rs, func(i, j int) bool { return rs[i]["id"].(string) < rs[j]["id"].(string) })
}

func conflictIDs(t *testing.T, err error, table string) []string {
	t.Helper()
	var me *melonsync.Error
	if !errors.As(err, &me) || me.Code != melonsync.EConflict {
		t.Fatalf("want a conflict, got %v", err)
	}
	ids := append([]string(nil), me.Details["conflicts"].(map[string][]string)[table]...)
	sort.Strings(ids)
	return ids
}

func testPolicyReject(t *testing.T, h *Harness) {
	s := newScenario(h, "t_reject", "r", 300)
	_, err := h.Push("alice", "b", s.tb, s.push)
	eq(t, "conflicting ids", conflictIDs(t, err, "t_reject"), sortedIDs(s.diff, s.same))
	// Nothing was written: the records are c's, and nothing is newer than c's push.
	r := h.PullFrom("alice", "a", s.tc)
	eq(t, "changes after c's push", IDs(tc(r, "t_reject").Updated), []string{})
	s.check(t, "after the refused push", false, s.byC, s.byC)
}

func testPolicyClientWins(t *testing.T, h *Harness) {
	s := newScenario(h, "t_client", "c", 300)
	// Different columns: b's done and updated_at, c's title. Same column: b's title.
	s.settled(t, rec{"by c", true, 300}, rec{"by b", false, 300})

	// Without "_changed", every column sent wins.
	s2 := newScenario(h, "t_client", "n", 300)
	s2.push = strings.ReplaceAll(s2.push, `,"_changed":"done,updated_at"`, "")
	s2.settled(t, rec{"first", true, 300}, rec{"by b", false, 300})
}

func testPolicyServerWins(t *testing.T, h *Harness) {
	s := newScenario(h, "t_server", "s", 300)
	s.settled(t, s.byC, s.byC)
}

func testPolicyLastWriteWins(t *testing.T, h *Harness) {
	newer := newScenario(h, "t_lww", "new", 300)
	newer.settled(t, rec{"first", true, 300}, rec{"by b", false, 300})
	older := newScenario(h, "t_lww", "old", 150)
	older.settled(t, older.byC, older.byC)
	tie := newScenario(h, "t_lww", "tie", 200)
	tie.settled(t, tie.byC, tie.byC)
}

// testPolicyDeletedStays: a record deleted on the server (by device c) is never
// resurrected by a policy: b's update or re-creation of it is still a conflict.
func testPolicyDeletedStays(t *testing.T, h *Harness) {
	for _, table := range []string{"t_reject", "t_client", "t_server", "t_lww"} {
		t0 := h.PullFrom("alice", "a", 0).Timestamp
		id := "del_" + table
		h.MustPush("alice", "a", t0, fmt.Sprintf(`{%q:{"created":[%s]}}`, table, rec{"x", false, 1}.json(id, "")))
		tb := h.PullFrom("alice", "b", t0).Timestamp
		h.MustPush("alice", "c", tb, fmt.Sprintf(`{%q:{"deleted":[%q]}}`, table, id))
		late := rec{"b's edit", true, 9e12}
		for _, kind := range []string{"updated", "created"} {
			_, err := h.Push("alice", "b", tb, fmt.Sprintf(`{%q:{%q:[%s]}}`, table, kind, late.json(id, "title,done,updated_at")))
			eq(t, table+": "+kind+" of a record deleted on the server", conflictIDs(t, err, table), []string{id})
		}
		r := h.PullFrom("alice", "b", tb)
		eq(t, table+": b pulls the deletion", tc(r, table).Deleted, []string{id})
		eq(t, table+": not updated", IDs(tc(r, table).Updated), []string{})
		if got := IDs(tc(h.PullFrom("alice", "z", 0), table).Created); len(got) != 0 {
			t.Errorf("%s: a first sync has %v: the deleted record came back", table, got)
		}
	}
}

// testPolicyPushedDeletion: b deletes a record c has changed since b's pull.
func testPolicyPushedDeletion(t *testing.T, h *Harness) {
	want := map[string]string{"t_reject": "conflict", "t_client": "deleted", "t_server": "kept", "t_lww": "kept"}
	for table, outcome := range want {
		t0 := h.PullFrom("alice", "a", 0).Timestamp
		id := "pd_" + table
		h.MustPush("alice", "a", t0, fmt.Sprintf(`{%q:{"created":[%s]}}`, table, rec{"x", false, 1}.json(id, "")))
		tb := h.PullFrom("alice", "b", t0).Timestamp
		h.MustPush("alice", "c", tb, fmt.Sprintf(`{%q:{"updated":[%s]}}`, table, rec{"by c", false, 2}.json(id, "title,updated_at")))
		resp, err := h.Push("alice", "b", tb, fmt.Sprintf(`{%q:{"deleted":[%q]}}`, table, id))
		r := h.PullFrom("alice", "b", tb)
		switch outcome {
		case "conflict":
			eq(t, table+": conflict", conflictIDs(t, err, table), []string{id})
			eq(t, table+": still there", IDs(tc(r, table).Updated), []string{id})
		case "deleted":
			if err != nil {
				t.Fatalf("%s: %v", table, err)
			}
			eq(t, table+": resolved", resp.ResolvedIDs[table], []string{id})
			eq(t, table+": deleted", tc(r, table).Deleted, []string{id})
		case "kept":
			if err != nil {
				t.Fatalf("%s: %v", table, err)
			}
			eq(t, table+": resolved", resp.ResolvedIDs[table], []string{id})
			eq(t, table+": kept and pulled back", tc(r, table).Updated, []map[string]any{rec{"by c", false, 2}.raw(id)})
			eq(t, table+": not deleted", tc(r, table).Deleted, []string{})
		}
	}
}

// testPolicyOtherUsers: a policy never lets a user write a record they may not.
func testPolicyOtherUsers(t *testing.T, h *Harness) {
	for _, table := range []string{"t_client", "t_server", "t_lww"} {
		t0 := h.PullFrom("alice", "a", 0).Timestamp
		id := "own_" + table
		h.MustPush("alice", "a", t0, fmt.Sprintf(`{%q:{"created":[%s]}}`, table, rec{"alice's", false, 1}.json(id, "")))
		resp, err := h.Push("bob", "b", 0, fmt.Sprintf(`{%q:{"updated":[%s],"deleted":[]}}`, table, rec{"bob's", true, 9e12}.json(id, "title,done,updated_at")))
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		eq(t, table+": rejected", resp.RejectedIDs[table], []string{id})
		eq(t, table+": not resolved", resp.ResolvedIDs[table], []string(nil))
		r := h.PullFrom("alice", "z", 0)
		eq(t, table+": alice's record", tc(r, table).Created, []map[string]any{rec{"alice's", false, 1}.raw(id)})
		if got := IDs(tc(h.PullFrom("bob", "z", 0), table).Created); len(got) != 0 {
			t.Errorf("%s: bob reads %v", table, got)
		}
	}
}

// testPolicyAtomic: a conflict under reject aborts the whole push, the parts other
// policies would have settled included.
func testPolicyAtomic(t *testing.T, h *Harness) {
	a := newScenario(h, "t_reject", "ar", 300)
	b := newScenario(h, "t_client", "ac", 300)
	before := h.PullFrom("alice", "z", 0)
	push := strings.TrimSuffix(a.push, "}") + "," + strings.TrimPrefix(b.push, "{")
	_, err := h.Push("alice", "b", min(a.tb, b.tb), push)
	eq(t, "conflicts", conflictIDs(t, err, "t_reject"), sortedIDs(a.diff, a.same))
	after := h.PullFrom("alice", "z", 0)
	if after.Timestamp != before.Timestamp {
		t.Errorf("a refused push moved the clock: %d → %d", before.Timestamp, after.Timestamp)
	}
	eq(t, "client-wins table unchanged", tc(after, "t_client").Created, tc(before, "t_client").Created)
}
