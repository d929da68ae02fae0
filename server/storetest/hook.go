package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/server"
)

// hookRequest is what a write hook receives.
type hookRequest struct {
	User         string                            `json:"user"`
	Device       string                            `json:"device"`
	LastPulledAt int64                             `json:"lastPulledAt"`
	Changes      map[string]melonsync.TableChanges `json:"changes"`
}

func setHook(t *testing.T, h *Harness, tables []string, fn func(req hookRequest) string) *atomic.Int32 {
	t.Helper()
	var calls atomic.Int32
	err := h.Svc.SetWriteHook(server.HookFunc(func(ctx context.Context, body []byte) ([]byte, error) {
		calls.Add(1)
		var req hookRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Errorf("hook request is not JSON: %v\n%s", err, body)
		}
		return []byte(fn(req)), nil
	}), tables)
	if err != nil {
		t.Fatal(err)
	}
	return &calls
}

func testHookRejects(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "d", 0).Timestamp
	h.MustPush("alice", "d", t0, `{"t_client":{"created":[{"id":"gone","title":"keep me"}]}}`)
	var seen hookRequest
	setHook(t, h, nil, func(req hookRequest) string {
		seen = req
		return `{"rejected":{"t_client":["bad","gone"]},"reasons":{"bad":"title too long","unrelated":"x"}}`
	})
	resp := h.MustPush("alice", "d", t0, `{"t_client":{"created":[{"id":"good","title":"ok"},{"id":"bad","title":"way too long","junk":1}],"deleted":["gone"]}}`)
	eq(t, "rejected", resp.RejectedIDs, map[string][]string{"t_client": {"bad", "gone"}})
	eq(t, "reasons", resp.RejectedReasons, map[string]string{"bad": "title too long"})
	// What the hook saw: who, and the records as sanitized (unknown columns dropped).
	eq(t, "hook user/device/lastPulledAt", []any{seen.User, seen.Device, seen.LastPulledAt}, []any{"alice", "d", t0})
	eq(t, "hook created", seen.Changes["t_client"].Created, []map[string]any{{"id": "good", "title": "ok"}, {"id": "bad", "title": "way too long"}})
	eq(t, "hook deleted", seen.Changes["t_client"].Deleted, []string{"gone"})
	r := h.PullFrom("alice", "z", 0)
	eq(t, "stored", IDs(tc(r, "t_client").Created), []string{"gone", "good"})
}

func testHookRewrites(t *testing.T, h *Harness) {
	setHook(t, h, nil, func(req hookRequest) string {
		return `{"changes":{"t_client":{"created":[{"id":"r1","title":"Trimmed","updated_at":"7"}]}}}`
	})
	t0 := h.PullFrom("alice", "d", 0).Timestamp
	resp := h.MustPush("alice", "d", t0, `{"t_client":{"created":[{"id":"r1","title":"  Trimmed  ","done":true},{"id":"r2","title":"as is"}]}}`)
	// The pusher pulls its own record back, as updated, with the rewritten values.
	r := h.PullFrom("alice", "d", t0)
	got := tc(r, "t_client").Updated
	sortRecs(got)
	eq(t, "pulled back", got, []map[string]any{
		{"id": "r1", "title": "Trimmed", "done": true, "note": nil, "updated_at": 0},
		{"id": "r2", "title": "as is", "done": false, "note": nil, "updated_at": 0},
	})
	if resp.Timestamp < r.Timestamp {
		t.Errorf("push timestamp %d < pull timestamp %d", resp.Timestamp, r.Timestamp)
	}
}

func testHookFailures(t *testing.T, h *Harness) {
	t0 := h.PullFrom("alice", "d", 0).Timestamp
	h.MustPush("alice", "d", t0, `{"t_client":{"created":[{"id":"x","title":"x"}]}}`)
	before := h.PullFrom("alice", "z", 0)
	cases := []struct {
		name   string
		answer string
		err    error
	}{
		{"timeout", "", errors.New("timeout after 5s")},
		{"status 500", "", errors.New("status 500")},
		{"not JSON", "<html>oops</html>", nil},
		{"broken JSON", `{"rejected":`, nil},
		{"an array", `[]`, nil},
		{"wrong types", `{"rejected":{"t_client":"x"}}`, nil},
		{"rejects an id the push did not carry", `{"rejected":{"t_client":["ghost"]}}`, nil},
		{"rejects in a table the push did not carry", `{"rejected":{"t_lww":["n1"]}}`, nil},
		{"rewrites an id the push did not carry", `{"changes":{"t_client":{"updated":[{"id":"ghost","title":"y"}]}}}`, nil},
		{"rewrites an unknown column", `{"changes":{"t_client":{"created":[{"id":"n1","titel":"y"}]}}}`, nil},
		{"rewrites a deletion", `{"changes":{"t_client":{"deleted":["x"]}}}`, nil},
	}
	for _, c := range cases {
		h.Svc.SetWriteHook(server.HookFunc(func(ctx context.Context, body []byte) ([]byte, error) {
			return []byte(c.answer), c.err
		}), nil)
		_, err := h.Push("alice", "d", before.Timestamp, `{"t_client":{"created":[{"id":"n1","title":"new"}],"updated":[{"id":"x","title":"changed"}]}}`)
		if code(err) != melonsync.EUnavailable {
			t.Errorf("%s: want unavailable (503), got %v", c.name, err)
		}
		after := h.PullFrom("alice", "z", 0)
		if after.Timestamp != before.Timestamp {
			t.Errorf("%s: the clock moved: something was written", c.name)
		}
		eq(t, c.name+": records", tc(after, "t_client").Created, tc(before, "t_client").Created)
	}
}

func testHookTables(t *testing.T, h *Harness) {
	if err := h.Svc.SetWriteHook(server.HookFunc(nil), []string{"nope"}); err == nil {
		t.Errorf("a hook on an unknown table was accepted")
	}
	var seen hookRequest
	calls := setHook(t, h, []string{"t_server"}, func(req hookRequest) string {
		seen = req
		return `{"rejected":{"t_server":["s1"]}}`
	})
	t0 := h.PullFrom("alice", "d", 0).Timestamp
	h.MustPush("alice", "d", t0, `{"t_client":{"created":[{"id":"c1"}]}}`)
	if n := calls.Load(); n != 0 {
		t.Errorf("the hook was called %d times for a table it does not see", n)
	}
	resp := h.MustPush("alice", "d", t0, `{"t_client":{"created":[{"id":"c2"}]},"t_server":{"created":[{"id":"s1"},{"id":"s2"}]}}`)
	if _, ok := seen.Changes["t_client"]; ok || len(seen.Changes) != 1 {
		t.Errorf("the hook saw tables %v, want only t_server", seen.Changes)
	}
	eq(t, "rejected", resp.RejectedIDs, map[string][]string{"t_server": {"s1"}})
	r := h.PullFrom("alice", "z", 0)
	eq(t, "t_client", IDs(tc(r, "t_client").Created), []string{"c1", "c2"})
	eq(t, "t_server", IDs(tc(r, "t_server").Created), []string{"s2"})
}

// testHookRace: a pushed record changes on the server while the hook is asked (the
// hook runs before the write transaction). The verdict may be stale, so the hook is
// asked again; a record that keeps changing ends in 503 with nothing of the push
// written.
func testHookRace(t *testing.T, h *Harness) {
	s := newScenario(h, "t_client", "race", 300)
	// Device c writes through another server process on the same store.
	other := &Harness{T: t, Svc: server.New(h.Store, h.Schema), Store: h.Store, Schema: h.Schema}
	var calls atomic.Int32
	interfere, target := 1, s
	hook := server.HookFunc(func(ctx context.Context, body []byte) ([]byte, error) {
		n := int(calls.Add(1))
		if n <= interfere {
			// Device c renames the "same" record again while the hook thinks.
			tc := other.PullFrom("alice", "c", 0).Timestamp
			other.MustPush("alice", "c", tc, fmt.Sprintf(`{"t_client":{"updated":[%s]}}`, rec{fmt.Sprintf("by c again %d", n), false, 250}.json(target.same, "title,updated_at")))
		}
		return []byte(`{"changes":{"t_client":{"updated":[{"id":"` + target.diff + `","note":"checked"}]}}}`), nil
	})
	h.Svc.SetWriteHook(hook, nil)
	resp, err := h.Push("alice", "b", s.tb, s.push)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("the hook was asked %d times, want 2 (once more after the record changed)", n)
	}
	eq(t, "resolved", len(resp.ResolvedIDs["t_client"]), 2)
	r := h.PullFrom("alice", "a", s.tb)
	got := tc(r, "t_client").Updated
	sortRecs(got)
	wantDiff := rec{"by c", true, 300}.raw(s.diff)
	wantDiff["note"] = "checked"
	eq(t, "settled", got, []map[string]any{wantDiff, rec{"by b", false, 300}.raw(s.same)})

	// A record that changes during every ask: 503, and b's push left nothing.
	h.Svc.SetWriteHook(nil, nil)
	s2 := newScenario(h, "t_client", "race2", 300)
	calls.Store(0)
	interfere, target = 100, s2
	h.Svc.SetWriteHook(hook, nil)
	_, err = h.Push("alice", "b", s2.tb, s2.push)
	if code(err) != melonsync.EUnavailable {
		t.Fatalf("want unavailable after records kept changing, got %v", err)
	}
	h.Svc.SetWriteHook(nil, nil)
	r = h.PullFrom("alice", "a", s2.tb)
	for _, rec := range tc(r, "t_client").Updated {
		if rec["id"] == s2.diff && rec["done"] == true || rec["title"] == "by b" {
			t.Errorf("part of the refused push was written: %v", rec)
		}
	}
}

// testHookAndPolicy: the hook rewrites a record that also meets a newer server
// change; under client-wins the rewritten column wins with b's changed columns.
func testHookAndPolicy(t *testing.T, h *Harness) {
	s := newScenario(h, "t_client", "hp", 300)
	setHook(t, h, nil, func(req hookRequest) string {
		return `{"changes":{"t_client":{"updated":[{"id":"` + s.diff + `","note":"reviewed"}]}},"rejected":{"t_client":["` + s.same + `"]},"reasons":{"` + s.same + `":"renaming is closed"}}`
	})
	resp := h.MustPush("alice", "b", s.tb, s.push)
	eq(t, "rejected", resp.RejectedIDs, map[string][]string{"t_client": {s.same}})
	eq(t, "reasons", resp.RejectedReasons, map[string]string{s.same: "renaming is closed"})
	eq(t, "resolved", resp.ResolvedIDs, map[string][]string{"t_client": {s.diff}})
	r := h.PullFrom("alice", "a", s.tb)
	got := tc(r, "t_client").Updated
	sortRecs(got)
	wantDiff := rec{"by c", true, 300}.raw(s.diff)
	wantDiff["note"] = "reviewed"
	eq(t, "values", got, []map[string]any{wantDiff, s.byC.raw(s.same)})
}
