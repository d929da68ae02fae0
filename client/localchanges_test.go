package client

import (
	"context"
	"encoding/json"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/melonsync/melonsync"
)

// Mirrors WatermelonDB's fetchLocal.test.js and markAsSynced.test.js.

func ldbFetch(t testing.TB, db *DB) *LocalChanges {
	t.Helper()
	lc, err := db.FetchLocalChanges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return lc
}

// ldbWire is a record read back as pushed: whole, _status and _changed included.
func ldbWire(r Record) melonsync.RawRecord {
	return copyRecord(r)
}

// ldbSortChanges sorts every list by id, for comparisons.
func ldbSortChanges(c melonsync.Changes) melonsync.Changes {
	for _, tc := range c {
		byID := func(l []melonsync.RawRecord) {
			sort.Slice(l, func(i, j int) bool { return l[i]["id"].(string) < l[j]["id"].(string) })
		}
		byID(tc.Created)
		byID(tc.Updated)
		sort.Strings(tc.Deleted)
	}
	return c
}

func ldbEmptyChanges() melonsync.Changes {
	out := melonsync.Changes{}
	for _, t := range ldbAllMockTables {
		out[t] = &melonsync.TableChanges{Created: []melonsync.RawRecord{}, Updated: []melonsync.RawRecord{}, Deleted: []string{}}
	}
	return out
}

func ldbExpectedChanges(set map[string]*melonsync.TableChanges) melonsync.Changes {
	out := ldbEmptyChanges()
	for k, v := range set {
		tc := out[k]
		tc.Created = append(tc.Created, v.Created...)
		tc.Updated = append(tc.Updated, v.Updated...)
		tc.Deleted = append(tc.Deleted, v.Deleted...)
	}
	return ldbSortChanges(out)
}

func TestFetchLocalChangesEmpty(t *testing.T) {
	db := ldbOpen(t)
	lc := ldbFetch(t, db)
	if diff := cmp.Diff(ldbEmptyChanges(), lc.Changes); diff != "" || lc.Count != 0 || !lc.Empty() {
		t.Errorf("count %d, changes (-want +got):\n%s", lc.Count, diff)
	}
	// every table is present with [] lists (not null), as WatermelonDB pushes them
	b, _ := json.Marshal(lc.Changes["mock_tasks"])
	if string(b) != `{"created":[],"updated":[],"deleted":[]}` {
		t.Errorf("JSON %s", b)
	}
}

func TestFetchLocalChangesFetchesAll(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	raw := func(table, id string) melonsync.RawRecord { return ldbWire(ldbGetRaw(t, db, table, id)) }
	want := ldbExpectedChanges(map[string]*melonsync.TableChanges{
		"mock_projects": {Created: []ldbRR{raw("mock_projects", "pCreated1"), raw("mock_projects", "pCreated2")}, Updated: []ldbRR{raw("mock_projects", "pUpdated")}, Deleted: []string{"pDeleted"}},
		"mock_tasks":    {Created: []ldbRR{raw("mock_tasks", "tCreated")}, Updated: []ldbRR{raw("mock_tasks", "tUpdated")}, Deleted: []string{"tDeleted"}},
		"mock_comments": {Created: []ldbRR{raw("mock_comments", "cCreated")}, Updated: []ldbRR{raw("mock_comments", "cUpdated")}, Deleted: []string{"cDeleted"}},
	})
	lc := ldbFetch(t, db)
	if diff := cmp.Diff(want, ldbSortChanges(lc.Changes)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if lc.Count != 10 {
		t.Errorf("Count %d, want 10", lc.Count)
	}
	// pushed records are whole, as WatermelonDB pushes them: all columns, _status and
	// _changed (a server's client-wins policy merges by it)
	u := lc.Changes["mock_tasks"].Updated[0]
	if u["_status"] != "updated" || u["_changed"] == nil || u["_changed"] == "" {
		t.Errorf("pushed record without its _status/_changed: %v", u)
	}
	if u["name"] != "local" || u["position"] != 100.0 || u["project_id"] != "orig" {
		t.Errorf("pushed record %v", u)
	}
	// the same after reopening the file
	path := db.Path()
	db.Close()
	db2, err := Open(path, ldbMockSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if diff := cmp.Diff(want, ldbSortChanges(ldbFetch(t, db2).Changes)); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
}

func TestFetchLocalChangesReturnsCopies(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	lc := ldbFetch(t, db)
	before, _ := json.Marshal(lc.Changes)
	ldbWrite(t, db, func(tx *Tx) error { return tx.Update("mock_projects", "pUpdated", map[string]any{"name": "y"}) })
	after, _ := json.Marshal(lc.Changes)
	if string(before) != string(after) {
		t.Error("fetched changes changed with the database")
	}
}

func TestHasUnsyncedChanges(t *testing.T) {
	ctx := context.Background()
	db := ldbOpen(t)
	if ok, err := db.HasUnsyncedChanges(ctx); ok || err != nil {
		t.Fatalf("new database: %v %v", ok, err)
	}
	ldbWrite(t, db, func(tx *Tx) error { ldbInsert(t, tx, "mock_comments", map[string]any{"id": "c"}); return nil })
	if ok, _ := db.HasUnsyncedChanges(ctx); ok {
		t.Fatal("a synced record counts as unsynced")
	}
	ldbWrite(t, db, func(tx *Tx) error { return tx.Update("mock_comments", "c", map[string]any{"body": "changed"}) })
	if ok, _ := db.HasUnsyncedChanges(ctx); !ok {
		t.Fatal("one update is not enough")
	}
	lc := ldbFetch(t, db)
	if err := db.MarkAsSynced(ctx, lc, nil); err != nil {
		t.Fatal(err)
	}
	if ok, _ := db.HasUnsyncedChanges(ctx); ok {
		t.Fatal("still unsynced after MarkAsSynced")
	}
	ldbWrite(t, db, func(tx *Tx) error { return tx.MarkAsDeleted("mock_comments", "c") })
	if ok, _ := db.HasUnsyncedChanges(ctx); !ok {
		t.Fatal("one delete is not enough")
	}
	db2 := ldbOpen(t)
	ldbWrite(t, db2, func(tx *Tx) error { _, err := tx.Create("mock_projects", nil); return err })
	if ok, _ := db2.HasUnsyncedChanges(ctx); !ok {
		t.Fatal("one create is not enough")
	}
}

func TestMarkAsSyncedNothing(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	lc1 := ldbFetch(t, db)
	if err := db.MarkAsSynced(context.Background(), &LocalChanges{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.MarkAsSynced(context.Background(), nil, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ldbSortChanges(lc1.Changes), ldbSortChanges(ldbFetch(t, db).Changes)); diff != "" {
		t.Errorf("(-before +after):\n%s", diff)
	}
}

func TestMarkAsSynced(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	projects := ldbCountAll(t, db, "mock_projects")
	tasks := ldbCountAll(t, db, "mock_tasks")
	if err := db.MarkAsSynced(context.Background(), ldbFetch(t, db), nil); err != nil {
		t.Fatal(err)
	}
	if lc := ldbFetch(t, db); lc.Count != 0 {
		t.Errorf("changes left: %+v", lc.Changes)
	}
	if ldbCountAll(t, db, "mock_projects") != projects || ldbCountAll(t, db, "mock_tasks") != tasks {
		t.Error("record counts changed")
	}
	db.Read(context.Background(), func(tx *Tx) error {
		for _, table := range ldbAllMockTables {
			recs, _ := tx.Query(table, Query{IncludeDeleted: true})
			for _, r := range recs {
				if r["_status"] != "synced" || r["_changed"] != "" {
					t.Errorf("%s#%s: %v/%v", table, r["id"], r["_status"], r["_changed"])
				}
			}
		}
		return nil
	})
	// timestamps untouched
	ldbExpectMatches(t, db, "mock_comments", "cCreated", map[string]any{"created_at": 1000.0, "updated_at": 2000.0})
	ldbExpectMatches(t, db, "mock_comments", "cUpdated", map[string]any{"created_at": 1000.0, "updated_at": 2000.0, "body": "local"})
}

func TestMarkAsSyncedSkipsRecordsChangedSinceFetch(t *testing.T) {
	ctx := context.Background()
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	lc := ldbFetch(t, db)

	// the user changes things while the push is in flight
	var newProject string
	ldbWrite(t, db, func(tx *Tx) error {
		r, err := tx.Create("mock_projects", nil)
		if err != nil {
			return err
		}
		newProject = r["id"].(string)
		return ldbFirstErr(
			// not conflicting: update a synced record, delete a synced record
			tx.Update("mock_projects", "pSynced", map[string]any{"name": "local2"}),
			tx.MarkAsDeleted("mock_tasks", "tSynced"),
			tx.DestroyPermanently("mock_comments", "cSynced"),
			// conflicting: update created/updated, delete created/updated/deleted
			tx.Update("mock_tasks", "tCreated", map[string]any{"name": "local2"}),
			tx.Update("mock_tasks", "tUpdated", map[string]any{"name": "local2", "description": "local2"}),
			tx.MarkAsDeleted("mock_comments", "cCreated"),
			tx.MarkAsDeleted("mock_comments", "cUpdated"),
			tx.DestroyPermanently("mock_comments", "cDeleted"),
		)
	})
	if err := db.MarkAsSynced(ctx, lc, nil); err != nil {
		t.Fatal(err)
	}
	// the deletions that were pushed are gone
	for _, id := range [][2]string{{"mock_projects", "pDeleted"}, {"mock_tasks", "tDeleted"}} {
		ldbExpectMissing(t, db, id[0], id[1])
	}
	raw := func(table, id string) melonsync.RawRecord { return ldbWire(ldbGetRaw(t, db, table, id)) }
	want := ldbExpectedChanges(map[string]*melonsync.TableChanges{
		"mock_projects": {Created: []ldbRR{raw("mock_projects", newProject)}, Updated: []ldbRR{raw("mock_projects", "pSynced")}},
		"mock_tasks":    {Created: []ldbRR{raw("mock_tasks", "tCreated")}, Updated: []ldbRR{raw("mock_tasks", "tUpdated")}, Deleted: []string{"tSynced"}},
		"mock_comments": {Deleted: []string{"cCreated", "cUpdated"}},
	})
	lc2 := ldbFetch(t, db)
	if diff := cmp.Diff(want, ldbSortChanges(lc2.Changes)); diff != "" {
		t.Errorf("changes still to push (-want +got):\n%s", diff)
	}
	ldbExpectMatches(t, db, "mock_tasks", "tUpdated", map[string]any{
		"_status": "updated", "_changed": "name,position,description", "name": "local2", "description": "local2", "position": 100.0})

	// a second push marks everything
	if err := db.MarkAsSynced(ctx, lc2, nil); err != nil {
		t.Fatal(err)
	}
	if lc3 := ldbFetch(t, db); lc3.Count != 0 {
		t.Errorf("changes left: %+v", lc3.Changes)
	}
}

func TestMarkAsSyncedSkipsRejectedIDs(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	raw := func(table, id string) melonsync.RawRecord { return ldbWire(ldbGetRaw(t, db, table, id)) }
	want := ldbExpectedChanges(map[string]*melonsync.TableChanges{
		"mock_projects": {Created: []ldbRR{raw("mock_projects", "pCreated1")}, Updated: []ldbRR{raw("mock_projects", "pUpdated")}},
		"mock_comments": {Deleted: []string{"cDeleted"}},
	})
	err := db.MarkAsSynced(context.Background(), ldbFetch(t, db), map[string][]string{
		"mock_projects": {"pCreated1", "pUpdated"},
		"mock_comments": {"cDeleted"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, ldbSortChanges(ldbFetch(t, db).Changes)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"cDeleted"}, ldbDeletedIDs(t, db, "mock_comments")); diff != "" {
		t.Error(diff)
	}
}

func TestMarkAsSyncedWithSameIDInManyTables(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	ldbWrite(t, db, func(tx *Tx) error {
		for _, table := range []string{"mock_projects", "mock_tasks", "mock_comments"} {
			if _, err := tx.Create(table, map[string]any{"id": "hello"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err := db.MarkAsSynced(context.Background(), ldbFetch(t, db), nil); err != nil {
		t.Fatal(err)
	}
	if lc := ldbFetch(t, db); lc.Count != 0 {
		t.Errorf("changes left: %+v", lc.Changes)
	}
}

func TestMarkAsSyncedNotifiesAsSync(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error { _, err := tx.Create("mock_projects", map[string]any{"id": "p"}); return err })
	ch := make(chan ChangeEvent, 1)
	defer db.Subscribe([]string{"mock_projects"}, func(e ChangeEvent) { ch <- e })()
	if err := db.MarkAsSynced(context.Background(), ldbFetch(t, db), nil); err != nil {
		t.Fatal(err)
	}
	e := <-ch
	if e.HasLocalChanges() || len(e.Changes) != 1 || e.Changes[0] != (RecordChange{Table: "mock_projects", ID: "p", Type: ChangeUpdated, FromSync: true}) {
		t.Errorf("event %+v", e)
	}
}

func ldbFirstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
