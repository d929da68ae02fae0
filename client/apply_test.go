package client

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/melonsync/melonsync"
)

// Mirrors WatermelonDB's src/sync/impl/__tests__/applyRemote.test.js.

func ldbApply(t testing.TB, db *DB, changes melonsync.Changes, opts ApplyOptions) {
	t.Helper()
	ldbWrite(t, db, func(tx *Tx) error { return tx.ApplyRemoteChanges(changes, opts) })
}

// ldbChangeSet fills every mock table (as WatermelonDB's makeChangeSet does).
func ldbChangeSet(set map[string]*melonsync.TableChanges) melonsync.Changes {
	out := melonsync.Changes{}
	for _, table := range ldbAllMockTables {
		out[table] = &melonsync.TableChanges{}
	}
	for k, v := range set {
		out[k] = v
	}
	return out
}

type ldbRR = melonsync.RawRecord

func TestApplyNothingChangesNothing(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	lc1, err := db.FetchLocalChanges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ldbApply(t, db, ldbChangeSet(nil), ApplyOptions{})
	lc2, _ := db.FetchLocalChanges(context.Background())
	if diff := cmp.Diff(lc1.Changes, lc2.Changes); diff != "" {
		t.Errorf("(-before +after):\n%s", diff)
	}
}

func TestApplyCreateUpdateDelete(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	ldbApply(t, db, ldbChangeSet(map[string]*melonsync.TableChanges{
		"mock_projects": {Created: []ldbRR{{"id": "new_project", "name": "remote"}}}, // create / doesn't exist
		"mock_tasks":    {Updated: []ldbRR{{"id": "tSynced", "name": "remote"}}},     // update / synced
		"mock_comments": {Deleted: []string{"cSynced"}},                              // delete / synced
	}), ApplyOptions{})
	ldbExpectMatches(t, db, "mock_projects", "new_project", map[string]any{"name": "remote"})
	ldbExpectMatches(t, db, "mock_tasks", "tSynced", map[string]any{"name": "remote"})
	ldbExpectMissing(t, db, "mock_comments", "cSynced")
}

func TestApplyResolvesUpdateConflicts(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	var conflicts []string
	ldbApply(t, db, ldbChangeSet(map[string]*melonsync.TableChanges{
		// update / updated: resolve and update (stay updated)
		"mock_tasks": {Updated: []ldbRR{{"id": "tUpdated", "name": "remote", "description": "remote"}}},
		// update / deleted: ignore (the deletion will be pushed)
		"mock_comments": {Updated: []ldbRR{{"id": "cDeleted", "body": "remote"}}},
	}), ApplyOptions{OnConflict: func(table string, local, remote, resolved Record) {
		conflicts = append(conflicts, table+"#"+local["id"].(string)+" "+local["name"].(string)+"/"+remote["name"].(string)+"→"+resolved["name"].(string))
	}})
	ldbExpectMatches(t, db, "mock_tasks", "tUpdated", map[string]any{
		"_status": "updated", "_changed": "name,position",
		"name": "local", "position": 100.0, // local changes preserved
		"description": "remote", // remote change
		"project_id":  "orig",   // unchanged
	})
	ldbExpectMatches(t, db, "mock_comments", "cDeleted", map[string]any{"_status": "deleted", "body": ""})
	if diff := cmp.Diff([]string{"mock_tasks#tUpdated local/remote→local"}, conflicts); diff != "" {
		t.Errorf("OnConflict calls (-want +got):\n%s", diff)
	}
}

func TestApplyDeletesInAllEdgeCases(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	ldbApply(t, db, ldbChangeSet(map[string]*melonsync.TableChanges{
		"mock_projects": {Deleted: []string{"does_not_exist", "pCreated1", "pUpdated", "pDeleted"}},
	}), ApplyOptions{})
	for _, id := range []string{"does_not_exist", "pCreated1", "pUpdated", "pDeleted"} {
		ldbExpectMissing(t, db, "mock_projects", id)
	}
}

func TestApplyHandlesSyncFailureCases(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	var warnings []string
	ldbApply(t, db, ldbChangeSet(map[string]*melonsync.TableChanges{
		"mock_tasks": {Created: []ldbRR{
			{"id": "tSynced", "name": "remote"},                           // create / synced: update (stay synced)
			{"id": "tUpdated", "name": "remote", "description": "remote"}, // create / updated: resolve (stay updated)
			{"id": "tDeleted", "name": "remote"},                          // create / deleted: destroy and recreate
		}},
	}), ApplyOptions{OnWarning: func(table, id, msg string) { warnings = append(warnings, id) }})
	ldbExpectMatches(t, db, "mock_tasks", "tSynced", map[string]any{"name": "remote"})
	ldbExpectMatches(t, db, "mock_tasks", "tUpdated", map[string]any{
		"_status": "updated", "_changed": "name,position", "name": "local", "position": 100.0,
		"description": "remote", "project_id": "orig"})
	ldbExpectMatches(t, db, "mock_tasks", "tDeleted", map[string]any{"name": "remote"})
	if diff := cmp.Diff([]string{"tSynced", "tUpdated", "tDeleted"}, warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestApplyHandlesWeirdEdgeCases(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	ldbApply(t, db, ldbChangeSet(map[string]*melonsync.TableChanges{
		// create / created: resolve and update
		"mock_projects": {Created: []ldbRR{{"id": "pCreated1", "name": "remote"}}},
		"mock_tasks": {Updated: []ldbRR{
			{"id": "tCreated", "name": "remote"},       // update / created: resolve and update
			{"id": "does_not_exist", "name": "remote"}, // update / doesn't exist: create (synced)
		}},
	}), ApplyOptions{})
	ldbExpectMatches(t, db, "mock_projects", "pCreated1", map[string]any{"_status": "created", "_changed": "", "name": "remote"})
	ldbExpectMatches(t, db, "mock_tasks", "tCreated", map[string]any{"_status": "created", "_changed": "", "name": "remote"})
	ldbExpectMatches(t, db, "mock_tasks", "does_not_exist", map[string]any{"name": "remote"})
}

func TestApplyReplacementClearsDatabase(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		ldbInsert(t, tx, "mock_projects", map[string]any{"id": "p1", "name": "orig"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "t1", "_status": "updated", "_changed": "name", "name": "local"})
		return nil
	})
	if n := ldbCountAll(t, db, ldbAllMockTables...); n != 2 {
		t.Fatalf("%d records", n)
	}
	ldbApply(t, db, ldbChangeSet(nil), ApplyOptions{Strategy: Strategy{Default: StrategyReplacement}})
	if n := ldbCountAll(t, db, ldbAllMockTables...); n != 0 {
		t.Errorf("%d records left, want 0", n)
	}
	if d := ldbDeletedIDs(t, db, ldbAllMockTables...); len(d) != 0 {
		t.Errorf("deleted records left: %v", d)
	}
}

func TestApplyReplacementKeepsLocallyCreated(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	if n := ldbCountAll(t, db, ldbAllMockTables...); n != 10 {
		t.Fatalf("%d records, want 10", n)
	}
	ldbApply(t, db, ldbChangeSet(nil), ApplyOptions{Strategy: Strategy{Default: StrategyReplacement}})
	if n := ldbCountAll(t, db, ldbAllMockTables...); n != 4 {
		t.Errorf("%d records left, want the 4 created ones", n)
	}
	if d := ldbDeletedIDs(t, db, ldbAllMockTables...); len(d) != 0 {
		t.Errorf("deleted records left: %v", d)
	}
}

func TestApplyReplacementWithChanges(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	ldbApply(t, db, ldbChangeSet(map[string]*melonsync.TableChanges{
		"mock_projects": {
			Created: []ldbRR{{"id": "pSynced"}, {"id": "pCreated1"}, {"id": "new_project", "name": "remote"}},
			Updated: []ldbRR{{"id": "pCreated2", "name": "remote"}, {"id": "pUpdated", "name": "remote"}},
		},
		"mock_tasks":    {Created: []ldbRR{{"id": "tUpdated", "name": "remote", "description": "remote"}}},
		"mock_comments": {Deleted: []string{"cUpdated", "cDeleted", "cDestroyed", "cDoesNotExist", "cCreated"}},
	}), ApplyOptions{Strategy: Strategy{Default: StrategyReplacement}})

	ldbExpectMatches(t, db, "mock_projects", "pSynced", nil)
	ldbExpectMatches(t, db, "mock_projects", "pCreated1", map[string]any{"_status": "created", "name": ""})
	ldbExpectMatches(t, db, "mock_projects", "new_project", map[string]any{"name": "remote"})
	ldbExpectMatches(t, db, "mock_projects", "pCreated2", map[string]any{"_status": "created", "name": "remote"})
	ldbExpectMatches(t, db, "mock_projects", "pUpdated", map[string]any{"_status": "updated", "_changed": "name", "name": "local"})
	ldbExpectMatches(t, db, "mock_tasks", "tUpdated", map[string]any{
		"_status": "updated", "_changed": "name,position", "name": "local", "position": 100.0,
		"description": "remote", "project_id": "orig"})
	ldbExpectMissing(t, db, "mock_comments", "cSynced")
	ldbExpectMissing(t, db, "mock_comments", "cUpdated")
	// 6 in the data set + tCreated (pCreated1/2 are in the data set, cCreated explicitly deleted)
	if n := ldbCountAll(t, db, ldbAllMockTables...); n != 7 {
		t.Errorf("%d records, want 7", n)
	}
	if d := ldbDeletedIDs(t, db, ldbAllMockTables...); len(d) != 0 {
		t.Errorf("deleted records left: %v", d)
	}
}

func TestApplyReplacementPerTable(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	ldbApply(t, db, ldbChangeSet(map[string]*melonsync.TableChanges{
		"mock_projects": {Updated: []ldbRR{{"id": "pSynced"}, {"id": "new_project", "name": "remote"}}},
		"mock_tasks":    {Created: []ldbRR{{"id": "new_task"}}},
	}), ApplyOptions{Strategy: Strategy{Default: StrategyIncremental, Override: map[string]string{"mock_projects": StrategyReplacement}}})
	if n := ldbCountAll(t, db, "mock_projects"); n != 4 {
		t.Errorf("%d projects, want 2 in the data set + 2 created locally", n)
	}
	if d := ldbDeletedIDs(t, db, "mock_projects"); len(d) != 0 {
		t.Errorf("deleted projects left: %v", d)
	}
	if n := ldbCountAll(t, db, "mock_tasks", "mock_comments"); n != 7 {
		t.Errorf("%d tasks and comments, want 4+3", n)
	}
	if diff := cmp.Diff([]string{"tDeleted", "cDeleted"}, ldbDeletedIDs(t, db, "mock_tasks", "mock_comments")); diff != "" {
		t.Errorf("deleted ids (-want +got):\n%s", diff)
	}
}

func TestApplyPartialReplacement(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		// records in the "needs replacement" segment
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "1", "project_id": "deleted"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "2", "project_id": "deleted"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "2_del", "project_id": "deleted"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "3", "project_id": "permsChanged"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "3b", "_status": "updated", "_changed": "name", "project_id": "permsChanged", "name": "local"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "3_del", "project_id": "permsChanged"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "4", "project_id": "permsChanged"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "5", "_status": "created", "project_id": "deleted"})
		// other records, processed incrementally
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "a", "project_id": "foo"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "b", "project_id": "foo"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "c", "project_id": "bar"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "c1", "_status": "updated", "project_id": "bar"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "c_del"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "d", "_status": "created", "project_id": "baz"})
		return errors.Join(tx.MarkAsDeleted("mock_tasks", "2_del"), tx.MarkAsDeleted("mock_tasks", "3_del"), tx.MarkAsDeleted("mock_tasks", "c_del"))
	})
	ldbApply(t, db, ldbChangeSet(map[string]*melonsync.TableChanges{
		"mock_tasks": {
			Updated: []ldbRR{
				{"id": "3", "project_id": "permsChanged"},
				{"id": "3b", "project_id": "permsChanged", "name": "orig"},
				{"id": "3_del", "project_id": "permsChanged"},
				{"id": "6", "project_id": "permsChanged"},
				{"id": "b", "name": "remote"},
				{"id": "e"},
			},
			Deleted: []string{"a"},
		},
	}), ApplyOptions{Strategy: Strategy{
		Default:          StrategyReplacement,
		ReplacementScope: map[string][]Condition{"mock_tasks": {OneOf("project_id", "deleted", "permsChanged")}},
	}})

	var ids []string
	db.Read(context.Background(), func(tx *Tx) error {
		recs, err := tx.Query("mock_tasks", Query{})
		for _, r := range recs {
			ids = append(ids, r["id"].(string))
		}
		return err
	})
	sort.Strings(ids)
	if diff := cmp.Diff([]string{"3", "3b", "5", "6", "b", "c", "c1", "d", "e"}, ids); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	ldbExpectMatches(t, db, "mock_tasks", "b", map[string]any{"name": "remote"})
	ldbExpectMatches(t, db, "mock_tasks", "3b", map[string]any{"_status": "updated", "_changed": "name", "name": "local"})
	// c_del kept (outside the replacement segment), 3_del kept (in the data set: its
	// deletion must be pushed), 2_del destroyed (in the segment, not in the data set)
	if diff := cmp.Diff([]string{"3_del", "c_del"}, ldbDeletedIDs(t, db, "mock_tasks")); diff != "" {
		t.Errorf("deleted ids (-want +got):\n%s", diff)
	}
	if n := ldbCountAll(t, db, "mock_projects", "mock_comments"); n != 0 {
		t.Errorf("%d other records", n)
	}
}

func TestApplyLeavesTimestampsAlone(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	ldbApply(t, db, ldbChangeSet(map[string]*melonsync.TableChanges{
		"mock_comments": {Updated: []ldbRR{{"id": "cSynced", "body": "remote"}}},
	}), ApplyOptions{})
	ldbExpectMatches(t, db, "mock_comments", "cSynced", map[string]any{"created_at": 1000.0, "updated_at": 2000.0, "body": "remote"})

	ldbApply(t, db, ldbChangeSet(map[string]*melonsync.TableChanges{
		"mock_comments": {
			Created: []ldbRR{{"id": "cNew", "created_at": 1, "updated_at": 2}},
			Updated: []ldbRR{{"id": "cSynced", "created_at": 10, "updated_at": 20}},
		},
	}), ApplyOptions{})
	ldbExpectMatches(t, db, "mock_comments", "cNew", map[string]any{"created_at": 1.0, "updated_at": 2.0, "body": ""})
	ldbExpectMatches(t, db, "mock_comments", "cSynced", map[string]any{"created_at": 10.0, "updated_at": 20.0, "body": "remote"})
}

func TestApplyRejectsInvalidRecords(t *testing.T) {
	db := ldbOpen(t)
	bad := []ldbRR{{"id": "foo", "_status": "created"}, {"id": "foo", "_changed": "bla"}, {"foo": "bar"}, {"id": 12}, {"id": "a'b"}, nil}
	for _, raw := range bad {
		for _, kind := range []string{"created", "updated"} {
			tc := &melonsync.TableChanges{}
			if kind == "created" {
				tc.Created = []ldbRR{{"id": "ok"}, raw}
			} else {
				tc.Updated = []ldbRR{{"id": "ok"}, raw}
			}
			err := db.Write(context.Background(), func(tx *Tx) error {
				return tx.ApplyRemoteChanges(melonsync.Changes{"mock_projects": tc}, ApplyOptions{})
			})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "invalid raw record") {
				t.Errorf("%s %v: got %v", kind, raw, err)
			}
		}
	}
	ldbExpectMissing(t, db, "mock_projects", "ok")
	lc, _ := db.FetchLocalChanges(context.Background())
	if lc.Count != 0 {
		t.Errorf("local changes after failed applies: %+v", lc.Changes)
	}
}

func TestApplySkipsUnknownTablesAndColumns(t *testing.T) {
	db := ldbOpen(t)
	var warned []string
	ldbApply(t, db, melonsync.Changes{
		"invalid_project": {Created: []ldbRR{{"id": "foo"}}},
		"__proto__":       {Created: []ldbRR{{"id": "foo"}}},
		"mock_projects":   {Created: []ldbRR{{"id": "p", "name": "n", "secret_column": "x"}}},
	}, ApplyOptions{OnWarning: func(table, id, msg string) { warned = append(warned, table) }})
	got := ldbGetRaw(t, db, "mock_projects", "p")
	if diff := cmp.Diff(Record{"id": "p", "_status": "synced", "_changed": "", "name": "n"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"__proto__", "invalid_project"}, warned); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestApplySanitizesRemoteValues(t *testing.T) {
	db := ldbOpen(t)
	ldbApply(t, db, melonsync.Changes{"mock_tasks": {Created: []ldbRR{
		{"id": "t", "name": 5, "position": "3", "is_completed": 1.0, "description": 7, "project_id": "p"},
	}}}, ApplyOptions{})
	ldbExpectMatches(t, db, "mock_tasks", "t", map[string]any{
		"name": "", "position": 0.0, "is_completed": true, "description": nil, "project_id": "p", "project_section_id": nil})
}

func TestApplyConflictResolver(t *testing.T) {
	db := ldbOpen(t)
	ldbMakeLocalChanges(t, db)
	var calls []string
	ldbApply(t, db, ldbChangeSet(map[string]*melonsync.TableChanges{
		"mock_tasks": {Updated: []ldbRR{
			{"id": "tUpdated", "name": "remote", "description": "remote"},
			{"id": "tSynced", "name": "remote"},
		}},
	}), ApplyOptions{ConflictResolver: func(table string, local, remote, resolved Record) Record {
		calls = append(calls, local["id"].(string))
		if local["id"] == "tUpdated" {
			// remote wins everywhere, and the record counts as synced
			resolved["name"] = remote["name"]
			resolved["_status"] = "synced"
			resolved["_changed"] = ""
			resolved["id"] = "hijack" // ignored: the id cannot change
		}
		return resolved
	}})
	ldbExpectMatches(t, db, "mock_tasks", "tUpdated", map[string]any{"name": "remote", "description": "remote", "position": 100.0})
	ldbExpectMatches(t, db, "mock_tasks", "tSynced", map[string]any{"name": "remote"})
	ldbExpectMissing(t, db, "mock_tasks", "hijack")
	sort.Strings(calls)
	if diff := cmp.Diff([]string{"tSynced", "tUpdated"}, calls); diff != "" {
		t.Errorf("resolver calls (-want +got):\n%s", diff)
	}
}

func TestApplySkipsUnchangedSyncedRecords(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		ldbInsert(t, tx, "mock_projects", map[string]any{"id": "p", "name": "same"})
		return nil
	})
	ch := make(chan ChangeEvent, 4)
	defer db.Subscribe(nil, func(e ChangeEvent) { ch <- e })()
	resolverCalled := false
	ldbApply(t, db, melonsync.Changes{"mock_projects": {Updated: []ldbRR{{"id": "p", "name": "same"}}}},
		ApplyOptions{ConflictResolver: func(_ string, _, _, r Record) Record { resolverCalled = true; return r }})
	ldbWrite(t, db, func(tx *Tx) error { return tx.SetLocal("x", "y") })
	ldbApply(t, db, melonsync.Changes{"mock_projects": {Updated: []ldbRR{{"id": "p", "name": "other"}}}}, ApplyOptions{})
	e := <-ch
	if len(e.Changes) != 1 || e.Changes[0].ID != "p" || !e.Changes[0].FromSync || e.HasLocalChanges() {
		t.Errorf("event %+v: want only the second apply's change", e)
	}
	if resolverCalled {
		t.Error("resolver called for a record that needs no update")
	}
}

func TestApplyInvalidStrategy(t *testing.T) {
	db := ldbOpen(t)
	for _, s := range []Strategy{{Default: "bad"}, {Default: StrategyIncremental, Override: map[string]string{"mock_projects": "bad"}}} {
		err := db.Write(context.Background(), func(tx *Tx) error { return tx.ApplyRemoteChanges(ldbChangeSet(nil), ApplyOptions{Strategy: s}) })
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "invalid pull strategy") {
			t.Errorf("%+v: %v", s, err)
		}
	}
}

func TestInsertSynced(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		return tx.InsertSynced("mock_tasks", Record{"id": "t", "name": "n", "is_completed": 0, "junk": 1})
	})
	want := Record{"id": "t", "_status": "synced", "_changed": "", "name": "n", "position": 0.0, "is_completed": false,
		"description": nil, "project_id": "", "project_section_id": nil}
	if diff := cmp.Diff(want, ldbGetRaw(t, db, "mock_tasks", "t")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		rec  Record
		want error
	}{
		{Record{"id": "t"}, ErrExists},
		{Record{"name": "x"}, ErrInvalid},
		{Record{"id": "u", "_status": "synced"}, ErrInvalid},
	} {
		err := db.Write(context.Background(), func(tx *Tx) error { return tx.InsertSynced("mock_tasks", c.rec) })
		if !errors.Is(err, c.want) {
			t.Errorf("%v: got %v, want %v", c.rec, err, c.want)
		}
	}
}
