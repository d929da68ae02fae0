package storetest

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/server"
)

// runPaging runs the paged-pull cases (server/PAGING.md) on fresh stores.
func runPaging(t *testing.T, newStore func(t *testing.T) server.Store) {
	t.Run("Paging/Bounded", func(t *testing.T) {
		testPagingBounded(t, NewHarnessWith(t, newStore(t), TeamsSchema(t)))
	})
	// More histories: MELONSYNC_PAGING_SEEDS=200.
	seeds := 8
	if testing.Short() {
		seeds = 3
	}
	if n, err := strconv.Atoi(os.Getenv("MELONSYNC_PAGING_SEEDS")); err == nil && n > 0 {
		seeds = n
	}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprintf("Paging/Random%d", seed), func(t *testing.T) {
			testPagingRandom(t, NewHarnessWith(t, newStore(t), TeamsSchema(t)), int64(seed))
		})
	}
}

// localDB is a model client: what a device holds after applying pulls, checking
// what WatermelonDB would log as an error.
type localDB struct {
	t    testing.TB
	recs map[string]map[string]melonsync.RawRecord
}

func newLocalDB(t testing.TB) *localDB {
	return &localDB{t: t, recs: map[string]map[string]melonsync.RawRecord{}}
}

// apply applies one pull answer and returns how many records it carried.
func (l *localDB) apply(resp *melonsync.PullResponse, strict bool) int {
	l.t.Helper()
	n := 0
	seen := map[string]bool{}
	for table, tc := range resp.Changes {
		if l.recs[table] == nil {
			l.recs[table] = map[string]melonsync.RawRecord{}
		}
		recs := l.recs[table]
		check := func(id string) {
			if seen[table+"/"+id] {
				l.t.Fatalf("%s %s appears twice in one answer", table, id)
			}
			seen[table+"/"+id] = true
		}
		for _, r := range tc.Created {
			id := r["id"].(string)
			check(id)
			if _, ok := recs[id]; ok && strict {
				l.t.Fatalf("%s %s sent as created but the device has it", table, id)
			}
			recs[id] = r
		}
		for _, r := range tc.Updated {
			id := r["id"].(string)
			check(id)
			if _, ok := recs[id]; !ok && strict {
				l.t.Fatalf("%s %s sent as updated but the device lacks it", table, id)
			}
			recs[id] = r
		}
		for _, id := range tc.Deleted {
			check(id)
			delete(recs, id)
		}
		n += len(tc.Created) + len(tc.Updated)
	}
	return n
}

func (l *localDB) snapshot() map[string]map[string]melonsync.RawRecord {
	out := map[string]map[string]melonsync.RawRecord{}
	for table, recs := range l.recs {
		if len(recs) > 0 {
			out[table] = recs
		}
	}
	return out
}

// pullPaged pulls one page as user/device.
func (h *Harness) pullPaged(user, device string, since int64, size int) *melonsync.PullResponse {
	h.T.Helper()
	return h.Pull(server.Caller{User: user, Device: device}, server.PullParams{LastPulledAt: since, PageSize: size})
}

func testPagingBounded(t *testing.T, h *Harness) {
	since := now(h, "alice")
	for i := 0; i < 250; i++ {
		r := h.MustPush("alice", "a1", since, fmt.Sprintf(`{"notes":{"created":[{"id":"n%03d","body":"note %d"}]}}`, i, i))
		since = r.Timestamp
	}
	dev := newLocalDB(t)
	var last int64
	var remaining []int64
	for pages := 1; ; pages++ {
		resp := h.pullPaged("alice", "phone", last, 100)
		if n := dev.apply(resp, true); n > 100 {
			t.Fatalf("page %d holds %d records, more than the page size", pages, n)
		}
		if resp.Timestamp <= last {
			t.Fatalf("page %d: timestamp %d does not move past %d", pages, resp.Timestamp, last)
		}
		last = resp.Timestamp
		remaining = append(remaining, resp.Remaining)
		if !resp.HasMore {
			if pages != 3 {
				t.Fatalf("250 records in pages of 100 took %d pages", pages)
			}
			break
		}
		if pages > 3 {
			t.Fatal("paging does not end")
		}
	}
	if !cmp.Equal(remaining, []int64{150, 50, 0}) {
		t.Errorf("remaining per page = %v, want [150 50 0]", remaining)
	}
	if len(dev.recs["notes"]) != 250 {
		t.Errorf("device holds %d notes, want 250", len(dev.recs["notes"]))
	}
	if got := h.PullFrom("alice", "phone", last); len(tc(got, "notes").Created)+len(tc(got, "notes").Updated) != 0 {
		t.Errorf("a pull after the last page brings more: %+v", tc(got, "notes"))
	}
}

// pagingWorld drives random writes of three users in two teams.
type pagingWorld struct {
	h     *Harness
	rnd   *rand.Rand
	since map[string]int64 // per writing device
	next  int
	live  map[string][]string // table → ids created so far
	carol string              // carol's membership of t2, "" when none
}

var pagingUsers = []string{"alice", "bob", "carol"}

func (w *pagingWorld) push(user, changes string) {
	w.h.T.Helper()
	dev := "w-" + user
	r, err := w.h.Push(user, dev, w.since[dev], changes)
	if err != nil {
		// A conflict: this writer pulls and goes on.
		w.since[dev] = w.h.PullFrom(user, dev, w.since[dev]).Timestamp
		return
	}
	w.since[dev] = r.Timestamp
}

// step makes one random write.
func (w *pagingWorld) step() {
	user := pagingUsers[w.rnd.Intn(len(pagingUsers))]
	team := []string{"t1", "t2"}[w.rnd.Intn(2)]
	switch k := w.rnd.Intn(10); {
	case k < 4: // a batch of new tasks and notes
		var tasks, notes []string
		for i := w.rnd.Intn(8); i >= 0; i-- {
			w.next++
			tasks = append(tasks, fmt.Sprintf(`{"id":"k%d","team_id":"%s","title":"task %d"}`, w.next, team, w.next))
			notes = append(notes, fmt.Sprintf(`{"id":"n%d-%s","body":"note %d"}`, w.next, user, w.next))
			w.live["tasks"] = append(w.live["tasks"], fmt.Sprintf("k%d", w.next))
		}
		w.push(user, `{"tasks":{"created":[`+strings.Join(tasks, ",")+`]},"notes":{"created":[`+strings.Join(notes, ",")+`]}}`)
	case k < 6 && len(w.live["tasks"]) > 0: // an edit, maybe a move to the other team
		id := w.live["tasks"][w.rnd.Intn(len(w.live["tasks"]))]
		w.push(user, fmt.Sprintf(`{"tasks":{"updated":[{"id":"%s","team_id":"%s","title":"edit %d","done":true}]}}`, id, team, w.rnd.Intn(1000)))
	case k < 7 && len(w.live["tasks"]) > 0:
		id := w.live["tasks"][w.rnd.Intn(len(w.live["tasks"]))]
		w.push(user, fmt.Sprintf(`{"tasks":{"deleted":["%s"]}}`, id))
	case k < 8: // carol joins or leaves t2 (alice decides)
		// (Fresh ids: a record created again over its own tombstone is a new
		// creation for every pull, paged or not.)
		if w.carol == "" {
			w.next++
			w.carol = fmt.Sprintf("m-t2-carol-%d", w.next)
			w.push("alice", `{"team_members":{"created":[{"id":"`+w.carol+`","team_id":"t2","user_id":"carol"}]}}`)
		} else {
			w.push("alice", `{"team_members":{"deleted":["`+w.carol+`"]}}`)
			w.carol = ""
		}
	case k < 9: // the backend writes a public row
		w.next++
		serverWrite(w.h, "tags", server.Op{Kind: server.OpInsert, ID: fmt.Sprintf("g%d", w.next),
			Values: []any{fmt.Sprintf("tag %d", w.next)}})
	default: // a note edit by its owner
		w.next++
		w.push(user, fmt.Sprintf(`{"notes":{"updated":[{"id":"n%d-%s","body":"late"}]}}`, w.rnd.Intn(w.next+1), user))
	}
}

func testPagingRandom(t *testing.T, h *Harness, seed int64) {
	w := &pagingWorld{h: h, rnd: rand.New(rand.NewSource(seed)), since: map[string]int64{}, live: map[string][]string{}}
	t0 := now(h, "alice")
	team(h, "alice", "w-alice", t0, "t1")
	team(h, "alice", "w-alice", t0, "t2")
	member(h, "alice", "w-alice", t0, "t1", "bob")
	member(h, "alice", "w-alice", t0, "t1", "carol")
	for i := 0; i < 60; i++ {
		w.step()
	}
	for _, user := range pagingUsers {
		dev := newLocalDB(t)
		size := 1 + w.rnd.Intn(40)
		var last int64
		for pages := 0; ; pages++ {
			resp := h.pullPaged(user, "phone-"+user, last, size)
			t.Logf("%s page %d since %d size %d → ts %d more %v: %v", user, pages, last, size, resp.Timestamp, resp.HasMore, summary(resp))
			dev.apply(resp, true)
			last = resp.Timestamp
			if !resp.HasMore {
				break
			}
			if pages > 2000 {
				t.Fatal("paging does not end")
			}
			// Other devices write between pages; the paged device pushes too.
			for i := w.rnd.Intn(3); i > 0; i-- {
				w.step()
			}
			if w.rnd.Intn(4) == 0 {
				w.next++
				id := fmt.Sprintf("own%d", w.next)
				h.MustPush(user, "phone-"+user, last, `{"notes":{"created":[{"id":"`+id+`","body":"mine"}]}}`)
				if dev.recs["notes"] == nil {
					dev.recs["notes"] = map[string]melonsync.RawRecord{}
				}
				dev.recs["notes"][id] = melonsync.RawRecord{"id": id, "body": "mine"}
			}
		}
		ref := newLocalDB(t)
		ref.apply(h.PullFrom(user, "ref-"+user, 0), true)
		if diff := cmp.Diff(ref.snapshot(), dev.snapshot()); diff != "" {
			t.Fatalf("seed %d, %s, pages of %d: paged result differs from one unpaged pull (-unpaged +paged):\n%s", seed, user, size, diff)
		}
	}
}

func summary(r *melonsync.PullResponse) string {
	var b strings.Builder
	for table, c := range r.Changes {
		if len(c.Created)+len(c.Updated)+len(c.Deleted) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s c%v u%v d%v; ", table, IDs(c.Created), IDs(c.Updated), c.Deleted)
	}
	return b.String()
}
