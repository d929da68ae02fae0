package client

// The test helpers of the package's tests, one family for the local database and sync
// alike: "ldb…" for databases, records and fixtures, "st…" for sync's fake pull and push
// functions and what a sync left behind. The prefixes leave other names free for
// the test files.

import (
	"context"
	"errors"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

// ldbMockSchemaJSON mirrors WatermelonDB's test schema (src/__tests__/testModels.js).
const ldbMockSchemaJSON = `{
  "version": 1,
  "tables": [
    {"name": "mock_projects", "columns": [{"name": "name", "type": "string"}]},
    {"name": "mock_project_sections", "columns": [{"name": "project_id", "type": "string"}]},
    {"name": "mock_tasks", "columns": [
      {"name": "name", "type": "string"},
      {"name": "position", "type": "number"},
      {"name": "is_completed", "type": "boolean"},
      {"name": "description", "type": "string", "isOptional": true},
      {"name": "project_id", "type": "string", "isIndexed": true},
      {"name": "project_section_id", "type": "string", "isOptional": true}
    ]},
    {"name": "mock_comments", "columns": [
      {"name": "task_id", "type": "string"},
      {"name": "body", "type": "string"},
      {"name": "created_at", "type": "number"},
      {"name": "updated_at", "type": "number"}
    ]}
  ]
}`

func ldbMockSchema(t testing.TB) *schema.Schema {
	t.Helper()
	s, err := schema.Parse([]byte(ldbMockSchemaJSON))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ldbOpen opens a new database file with the mock schema (or s) in a temporary directory.
func ldbOpen(t testing.TB, s ...*schema.Schema) *DB {
	t.Helper()
	sc := ldbMockSchema(t)
	if len(s) > 0 {
		sc = s[0]
	}
	db, err := Open(filepath.Join(t.TempDir(), "test.db"), sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func ldbWrite(t testing.TB, db *DB, fn func(tx *Tx) error) {
	t.Helper()
	if err := db.Write(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

// ldbGetRaw returns the record table#id, or nil when it does not exist.
func ldbGetRaw(t testing.TB, db *DB, table, id string) Record {
	t.Helper()
	var r Record
	err := db.Read(context.Background(), func(tx *Tx) error {
		var err error
		r, err = tx.Find(table, id)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ldbExpectMatches checks that table#id exists and has the given fields; _status and
// _changed default to "synced" and "" when match does not name them (WatermelonDB's
// expectSyncedAndMatches).
func ldbExpectMatches(t testing.TB, db *DB, table, id string, match map[string]any) {
	t.Helper()
	r := ldbGetRaw(t, db, table, id)
	if r == nil {
		t.Fatalf("%s#%s does not exist", table, id)
	}
	want := map[string]any{"_status": StatusSynced, "_changed": "", "id": id}
	for k, v := range match {
		want[k] = v
	}
	ldbMatch(t, r, want)
}

func ldbMatch(t testing.TB, r Record, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if !cmp.Equal(r[k], v) {
			t.Errorf("%v#%v: %s = %#v, want %#v (record %v)", r["_table"], r["id"], k, r[k], v, r)
		}
	}
}

func ldbExpectMissing(t testing.TB, db *DB, table, id string) {
	t.Helper()
	if r := ldbGetRaw(t, db, table, id); r != nil {
		t.Errorf("%s#%s exists: %v", table, id, r)
	}
}

// ldbInsert stores a record with the given status and changed (as WatermelonDB's test
// helper prepareCreateFromRaw does): synced through InsertSynced, then the status set
// directly.
func ldbInsert(t testing.TB, tx *Tx, table string, raw map[string]any) {
	t.Helper()
	rec := Record{}
	status, changed := StatusSynced, ""
	for k, v := range raw {
		switch k {
		case "_status":
			status = v.(string)
		case "_changed":
			changed = v.(string)
		default:
			rec[k] = v
		}
	}
	if err := tx.InsertSynced(table, rec); err != nil {
		t.Fatal(err)
	}
	if status != StatusSynced || changed != "" {
		if _, err := tx.tx.Exec(`update "`+table+`" set "_status" = ?, "_changed" = ? where "id" = ?`, status, changed, rec["id"]); err != nil {
			t.Fatal(err)
		}
	}
}

// ldbInsertAs inserts a record with the given status through the public API: synced via
// InsertSynced, created via Create.
func ldbInsertAs(t testing.TB, tx *Tx, table string, raw map[string]any, status string) {
	t.Helper()
	var err error
	if status == "created" {
		_, err = tx.Create(table, raw)
	} else {
		err = tx.InsertSynced(table, raw)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// ldbLocal are the records made by ldbMakeLocalChanges (WatermelonDB's makeLocalChanges).
type ldbLocal map[string]Record

// ldbMakeLocalChanges makes the local state of WatermelonDB's sync tests (its
// makeLocalChanges in sync tests' helpers.js): synced,
// created, updated, deleted and destroyed records in three tables. There are 10 local
// changes: 4 created, 3 updated, 3 deleted.
func ldbMakeLocalChanges(t testing.TB, db *DB) ldbLocal {
	t.Helper()
	ts := map[string]any{"created_at": 1000.0, "updated_at": 2000.0}
	with := func(m map[string]any, extra map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	ldbWrite(t, db, func(tx *Tx) error {
		ldbInsertAs(t, tx, "mock_projects", map[string]any{"id": "pSynced"}, "synced")
		ldbInsertAs(t, tx, "mock_projects", map[string]any{"id": "pCreated1"}, "created")
		ldbInsertAs(t, tx, "mock_projects", map[string]any{"id": "pCreated2"}, "created")
		ldbInsertAs(t, tx, "mock_projects", map[string]any{"id": "pUpdated"}, "synced")
		ldbInsertAs(t, tx, "mock_projects", map[string]any{"id": "pDeleted"}, "synced")
		ldbInsertAs(t, tx, "mock_tasks", map[string]any{"id": "tSynced"}, "synced")
		ldbInsertAs(t, tx, "mock_tasks", map[string]any{"id": "tCreated"}, "created")
		ldbInsertAs(t, tx, "mock_tasks", map[string]any{"id": "tUpdated", "name": "orig", "description": "orig", "project_id": "orig"}, "synced")
		ldbInsertAs(t, tx, "mock_tasks", map[string]any{"id": "tDeleted"}, "synced")
		ldbInsertAs(t, tx, "mock_comments", with(map[string]any{"id": "cSynced"}, ts), "synced")
		ldbInsertAs(t, tx, "mock_comments", with(map[string]any{"id": "cCreated"}, ts), "created")
		ldbInsertAs(t, tx, "mock_comments", with(map[string]any{"id": "cUpdated"}, ts), "synced")
		ldbInsertAs(t, tx, "mock_comments", with(map[string]any{"id": "cDeleted"}, ts), "synced")
		ldbInsertAs(t, tx, "mock_comments", map[string]any{"id": "cDestroyed"}, "synced")

		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(tx.Update("mock_projects", "pUpdated", map[string]any{"name": "local"}))
		must(tx.Update("mock_tasks", "tUpdated", map[string]any{"name": "local", "position": 100.0}))
		must(tx.Update("mock_comments", "cUpdated", map[string]any{"body": "local"}))
		must(tx.Update("mock_tasks", "tDeleted", map[string]any{"name": "local"}))
		must(tx.MarkAsDeleted("mock_projects", "pDeleted"))
		must(tx.MarkAsDeleted("mock_tasks", "tDeleted"))
		must(tx.MarkAsDeleted("mock_comments", "cDeleted"))
		must(tx.DestroyPermanently("mock_comments", "cDestroyed"))
		return nil
	})
	out := ldbLocal{}
	for _, ref := range [][2]string{{"mock_projects", "pSynced"}, {"mock_projects", "pCreated1"}, {"mock_projects", "pCreated2"},
		{"mock_projects", "pUpdated"}, {"mock_tasks", "tSynced"}, {"mock_tasks", "tCreated"}, {"mock_tasks", "tUpdated"},
		{"mock_comments", "cSynced"}, {"mock_comments", "cCreated"}, {"mock_comments", "cUpdated"}} {
		out[ref[1]] = ldbGetRaw(t, db, ref[0], ref[1])
	}
	return out
}

// ldbCountAll counts the records (not marked as deleted) of the tables.
func ldbCountAll(t testing.TB, db *DB, tables ...string) int {
	t.Helper()
	n := 0
	err := db.Read(context.Background(), func(tx *Tx) error {
		for _, table := range tables {
			c, err := tx.Count(table, Query{})
			if err != nil {
				return err
			}
			n += c
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ldbDeletedIDs lists the ids marked as deleted in the tables, in table order.
func ldbDeletedIDs(t testing.TB, db *DB, tables ...string) []string {
	t.Helper()
	out := []string{}
	err := db.Read(context.Background(), func(tx *Tx) error {
		for _, table := range tables {
			recs, err := tx.Query(table, Query{Where: []Condition{Eq("_status", StatusDeleted)}, IncludeDeleted: true, SortBy: []Sort{Asc("id")}})
			if err != nil {
				return err
			}
			for _, r := range recs {
				out = append(out, r["id"].(string))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var ldbAllMockTables = []string{"mock_projects", "mock_project_sections", "mock_tasks", "mock_comments"}

// stChangeSet builds a Changes with an entry for every mock table (WatermelonDB's
// makeChangeSet).
func stChangeSet(set map[string]melonsync.TableChanges) melonsync.Changes {
	out := melonsync.Changes{}
	for _, t := range ldbAllMockTables {
		tc := set[t]
		if tc.Created == nil {
			tc.Created = []melonsync.RawRecord{}
		}
		if tc.Updated == nil {
			tc.Updated = []melonsync.RawRecord{}
		}
		if tc.Deleted == nil {
			tc.Deleted = []string{}
		}
		out[t] = &tc
	}
	return out
}

// stPull returns a pull function answering changes and timestamp, counting calls and
// keeping their arguments.
type stPuller struct {
	mu    sync.Mutex
	calls []PullArgs
	fn    func(ctx context.Context, args PullArgs) (*PullResult, error)
}

func (p *stPuller) Pull(ctx context.Context, args PullArgs) (*PullResult, error) {
	p.mu.Lock()
	p.calls = append(p.calls, args)
	p.mu.Unlock()
	return p.fn(ctx, args)
}

func (p *stPuller) Calls() []PullArgs {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PullArgs(nil), p.calls...)
}

func stEmptyPull(ts int64) *stPuller {
	return stPullChanges(melonsync.Changes{}, ts)
}

func stPullChanges(ch melonsync.Changes, ts int64) *stPuller {
	return &stPuller{fn: func(context.Context, PullArgs) (*PullResult, error) {
		return &PullResult{Changes: stClone(ch), Timestamp: ts}, nil
	}}
}

// stClone deep-copies changes (Synchronize may modify what PullChanges returns).
func stClone(ch melonsync.Changes) melonsync.Changes {
	out := melonsync.Changes{}
	for t, tc := range ch {
		n := &melonsync.TableChanges{Created: []melonsync.RawRecord{}, Updated: []melonsync.RawRecord{}, Deleted: append([]string{}, tc.Deleted...)}
		for _, r := range tc.Created {
			n.Created = append(n.Created, cloneRec(r))
		}
		for _, r := range tc.Updated {
			n.Updated = append(n.Updated, cloneRec(r))
		}
		out[t] = n
	}
	return out
}

func cloneRec(r map[string]any) map[string]any {
	out := make(map[string]any, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

// stPusher records pushes and answers with resp (or fn).
type stPusher struct {
	mu    sync.Mutex
	calls []melonsync.PushRequest
	fn    func(ctx context.Context, req melonsync.PushRequest) (*melonsync.PushResponse, error)
}

func (p *stPusher) Push(ctx context.Context, req melonsync.PushRequest) (*melonsync.PushResponse, error) {
	p.mu.Lock()
	p.calls = append(p.calls, melonsync.PushRequest{Changes: stClone(req.Changes), LastPulledAt: req.LastPulledAt})
	p.mu.Unlock()
	if p.fn == nil {
		return nil, nil
	}
	return p.fn(ctx, req)
}

func (p *stPusher) Calls() []melonsync.PushRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]melonsync.PushRequest(nil), p.calls...)
}

// stObserve counts change notifications of db (WatermelonDB's observeDatabase).
func stObserve(t testing.TB, db *DB) *atomic.Int64 {
	var n atomic.Int64
	unsub := db.Subscribe(nil, func(ChangeEvent) { n.Add(1) })
	t.Cleanup(unsub)
	return &n
}

func stLocalChanges(t testing.TB, db *DB) melonsync.Changes {
	t.Helper()
	lc, err := db.FetchLocalChanges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return lc.Changes
}

// stEmptyLocal checks that nothing waits to be pushed.
func stExpectNoLocalChanges(t testing.TB, db *DB) {
	t.Helper()
	lc, err := db.FetchLocalChanges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if lc.Count != 0 {
		t.Fatalf("local changes left: %v", stSummary(lc.Changes))
	}
}

// stSummary lists the ids in changes, sorted, for messages and comparisons.
func stSummary(ch melonsync.Changes) map[string][]string {
	out := map[string][]string{}
	for t, tc := range ch {
		if tc == nil {
			continue
		}
		var ids []string
		for _, r := range tc.Created {
			ids = append(ids, "+"+r["id"].(string))
		}
		for _, r := range tc.Updated {
			ids = append(ids, "~"+r["id"].(string))
		}
		for _, id := range tc.Deleted {
			ids = append(ids, "-"+id)
		}
		if len(ids) > 0 {
			sort.Strings(ids)
			out[t] = ids
		}
	}
	return out
}

func stLastPulledAt(t testing.TB, db *DB) *int64 {
	t.Helper()
	v, err := LastPulledAt(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func stGetLocal(t testing.TB, db *DB, key string) (string, bool) {
	t.Helper()
	v, ok, err := db.GetLocal(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return v, ok
}

func stSetLocal(t testing.TB, db *DB, key, value string) {
	t.Helper()
	if err := db.SetLocal(context.Background(), key, value); err != nil {
		t.Fatal(err)
	}
}
