package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

// countingStore counts the Scans of live rows (not tombstones) that pulls make, by
// table.
type countingStore struct {
	server.Store
	mu    sync.Mutex
	scans map[string]int
}

func (s *countingStore) Read(ctx context.Context, fn func(server.ReadTx) error) error {
	return s.Store.Read(ctx, func(tx server.ReadTx) error { return fn(&countingTx{tx, s}) })
}

type countingTx struct {
	server.ReadTx
	s *countingStore
}

func (tx *countingTx) Scan(t *schema.Table, cols []schema.Column, f server.Filter, fn func(*server.Row) error) error {
	if !f.Deleted && len(cols) > 0 { // a read of records, not of metadata only
		tx.s.mu.Lock()
		tx.s.scans[t.Name]++
		tx.s.mu.Unlock()
	}
	return tx.ReadTx.Scan(t, cols, f, fn)
}

func (s *countingStore) take() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.scans
	s.scans = map[string]int{}
	return out
}

// TestIncrementalPullReadsOnce: an incremental pull whose answer has both created and
// updated records reads each table's records once — twice only when the updated part
// outgrows what a pull holds — and both ways answer the same.
func TestIncrementalPullReadsOnce(t *testing.T) {
	for _, teams := range []bool{false, true} {
		t.Run(fmt.Sprintf("teams=%v", teams), func(t *testing.T) {
			cs := &countingStore{Store: testutil.SQLiteStore(t, t.TempDir()), scans: map[string]int{}}
			sch := storetest.TodoSchema(t)
			table := "projects"
			if teams {
				sch = storetest.TeamsSchema(t)
			}
			h := storetest.NewHarnessWith(t, cs, sch)
			t0 := h.PullFrom("alice", "d1", 0).Timestamp
			if teams {
				h.MustPush("alice", "d1", t0, `{"teams":{"created":[{"id":"a","name":"A"}]},
					"team_members":{"created":[{"id":"m-a","team_id":"a","user_id":"alice"}]}}`)
			}
			h.MustPush("alice", "d1", t0, records(table, teams, "old", 3, ""))
			t1 := h.PullFrom("alice", "d1", t0).Timestamp
			h.MustPush("alice", "d1", t1, records(table, teams, "mine", 2, `,"updated":[`+rec(teams, "old0")+`]`))
			h.MustPush("alice", "d2", t1, records(table, teams, "theirs", 2, ""))
			cs.take()

			r := h.PullFrom("alice", "d1", t1)
			got := cs.take()
			if got[table] != 1 {
				t.Errorf("the pull read %s %d times, want once (scans: %v)", table, got[table], got)
			}
			for name, n := range got {
				if n > 1 {
					t.Errorf("the pull read %s %d times", name, n)
				}
			}
			want := [2][]string{{"theirs0", "theirs1"}, {"mine0", "mine1", "old0"}}
			check(t, "held", r.Changes[table].Created, r.Changes[table].Updated, want)

			defer server.SetHeldLimit(1)()
			r = h.PullFrom("alice", "d1", t1)
			if got := cs.take(); got[table] != 2 {
				t.Errorf("past the held limit the pull read %s %d times, want twice", table, got[table])
			}
			check(t, "read again", r.Changes[table].Created, r.Changes[table].Updated, want)
		})
	}
}

func rec(teams bool, id string) string {
	if teams {
		return `{"id":"` + id + `","team_id":"a","name":"` + id + `"}`
	}
	return `{"id":"` + id + `","name":"` + id + `"}`
}

// records is a push of n created records idN of table (plus more, a JSON fragment
// of the table's changes).
func records(table string, teams bool, id string, n int, more string) string {
	recs := make([]string, n)
	for i := range recs {
		recs[i] = rec(teams, fmt.Sprintf("%s%d", id, i))
	}
	return `{"` + table + `":{"created":[` + strings.Join(recs, ",") + `]` + more + `}}`
}

func check(t *testing.T, what string, created, updated []map[string]any, want [2][]string) {
	t.Helper()
	for i, recs := range [][]map[string]any{created, updated} {
		ids := []string{}
		for _, r := range recs {
			ids = append(ids, r["id"].(string))
		}
		sort.Strings(ids)
		if strings.Join(ids, ",") != strings.Join(want[i], ",") {
			t.Errorf("%s: %s %v, want %v", what, []string{"created", "updated"}[i], ids, want[i])
		}
	}
}

// TestConformanceReadAgain runs the conformance suite with pulls that hold no updated
// record: every table's updated section comes from a second read (live.go).
func TestConformanceReadAgain(t *testing.T) {
	defer server.SetHeldLimit(0)()
	storetest.Run(t, func(t *testing.T) server.Store {
		s, err := sqlite.Open(filepath.Join(t.TempDir(), "server.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// BenchmarkIncrementalPull: a user with many records pulls a few changes (half of
// them pushed by the pulling device, so the answer has created and updated records),
// reading each table once ("once") and, as pulls did before, twice ("twice": nothing
// held, the updated section read again).
//
//	go test ./server -run '^$' -bench IncrementalPull -count 6 | benchstat -col /read -
func BenchmarkIncrementalPull(b *testing.B) {
	for _, size := range []struct{ rows, changes int }{{20000, 10}, {20000, 1000}} {
		for _, teams := range []bool{false, true} {
			h, since := pullFixture(b, teams, size.rows, size.changes)
			for _, read := range []string{"once", "twice"} {
				b.Run(fmt.Sprintf("rows=%d/changes=%d/teams=%v/read=%s", size.rows, size.changes, teams, read), func(b *testing.B) {
					if read == "twice" {
						defer server.SetHeldLimit(0)()
					}
					for i := 0; i < b.N; i++ {
						var n countWriter
						if err := h.Svc.Pull(context.Background(), server.Caller{User: "alice", Device: "d1"}, server.PullParams{LastPulledAt: since}, &n); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

type countWriter int

func (w *countWriter) Write(p []byte) (int, error) { *w += countWriter(len(p)); return len(p), nil }

// pullFixture fills a store with rows projects of alice (in her team a when teams),
// then pushes changes more: half created by device d1 (updated for it), half by d2.
func pullFixture(b *testing.B, teams bool, rows, changes int) (*storetest.Harness, int64) {
	sch := storetest.TodoSchema(b)
	if teams {
		sch = storetest.TeamsSchema(b)
	}
	h := storetest.NewHarnessWith(b, testutil.SQLiteStore(b, b.TempDir()), sch)
	t0 := h.PullFrom("alice", "d0", 0).Timestamp
	if teams {
		h.MustPush("alice", "d0", t0, `{"teams":{"created":[{"id":"a","name":"A"}]},
			"team_members":{"created":[{"id":"m-a","team_id":"a","user_id":"alice"}]}}`)
	}
	for i := 0; i < rows; i += 1000 {
		h.MustPush("alice", "d0", t0, records("projects", teams, fmt.Sprintf("old%d_", i), min(1000, rows-i), ""))
	}
	since := h.PullFrom("alice", "d1", t0).Timestamp
	h.MustPush("alice", "d1", since, records("projects", teams, "mine", changes/2, ""))
	h.MustPush("alice", "d2", since, records("projects", teams, "theirs", changes-changes/2, ""))
	return h, since
}
