package client

// Test helpers for the local database. Their names start with "ldb" so that other test
// files of the package can define their own helpers freely (and reuse these).

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

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

// ldbTodoSchema loads the example schema (version 3, with migrations from 1).
func ldbTodoSchema(t testing.TB) *schema.Schema {
	t.Helper()
	s, err := schema.Load(filepath.Join("..", "examples", "todo", "schema.json"))
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
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s#%s: %s = %#v, want %#v (record %v)", table, id, k, r[k], v, r)
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

// ldbMakeLocalChanges builds WatermelonDB's makeLocalChanges fixture (sync tests'
// helpers.js): records in every sync status across three tables.
func ldbMakeLocalChanges(t testing.TB, db *DB) {
	t.Helper()
	ts := map[string]any{"created_at": 1000.0, "updated_at": 2000.0}
	with := func(m map[string]any, extra map[string]any) map[string]any {
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	ldbWrite(t, db, func(tx *Tx) error {
		ldbInsert(t, tx, "mock_projects", map[string]any{"id": "pSynced"})
		ldbInsert(t, tx, "mock_projects", map[string]any{"id": "pCreated1", "_status": "created"})
		ldbInsert(t, tx, "mock_projects", map[string]any{"id": "pCreated2", "_status": "created"})
		ldbInsert(t, tx, "mock_projects", map[string]any{"id": "pUpdated"})
		ldbInsert(t, tx, "mock_projects", map[string]any{"id": "pDeleted"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "tSynced"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "tCreated", "_status": "created"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "tUpdated", "name": "orig", "description": "orig", "project_id": "orig"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "tDeleted"})
		ldbInsert(t, tx, "mock_comments", with(map[string]any{"id": "cSynced"}, ts))
		ldbInsert(t, tx, "mock_comments", with(map[string]any{"id": "cCreated", "_status": "created"}, ts))
		ldbInsert(t, tx, "mock_comments", with(map[string]any{"id": "cUpdated"}, ts))
		ldbInsert(t, tx, "mock_comments", with(map[string]any{"id": "cDeleted"}, ts))
		ldbInsert(t, tx, "mock_comments", map[string]any{"id": "cDestroyed"})

		steps := []error{
			tx.Update("mock_projects", "pUpdated", map[string]any{"name": "local"}),
			tx.Update("mock_tasks", "tUpdated", map[string]any{"name": "local", "position": 100}),
			tx.Update("mock_comments", "cUpdated", map[string]any{"body": "local"}),
			tx.Update("mock_tasks", "tDeleted", map[string]any{"name": "local"}),
			tx.MarkAsDeleted("mock_projects", "pDeleted"),
			tx.MarkAsDeleted("mock_tasks", "tDeleted"),
			tx.MarkAsDeleted("mock_comments", "cDeleted"),
			tx.DestroyPermanently("mock_comments", "cDestroyed"),
		}
		return errors.Join(steps...)
	})
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
