package client

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/melonsync/melonsync/schema"
)

// A pull answer given as a body is applied while it is decoded (apply_stream.go). It
// must end exactly as ApplyRemoteChanges on the decoded answer does: same records,
// same warnings, same resolved conflicts, same errors.

type applyCase struct {
	changes  string // the "changes" object
	strategy string // experimentalStrategy ("" for none)
	scope    map[string][]Condition
	resolver bool // a conflict resolver that marks what it saw
	asUpd    bool // SendCreatedAsUpdated
}

type applyOutcome struct {
	kind      string
	records   map[string]Record
	warnings  []string
	conflicts []string
	lpa       *int64
}

func runApply(t testing.TB, s *schema.Schema, c applyCase, streamed bool) applyOutcome {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "apply.db"), s)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fuzzBase(t, db)
	body := `{"changes": ` + c.changes + `, "timestamp": 1234`
	if c.strategy != "" {
		body += `, "experimentalStrategy": ` + c.strategy
	}
	body += "}"
	log := &SyncLog{}
	opts := SyncOptions{Log: log, SendCreatedAsUpdated: c.asUpd, NoConflictRetry: true}
	opts.PullChanges = func(ctx context.Context, _ PullArgs) (*PullResult, error) {
		var res *PullResult
		if streamed {
			res = &PullResult{Body: io.NopCloser(strings.NewReader(body))}
		} else {
			var err error
			if res, err = DecodePullResponse(ctx, strings.NewReader(body)); err != nil {
				return nil, err
			}
		}
		res.Strategy.ReplacementScope = c.scope
		return res, nil
	}
	if c.resolver {
		opts.ConflictResolver = func(table string, local, remote, resolved Record) Record {
			resolved["name"] = fmt.Sprintf("resolved %v/%v", local["name"], remote["name"])
			return resolved
		}
	}
	err = Synchronize(context.Background(), db, opts)
	out := applyOutcome{kind: errKind(err)}
	for _, w := range log.Warnings {
		out.warnings = append(out.warnings, w)
	}
	for _, rc := range log.ResolvedConflicts {
		out.conflicts = append(out.conflicts, fmt.Sprint(rc.Table, rc.Local, rc.Remote, rc.Resolved))
	}
	sort.Strings(out.warnings)
	sort.Strings(out.conflicts)
	db.Read(context.Background(), func(tx *Tx) error {
		out.records, err = fuzzDump(tx)
		return err
	})
	out.lpa = stLastPulledAt(t, db)
	return out
}

func todoSchema(t testing.TB) *schema.Schema {
	s, err := schema.Load("../examples/todo/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func compareApply(t *testing.T, s *schema.Schema, c applyCase) {
	t.Helper()
	ref, got := runApply(t, s, c, false), runApply(t, s, c, true)
	if dup := duplicateIDs(c.changes); dup != "" {
		// Refused as a whole when streamed (see apply_stream.go); nothing kept.
		if got.kind != ErrInvalidData.Error() || got.lpa != nil {
			t.Fatalf("changes %s list %s twice: streamed apply gave %q (lastPulledAt %v), want invalid data", c.changes, dup, got.kind, got.lpa)
		}
		return
	}
	if ref.kind != got.kind {
		t.Fatalf("changes %s strategy %s: error %q, reference %q", c.changes, c.strategy, got.kind, ref.kind)
	}
	if !reflect.DeepEqual(ref.records, got.records) {
		t.Fatalf("changes %s strategy %s: records\n%v\nreference\n%v", c.changes, c.strategy, got.records, ref.records)
	}
	if !reflect.DeepEqual(ref.warnings, got.warnings) {
		t.Fatalf("changes %s: warnings\n%q\nreference\n%q", c.changes, got.warnings, ref.warnings)
	}
	if !reflect.DeepEqual(ref.conflicts, got.conflicts) {
		t.Fatalf("changes %s: conflicts\n%q\nreference\n%q", c.changes, got.conflicts, ref.conflicts)
	}
}

// duplicateIDs returns an id the changes list twice in one table, or "".
func duplicateIDs(changes string) string {
	var ch map[string]*struct {
		Created []map[string]any `json:"created"`
		Updated []map[string]any `json:"updated"`
		Deleted []any            `json:"deleted"`
	}
	if json.Unmarshal([]byte(changes), &ch) != nil {
		return ""
	}
	for table, tc := range ch {
		if tc == nil {
			continue
		}
		seen := map[any]bool{}
		var ids []any
		for _, r := range append(tc.Created, tc.Updated...) {
			ids = append(ids, r["id"])
		}
		for _, id := range append(ids, tc.Deleted...) {
			if seen[id] {
				return fmt.Sprintf("%s#%v", table, id)
			}
			seen[id] = true
		}
	}
	return ""
}

var applyChanges = []string{
	`{"tasks":{"created":[{"id":"n1","name":"new","is_done":1,"position":"7"}],"updated":[{"id":"u1","name":"remote","description":"r","position":9}],"deleted":["s1"]}}`,
	`{"tasks":{"created":[{"id":"d1","name":"back"}],"updated":[{"id":"c1","is_done":false}],"deleted":["c1x"]},"projects":{"updated":[{"id":"p2","is_favorite":false,"name":"W"}]}}`,
	`{"tasks":{"updated":[{"id":"d1","name":"skipped"},{"id":"gone","name":"made"}]},"nope":{"created":[{"id":"x"}]}}`,
	`{"comments":{"created":[{"id":"m1","body":null,"is_spam":"yes"}],"deleted":["u1"]},"projects":null}`,
	`{"tasks":{"created":[{"id":"s1","name":"exists"},{"id":"u1","name":"exists too","position":3}],"deleted":["d1","c1"]}}`,
	`{"tasks":{"created":[{"id":"bad","_status":"synced"}]}}`,
	`{"tasks":{"created":[{"name":"no id"}]}}`,
	`{"tasks":{"created":[{"id":"x","name":"\u0000\u00e9"}],"updated":[],"deleted":[]}}`,
	`{"tasks":{"created":[{"id":"a"}],"updated":[{"id":"a"}]}}`,
	`{"tasks":{"updated":[{"id":"s1"}],"deleted":["s1"]}}`,
	`{"tasks":{}, "projects":{"created":[{"id":"p1","name":"Home","is_favorite":true,"position":1}]}}`,
	`{}`,
}

var applyStrategies = []string{"", `"incremental"`, `"replacement"`, `{"default":"incremental","override":{"tasks":"replacement"}}`, `"bogus"`}

func TestStreamedApplyMatchesApplyRemoteChanges(t *testing.T) {
	s := todoSchema(t)
	// the scope holds s1 (synced) and d1 (deleted locally), not u1 or c1
	scoped := map[string][]Condition{"tasks": {Or(Eq("project_id", "p1"), Eq("name", "to delete"))}}
	for i, changes := range applyChanges {
		for j, strategy := range applyStrategies {
			c := applyCase{changes: changes, strategy: strategy, resolver: j%2 == 0, asUpd: i%3 == 0}
			t.Run(fmt.Sprint(i, "/", j), func(t *testing.T) { compareApply(t, s, c) })
		}
		c := applyCase{changes: changes, strategy: `"replacement"`, scope: scoped}
		t.Run(fmt.Sprint(i, "/scoped"), func(t *testing.T) { compareApply(t, s, c) })
	}
}

func FuzzStreamedApply(f *testing.F) {
	s := todoSchema(f)
	for i, c := range applyChanges {
		f.Add(c, applyStrategies[i%len(applyStrategies)], i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, changes, strategy string, resolver bool) {
		compareApply(t, s, applyCase{changes: changes, strategy: strategy, resolver: resolver})
	})
}

var bigSync = flag.Int("client.bigsync", 200000, "records of the streamed non-turbo sync memory test")

// bigAnswer streams a pull answer of n task records (ids t0000000…), written as it is
// read; every skip-th record is left out.
func bigAnswer(n, skip int, strategy string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriter(pw)
		fmt.Fprint(w, `{"changes": {"tasks": {"created": [`)
		first := true
		for i := 0; i < n; i++ {
			if skip > 0 && i%skip == 0 {
				continue
			}
			if !first {
				w.WriteByte(',')
			}
			first = false
			fmt.Fprintf(w, `{"id": "t%07d", "name": "Task number %d with a few words in it", "position": %d, "is_done": %v, "description": "A description long enough to weigh something, %d", "project_id": "p%d"}`, i, i, i, i%2 == 0, i, i%100)
		}
		fmt.Fprint(w, `], "updated": [], "deleted": []}}, "timestamp": 5000`)
		if strategy != "" {
			fmt.Fprintf(w, `, "experimentalStrategy": %q`, strategy)
		}
		w.WriteString("}")
		w.Flush()
		pw.Close()
	}()
	return pr
}

// heapPeak runs fn and returns the largest heap in use meanwhile, above the heap
// before it.
func heapPeak(fn func() error) (uint64, error) {
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var top atomic.Uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				runtime.ReadMemStats(&m)
				if m.HeapInuse > top.Load() {
					top.Store(m.HeapInuse)
				}
			}
		}
	}()
	err := fn()
	close(stop)
	<-done
	return max(top.Load(), base.HeapInuse) - base.HeapInuse, err
}

// A first sync into a file that holds a local record (so not turbo), then a
// replacement sync that drops a tenth of the records, keep the heap bounded: the
// answers are about 40 MB of JSON at 200k records, and decoded into maps they took
// hundreds of MB.
func TestStreamedSyncMemoryIsBounded(t *testing.T) {
	n := *bigSync
	if testing.Short() {
		n = 20000
	}
	const limit = 48 << 20
	db := ldbOpen(t, todoSchema(t))
	ldbWrite(t, db, func(tx *Tx) error {
		_, err := tx.Create("tasks", map[string]any{"id": "local", "name": "not pushed yet"})
		return err
	})
	ctx := context.Background()
	peak, err := heapPeak(func() error {
		return Synchronize(ctx, db, SyncOptions{PullChanges: func(context.Context, PullArgs) (*PullResult, error) {
			return &PullResult{Body: bigAnswer(n, 0, "")}, nil
		}})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first sync of %d records, not turbo: heap peak %.1f MiB", n, float64(peak)/(1<<20))
	if got := ldbCountAll(t, db, "tasks"); got != n+1 {
		t.Fatalf("%d tasks, want %d", got, n+1)
	}
	if peak > limit {
		t.Errorf("heap peak %.1f MiB > %d MiB", float64(peak)/(1<<20), limit>>20)
	}

	// Replacement: every 10th record is gone from the server; the local one stays.
	peak, err = heapPeak(func() error {
		return Synchronize(ctx, db, SyncOptions{PullChanges: func(context.Context, PullArgs) (*PullResult, error) {
			return &PullResult{Body: bigAnswer(n, 10, StrategyReplacement)}, nil
		}})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replacement sync of %d records: heap peak %.1f MiB", n, float64(peak)/(1<<20))
	want := n - (n+9)/10 + 1
	if got := ldbCountAll(t, db, "tasks"); got != want {
		t.Fatalf("%d tasks after the replacement, want %d", got, want)
	}
	ldbExpectMissing(t, db, "tasks", "t0000010")
	ldbExpectMatches(t, db, "tasks", "local", map[string]any{"_status": "created"})
	ldbExpectMatches(t, db, "tasks", "t0000011", map[string]any{"_status": "synced", "position": 11.0})
	if peak > limit {
		t.Errorf("heap peak %.1f MiB > %d MiB", float64(peak)/(1<<20), limit>>20)
	}
}
