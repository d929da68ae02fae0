// Package admintest is the conformance suite of admin.Store: the same tests run on
// every store (SQLite always, PostgreSQL when a DSN is set).
package admintest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/melonsync/melonsync/admin"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
)

// Store is a sync store that also keeps the admin bookkeeping.
type Store interface {
	server.Store
	admin.Store
}

// Run runs every test on a fresh store from newStore.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store, h *storetest.Harness)
	}{
		{"LogRoundTrip", testLogRoundTrip},
		{"LogQueries", testLogQueries},
		{"LogBounds", testLogBounds},
		{"DeviceSummaries", testDeviceSummaries},
		{"DeviceFlags", testDeviceFlags},
		{"UsersAndCounts", testUsersAndCounts},
		{"Records", testRecords},
		{"BufferedLog", testBufferedLog},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			h := storetest.NewHarness(t, s)
			tc.fn(t, s, h)
		})
	}
}

var ctx = context.Background()

func entry(at int64, user, device, kind string, status int) admin.Entry {
	e := admin.Entry{At: at, User: user, Device: device, Kind: kind, Route: "POST /api/sync/" + kind, Status: status, DurationMS: 1.5}
	if status == 409 {
		e.Code, e.Conflicts, e.NConflicts = "conflict", map[string][]string{"tasks": {"t1", "t2"}}, 2
	}
	return e
}

func appendAll(t *testing.T, s Store, es ...admin.Entry) {
	t.Helper()
	if err := s.AppendLog(ctx, es, admin.Summarize(es), 0); err != nil {
		t.Fatal(err)
	}
}

func testLogRoundTrip(t *testing.T, s Store, _ *storetest.Harness) {
	e := admin.Entry{At: 1_700_000_000_123, User: "alice", Device: "phone", Kind: admin.KindPush, Route: "POST /sync",
		SchemaVersion: 3, LastPulledAt: 1_700_000_000_000, Timestamp: 1_700_000_000_200,
		Tables:   map[string]admin.Counts{"tasks": {Created: 2, Updated: 1, Deleted: 1}},
		Rejected: map[string][]string{"projects": {"p9"}}, NRejected: 1, Strategy: "", Status: 200, DurationMS: 3.25}
	appendAll(t, s, e)
	got, err := s.Log(ctx, admin.LogQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d entries, want 1", len(got))
	}
	g := got[0]
	if g.ID <= 0 {
		t.Errorf("id = %d, want > 0", g.ID)
	}
	g.ID = 0
	want := fmt.Sprintf("%+v", e)
	if fmt.Sprintf("%+v", g) != want {
		t.Errorf("entry read back:\n got %+v\nwant %s", g, want)
	}
	if n, err := s.LogCount(ctx); err != nil || n != 1 {
		t.Errorf("LogCount = %d, %v; want 1", n, err)
	}
}

func testLogQueries(t *testing.T, s Store, _ *storetest.Harness) {
	now := time.Now().UnixMilli()
	appendAll(t, s,
		entry(now-3*60_000, "alice", "phone", admin.KindPull, 200),
		entry(now-2*60_000, "alice", "phone", admin.KindPush, 409),
		entry(now-2*60_000, "alice", "laptop", admin.KindPush, 200),
		entry(now-60_000, "bob", "", admin.KindPull, 200),
		entry(now, "bob", "", admin.KindPush, 400),
	)
	check := func(q admin.LogQuery, want int) []admin.Entry {
		t.Helper()
		got, err := s.Log(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != want {
			t.Errorf("Log(%+v): %d entries, want %d", q, len(got), want)
		}
		for i := 1; i < len(got); i++ {
			if got[i].ID >= got[i-1].ID {
				t.Errorf("Log(%+v) not newest first: ids %d then %d", q, got[i-1].ID, got[i].ID)
			}
		}
		return got
	}
	all := check(admin.LogQuery{Limit: 100}, 5)
	check(admin.LogQuery{Limit: 2}, 2)
	check(admin.LogQuery{User: "alice", AnyDevice: true, Limit: 100}, 3)
	check(admin.LogQuery{User: "alice", Device: "phone", Limit: 100}, 2)
	check(admin.LogQuery{User: "bob", Device: "", Limit: 100}, 2)
	check(admin.LogQuery{Kind: admin.KindPush, Limit: 100}, 3)
	check(admin.LogQuery{Before: all[1].ID, Limit: 100}, 3)
	if c := all[3]; c.User != "alice" || c.Status != 409 || len(c.Conflicts["tasks"]) != 2 {
		t.Errorf("the conflict entry reads back as %+v", c)
	}
	series, err := s.LogSeries(ctx, now-10*60_000)
	if err != nil {
		t.Fatal(err)
	}
	var pulls, pushes, conflicts, errs int
	for _, b := range series {
		if b.Start%60_000 != 0 {
			t.Errorf("bucket start %d is not a minute", b.Start)
		}
		pulls, pushes, conflicts, errs = pulls+b.Pulls, pushes+b.Pushes, conflicts+b.Conflicts, errs+b.Errors
	}
	if pulls != 2 || pushes != 3 || conflicts != 1 || errs != 1 {
		t.Errorf("series: pulls %d pushes %d conflicts %d errors %d; want 2 3 1 1", pulls, pushes, conflicts, errs)
	}
	if later, _ := s.LogSeries(ctx, now+60_000); len(later) != 0 {
		t.Errorf("series after the last entry: %+v", later)
	}
}

func testLogBounds(t *testing.T, s Store, _ *storetest.Harness) {
	now := time.Now().UnixMilli()
	var es []admin.Entry
	for i := range 50 {
		es = append(es, entry(now-int64(50-i)*1000, "alice", "phone", admin.KindPush, 200))
	}
	appendAll(t, s, es...)
	if _, err := s.TrimLog(ctx, 30, 0); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Log(ctx, admin.LogQuery{Limit: 100})
	if len(got) != 30 {
		t.Fatalf("after trimming to 30: %d entries", len(got))
	}
	if got[len(got)-1].At != es[20].At {
		t.Errorf("the oldest kept is at %d, want %d (the newest 30 kept)", got[len(got)-1].At, es[20].At)
	}
	// Age: entries older than 10 s go.
	if _, err := s.TrimLog(ctx, 1000, now-10_000); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Log(ctx, admin.LogQuery{Limit: 100})
	if len(got) != 10 {
		t.Errorf("after trimming by age: %d entries, want 10", len(got))
	}
}

func testDeviceSummaries(t *testing.T, s Store, _ *storetest.Harness) {
	base := time.Now().UnixMilli() - 60_000
	pull := entry(base, "alice", "phone", admin.KindPull, 200)
	pull.LastPulledAt, pull.Timestamp, pull.SchemaVersion = 100, 200, 3
	appendAll(t, s, pull, entry(base+1, "alice", "phone", admin.KindPush, 409))
	appendAll(t, s, entry(base+2, "alice", "phone", admin.KindPush, 409), entry(base+3, "alice", "laptop", admin.KindPull, 500))
	devs, err := s.Devices(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 {
		t.Fatalf("%d devices, want 2: %+v", len(devs), devs)
	}
	byName := map[string]admin.Device{}
	for _, d := range devs {
		byName[d.Device] = d
	}
	p := byName["phone"]
	if p.Pulls != 1 || p.Pushes != 2 || p.ConflictsInRow != 2 || p.LastPull != base || p.LastPush != 0 ||
		p.LastPulledAt != 100 || p.LastTimestamp != 200 || p.SchemaVersion != 3 || p.LastStatus != 409 || p.FirstSeen != base || p.LastSeen != base+2 {
		t.Errorf("phone: %+v", p)
	}
	if l := byName["laptop"]; l.LastStatus != 500 || l.LastPull != 0 || l.Pulls != 1 {
		t.Errorf("laptop: %+v", l)
	}
	// A successful push ends the run of conflicts.
	appendAll(t, s, entry(base+4, "alice", "phone", admin.KindPush, 200), entry(base+5, "alice", "phone", admin.KindPush, 409))
	devs, _ = s.Devices(ctx, "alice")
	for _, d := range devs {
		if d.Device == "phone" && (d.ConflictsInRow != 1 || d.LastPush != base+4) {
			t.Errorf("phone after a successful push and a conflict: %+v", d)
		}
	}
	if n, err := s.DevicesSeen(ctx, base); err != nil || n != 2 {
		t.Errorf("DevicesSeen = %d, %v; want 2", n, err)
	}
	if n, _ := s.DevicesSeen(ctx, base+3); n != 2 {
		t.Errorf("DevicesSeen(base+3) = %d; want 2", n)
	}
	if n, _ := s.DevicesSeen(ctx, base+6); n != 0 {
		t.Errorf("DevicesSeen(later) = %d; want 0", n)
	}
}

func testDeviceFlags(t *testing.T, s Store, _ *storetest.Harness) {
	state := func(user, device string) admin.State {
		t.Helper()
		st, err := s.DeviceState(ctx, user, device)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := state("alice", "phone"); st.Revoked || st.Replace {
		t.Fatalf("an unknown device: %+v", st)
	}
	if err := s.RequestReplacement(ctx, "alice", "phone", false, 1000); err != nil {
		t.Fatal(err)
	}
	if st := state("alice", "phone"); !st.Replace {
		t.Error("a replacement requested for phone is not pending")
	}
	if st := state("alice", "laptop"); st.Replace {
		t.Error("a replacement requested for phone is pending for laptop")
	}
	if err := s.MarkReplaced(ctx, "alice", "phone", 1001); err != nil {
		t.Fatal(err)
	}
	if st := state("alice", "phone"); st.Replace {
		t.Error("the replacement is still pending after it was served")
	}
	// A user-wide request covers devices seen or not, and the one without a header.
	if err := s.RequestReplacement(ctx, "alice", "", true, 2000); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"phone", "laptop", ""} {
		if !state("alice", d).Replace {
			t.Errorf("user-wide replacement not pending for device %q", d)
		}
	}
	if state("bob", "phone").Replace {
		t.Error("alice's replacement is pending for bob")
	}
	s.MarkReplaced(ctx, "alice", "laptop", 2001)
	if state("alice", "laptop").Replace || !state("alice", "phone").Replace {
		t.Error("serving laptop's replacement must not serve phone's")
	}
	if err := s.SetRevoked(ctx, "alice", "phone", 3000); err != nil {
		t.Fatal(err)
	}
	if !state("alice", "phone").Revoked || state("alice", "laptop").Revoked || state("bob", "phone").Revoked {
		t.Error("revocation applies to the wrong devices")
	}
	devs, _ := s.Devices(ctx, "alice")
	for _, d := range devs {
		if d.Device == "phone" && (d.RevokedAt != 3000 || d.ReplaceRequested != 2000) {
			t.Errorf("phone: %+v", d)
		}
	}
	s.SetRevoked(ctx, "alice", "phone", 0)
	if state("alice", "phone").Revoked {
		t.Error("a restored device is still revoked")
	}
}

func testUsersAndCounts(t *testing.T, s Store, h *storetest.Harness) {
	h.MustPush("carol_x", "d1", 0, `{"projects":{"created":[{"id":"p1","name":"A"},{"id":"p2","name":"B"}],"updated":[],"deleted":[]}}`)
	h.MustPush("carol_x", "d1", 0, `{"projects":{"created":[],"updated":[],"deleted":["p2"]}}`)
	h.MustPush("dave", "d1", 0, `{"tasks":{"created":[{"id":"t1","name":"x"}],"updated":[],"deleted":[]}}`)
	now := time.Now().UnixMilli()
	appendAll(t, s, entry(now, "alice", "phone", admin.KindPull, 200), entry(now, "alice", "laptop", admin.KindPull, 200), entry(now-5, "dave", "d1", admin.KindPush, 200))
	users, err := s.Users(ctx, h.Schema, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, u := range users {
		got = append(got, u.User)
	}
	if fmt.Sprint(got) != "[alice dave carol_x]" {
		t.Errorf("users = %v, want [alice dave carol_x] (seen first, newest first; then owners)", got)
	}
	if users[0].Devices != 2 {
		t.Errorf("alice has %d devices, want 2", users[0].Devices)
	}
	for q, want := range map[string]string{"a": "[alice dave carol_x]", "ro": "[carol_x]", "_": "[carol_x]", "%": "[]", "zz": "[]"} {
		us, err := s.Users(ctx, h.Schema, q, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := []string{}
		for _, u := range us {
			got = append(got, u.User)
		}
		if fmt.Sprint(got) != want {
			t.Errorf("users matching %q = %v, want %s", q, got, want)
		}
	}
	if us, _ := s.Users(ctx, h.Schema, "", 1); len(us) != 1 {
		t.Errorf("limit 1 gave %d users", len(us))
	}
	if n, err := s.UserCount(ctx, h.Schema); err != nil || n != 3 {
		t.Errorf("UserCount = %d, %v; want 3", n, err)
	}
	counts, err := s.TableCounts(ctx, h.Schema, "")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(counts) != "[{projects 1 1} {tasks 1 0} {comments 0 0}]" {
		t.Errorf("table counts = %v", counts)
	}
	counts, _ = s.TableCounts(ctx, h.Schema, "dave")
	if fmt.Sprint(counts) != "[{projects 0 0} {tasks 1 0} {comments 0 0}]" {
		t.Errorf("dave's table counts = %v", counts)
	}
}

func testRecords(t *testing.T, s Store, h *storetest.Harness) {
	h.MustPush("alice", "phone", 0, `{"tasks":{"created":[{"id":"t1","name":"one","project_id":"p1","position":2},{"id":"t2","name":"two","project_id":"p2","is_done":true}],"updated":[],"deleted":[]}}`)
	r := h.MustPush("bob", "pc", 0, `{"tasks":{"created":[{"id":"t3","name":"three","project_id":"p1"}],"updated":[],"deleted":[]}}`)
	h.MustPush("alice", "phone", r.Timestamp, `{"tasks":{"created":[],"updated":[],"deleted":["t2"]}}`)
	tasks := h.Schema.Table("tasks")
	ids := func(q admin.RecordQuery) string {
		t.Helper()
		q.Limit = max(q.Limit, 100)
		recs, err := s.Records(ctx, tasks, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return fmt.Sprint(out)
	}
	if got := ids(admin.RecordQuery{}); got != "[t3 t1]" {
		t.Errorf("every live task: %s, want [t3 t1] (newest first)", got)
	}
	if got := ids(admin.RecordQuery{Deleted: true}); got != "[t2 t3 t1]" {
		t.Errorf("with tombstones: %s, want [t2 t3 t1]", got)
	}
	if got := ids(admin.RecordQuery{Owner: "alice", Deleted: true}); got != "[t2 t1]" {
		t.Errorf("alice's: %s", got)
	}
	if got := ids(admin.RecordQuery{Column: "project_id", Value: "p1"}); got != "[t3 t1]" {
		t.Errorf("project p1: %s", got)
	}
	if got := ids(admin.RecordQuery{ID: "t1"}); got != "[t1]" {
		t.Errorf("by id: %s", got)
	}
	if got := ids(admin.RecordQuery{ID: "nope"}); got != "[]" {
		t.Errorf("unknown id: %s", got)
	}
	recs, _ := s.Records(ctx, tasks, admin.RecordQuery{ID: "t1", Limit: 1})
	if len(recs) != 1 {
		t.Fatal("t1 not found")
	}
	r1 := recs[0]
	if r1.Owner != "alice" || r1.Device != "phone" || r1.Version <= 0 || r1.Deleted ||
		r1.Values["name"] != "one" || r1.Values["position"] != 2.0 || r1.Values["is_done"] != false || r1.Values["description"] != nil {
		t.Errorf("t1 = %+v", r1)
	}
	recs, _ = s.Records(ctx, tasks, admin.RecordQuery{ID: "t2", Deleted: true, Limit: 1})
	if len(recs) != 1 || !recs[0].Deleted || recs[0].Owner != "alice" {
		t.Errorf("t2's tombstone = %+v", recs)
	}
}

func testBufferedLog(t *testing.T, s Store, _ *storetest.Harness) {
	l := admin.NewLog(s, admin.LogOptions{MaxEntries: 200, FlushEvery: 20 * time.Millisecond, BufferSize: 1000})
	l.Start()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				l.Record(entry(time.Now().UnixMilli(), fmt.Sprintf("u%d", g), "d", admin.KindPush, 200))
				if i%50 == 0 {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	n, err := s.LogCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n > 200 || n == 0 {
		t.Errorf("the log holds %d entries, bound 200", n)
	}
	if l.Written()+l.Dropped() != 2000 {
		t.Errorf("written %d + dropped %d != 2000 recorded", l.Written(), l.Dropped())
	}
	var pushes int64
	for g := range 4 {
		devs, _ := s.Devices(ctx, fmt.Sprintf("u%d", g))
		for _, d := range devs {
			pushes += d.Pushes
		}
	}
	if pushes != l.Written() {
		t.Errorf("device summaries count %d pushes, the log wrote %d", pushes, l.Written())
	}
}
