package client

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/schema"
)

// ldbSchemaAt returns the schema a client of full had at version v (no migrations).
func ldbSchemaAt(t testing.TB, full *schema.Schema, v int) *schema.Schema {
	t.Helper()
	var tables []*schema.Table
	for _, tb := range full.TablesAt(v) {
		tables = append(tables, &schema.Table{Name: tb.Name, Columns: tb.ColumnsAt(v)})
	}
	s, err := schema.New(v, tables, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ldbRawSQL opens the file with plain SQLite, for checks below the client's API.
func ldbRawSQL(t testing.TB, path string) *sql.DB {
	t.Helper()
	d, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	d.SetMaxOpenConns(1)
	t.Cleanup(func() { d.Close() })
	return d
}

// ldbMaster lists sqlite_master: type, name, table and SQL of each entry.
func ldbMaster(t testing.TB, d *sql.DB) [][4]string {
	t.Helper()
	rows, err := d.Query(`select type, name, tbl_name, coalesce(sql, '') from sqlite_master order by name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got [][4]string
	for rows.Next() {
		var r [4]string
		if err := rows.Scan(&r[0], &r[1], &r[2], &r[3]); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	return got
}

func ldbUserVersion(t testing.TB, path string) int {
	t.Helper()
	d := ldbRawSQL(t, path)
	defer d.Close()
	var v int
	if err := d.QueryRow("pragma user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLayoutIsWatermelonDBs(t *testing.T) {
	s := testutil.TodoSchema(t)
	db := ldbOpen(t, s)
	path := db.Path()
	db.Close()
	d := ldbRawSQL(t, path)
	got := ldbMaster(t, d)
	// The text WatermelonDB's encodeSchema produces for this schema (SQLite keeps it
	// with the leading keywords normalized).
	want := [][4]string{
		{"table", "comments", "comments", `CREATE TABLE "comments" ("id" primary key, "_changed", "_status", "task_id", "body")`},
		{"index", "comments__status", "comments", `CREATE INDEX "comments__status" on "comments" ("_status")`},
		{"index", "comments_task_id", "comments", `CREATE INDEX "comments_task_id" on "comments" ("task_id")`},
		{"table", "local_storage", "local_storage", `CREATE TABLE "local_storage" ("key" varchar(16) primary key not null, "value" text not null)`},
		{"index", "local_storage_key_index", "local_storage", `CREATE INDEX "local_storage_key_index" on "local_storage" ("key")`},
		{"table", "projects", "projects", `CREATE TABLE "projects" ("id" primary key, "_changed", "_status", "name", "is_favorite", "position")`},
		{"index", "projects__status", "projects", `CREATE INDEX "projects__status" on "projects" ("_status")`},
		{"index", "sqlite_autoindex_comments_1", "comments", ""},
		{"index", "sqlite_autoindex_local_storage_1", "local_storage", ""},
		{"index", "sqlite_autoindex_projects_1", "projects", ""},
		{"index", "sqlite_autoindex_tasks_1", "tasks", ""},
		{"table", "tasks", "tasks", `CREATE TABLE "tasks" ("id" primary key, "_changed", "_status", "project_id", "name", "is_done", "position", "description")`},
		{"index", "tasks__status", "tasks", `CREATE INDEX "tasks__status" on "tasks" ("_status")`},
		{"index", "tasks_project_id", "tasks", `CREATE INDEX "tasks_project_id" on "tasks" ("project_id")`},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sqlite_master (-want +got):\n%s", diff)
	}
	var version int
	var mode string
	d.QueryRow("pragma user_version").Scan(&version)
	d.QueryRow("pragma journal_mode").Scan(&mode)
	if version != 3 || mode != "wal" {
		t.Errorf("user_version %d, journal_mode %s", version, mode)
	}
}

func TestValuesAreStoredAsWatermelonDBReadsThem(t *testing.T) {
	db := ldbOpen(t, testutil.TodoSchema(t))
	ldbWrite(t, db, func(tx *Tx) error {
		_, err := tx.Create("tasks", map[string]any{"id": "t", "name": "n", "is_done": true, "position": 2.5})
		return err
	})
	path := db.Path()
	db.Close()
	var types, vals string
	err := ldbRawSQL(t, path).QueryRow(`select typeof("id")||','||typeof("name")||','||typeof("is_done")||','||typeof("position")||','||typeof("description"),
		"id"||','||"_status"||','||"_changed"||','||"is_done"||','||"position" from "tasks"`).Scan(&types, &vals)
	if err != nil {
		t.Fatal(err)
	}
	if types != "text,text,integer,real,null" || vals != "t,created,,1,2.5" {
		t.Errorf("stored as %s: %s", types, vals)
	}
}

func TestReadsIntegerAndRealEncodings(t *testing.T) {
	db := ldbOpen(t, testutil.TodoSchema(t))
	path := db.Path()
	db.Close()
	d := ldbRawSQL(t, path)
	// WatermelonDB's Node driver stores numbers and booleans as REAL, SQL literals as
	// INTEGER; a broken writer may store anything.
	_, err := d.Exec(`insert into "tasks" ("id", "_status", "_changed", "project_id", "name", "is_done", "position", "description") values
		('a', 'synced', '', 'p', 'x', 1.0, 3.0, null),
		('b', 'updated', 'name', 'p', 'y', 0, 4, 'd'),
		('c', 'bogus', null, 7, 8, 'yes', 'NaN', 9),
		(5, 'synced', '', 'p', 'z', 2, 1e400, x'41')`)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	db, err = Open(path, testutil.TodoSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[string]Record{
		"a": {"id": "a", "_status": "synced", "_changed": "", "project_id": "p", "name": "x", "is_done": true, "position": 3.0, "description": nil},
		"b": {"id": "b", "_status": "updated", "_changed": "name", "project_id": "p", "name": "y", "is_done": false, "position": 4.0, "description": "d"},
		"c": {"id": "c", "_status": "created", "_changed": "", "project_id": "", "name": "", "is_done": false, "position": 0.0, "description": nil},
		"5": {"id": "5", "_status": "synced", "_changed": "", "project_id": "p", "name": "z", "is_done": false, "position": 0.0, "description": "A"},
	}
	got := map[string]Record{}
	db.Read(context.Background(), func(tx *Tx) error {
		recs, err := tx.Query("tasks", Query{})
		for _, r := range recs {
			got[r["id"].(string)] = r
		}
		return err
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMigratesFromEachOlderVersion(t *testing.T) {
	full := testutil.TodoSchema(t)
	for _, from := range []int{1, 2} {
		t.Run("from "+string(rune('0'+from)), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "old.db")
			old, err := Open(path, ldbSchemaAt(t, full, from))
			if err != nil {
				t.Fatal(err)
			}
			ldbWrite(t, old, func(tx *Tx) error {
				if _, err := tx.Create("tasks", map[string]any{"id": "t1", "name": "old", "project_id": "p"}); err != nil {
					return err
				}
				if _, err := tx.Create("tasks", map[string]any{"description": "x"}); !errors.Is(err, ErrInvalid) {
					t.Errorf("version %d has no description column, got %v", from, err)
				}
				_, err := tx.Create("comments", nil)
				if (from >= 2) != (err == nil) {
					t.Errorf("comments at version %d: %v", from, err)
				}
				return tx.SetLocal("k", "v")
			})
			old.Close()

			db, err := Open(path, full)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ldbExpectMatches(t, db, "tasks", "t1", map[string]any{"_status": "created", "name": "old", "project_id": "p", "description": nil})
			ldbWrite(t, db, func(tx *Tx) error {
				if _, err := tx.Create("comments", map[string]any{"id": "c1", "task_id": "t1", "body": "b"}); err != nil {
					return err
				}
				return tx.Update("tasks", "t1", map[string]any{"description": "new"})
			})
			ldbExpectMatches(t, db, "comments", "c1", map[string]any{"_status": "created", "task_id": "t1", "body": "b"})
			ldbExpectMatches(t, db, "tasks", "t1", map[string]any{"_status": "created", "_changed": "description", "description": "new"})
			if v, ok, _ := db.GetLocal(context.Background(), "k"); !ok || v != "v" {
				t.Errorf("local storage lost: %q %v", v, ok)
			}
			if v := ldbUserVersion(t, path); v != 3 {
				t.Errorf("user_version %d", v)
			}
			var idx int
			ldbRawSQL(t, path).QueryRow(`select count(*) from sqlite_master where name in ('comments_task_id', 'comments__status')`).Scan(&idx)
			if idx != 2 {
				t.Errorf("%d of the comments indexes", idx)
			}
		})
	}
}

const ldbNotesV2 = `{
  "version": 2,
  "tables": [{"name": "notes", "columns": [
    {"name": "title", "type": "string"},
    {"name": "rank", "type": "number", "isIndexed": true},
    {"name": "done", "type": "boolean"},
    {"name": "tag", "type": "string"},
    {"name": "memo", "type": "string", "isOptional": true}
  ]}],
  "migrations": [{"toVersion": 2, "steps": [
    {"type": "add_columns", "table": "notes", "columns": [
      {"name": "rank", "type": "number", "isIndexed": true},
      {"name": "done", "type": "boolean"},
      {"name": "tag", "type": "string"},
      {"name": "memo", "type": "string", "isOptional": true}
    ]},
    {"type": "sql", "sql": "update notes set title = upper(title); create table audit (x);"}
  ]}]
}`

func TestAddColumnsFillsDefaultsAndRunsSQL(t *testing.T) {
	full, err := schema.Parse([]byte(ldbNotesV2))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "notes.db")
	old, err := Open(path, ldbSchemaAt(t, full, 1))
	if err != nil {
		t.Fatal(err)
	}
	ldbWrite(t, old, func(tx *Tx) error {
		_, err := tx.Create("notes", map[string]any{"id": "n", "title": "hello"})
		return err
	})
	old.Close()
	db, err := Open(path, full)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := Record{"id": "n", "_status": "created", "_changed": "", "title": "HELLO", "rank": 0.0, "done": false, "tag": "", "memo": nil}
	if diff := cmp.Diff(want, ldbGetRaw(t, db, "notes", "n")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	db.Close()
	var types string
	d := ldbRawSQL(t, path)
	d.QueryRow(`select typeof(rank)||typeof(done)||typeof(tag)||typeof(memo) from notes`).Scan(&types)
	if types != "integerintegertextnull" {
		t.Errorf("defaults stored as %s (WatermelonDB writes the literals 0, 0, '' and null)", types)
	}
	var n int
	d.QueryRow(`select count(*) from sqlite_master where name in ('audit', 'notes_rank')`).Scan(&n)
	if n != 2 {
		t.Errorf("sql step or index missing (%d)", n)
	}
}

func fileBytes(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ldbCheckpointed writes a database at schema s, closes it cleanly (so the WAL is
// folded into the file) and returns its path.
func ldbCheckpointed(t testing.TB, s *schema.Schema, fill func(tx *Tx) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(path, s)
	if err != nil {
		t.Fatal(err)
	}
	if fill != nil {
		ldbWrite(t, db, fill)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenRefusesIncompatibleFilesAndChangesNothing(t *testing.T) {
	full := testutil.TodoSchema(t)
	noMigrations := ldbSchemaAt(t, full, 3)
	fill := func(tx *Tx) error { _, err := tx.Create("projects", map[string]any{"id": "p"}); return err }
	badSQL, err := schema.Parse([]byte(`{"version": 2, "tables": [{"name": "projects", "columns": [{"name": "name", "type": "string"}, {"name": "is_favorite", "type": "boolean"}, {"name": "position", "type": "number"}, {"name": "extra", "type": "string"}]}],
		"migrations": [{"toVersion": 2, "steps": [{"type": "add_columns", "table": "projects", "columns": [{"name": "extra", "type": "string"}]}, {"type": "sql", "sql": "this is not sql"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		written *schema.Schema
		open    *schema.Schema
		want    error
	}{
		{"newer than the schema", full, ldbSchemaAt(t, full, 2), ErrIncompatible},
		{"no migrations from its version", ldbSchemaAt(t, full, 1), noMigrations, ErrIncompatible},
		{"failing migration", ldbSchemaAt(t, full, 1), badSQL, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := ldbCheckpointed(t, c.written, fill)
			// as WatermelonDB's Node driver leaves its files: rollback journal, not WAL
			d := ldbRawSQL(t, path)
			if _, err := d.Exec("pragma journal_mode = delete"); err != nil {
				t.Fatal(err)
			}
			d.Close()
			before := fileBytes(t, path)
			db, err := Open(path, c.open)
			if err == nil {
				db.Close()
				t.Fatal("opened")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
			t.Log(err)
			if !bytes.Equal(before, fileBytes(t, path)) {
				t.Error("the file changed")
			}
			// and it still opens with its own schema
			db, err = Open(path, c.written)
			if err != nil {
				t.Fatal(err)
			}
			ldbExpectMatches(t, db, "projects", "p", map[string]any{"_status": "created"})
			db.Close()
		})
	}
}

func TestOpenRefusesForeignAndIncompleteFiles(t *testing.T) {
	full := testutil.TodoSchema(t)
	t.Run("not a WatermelonDB file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "foreign.db")
		d := ldbRawSQL(t, path)
		if _, err := d.Exec("create table people (name text)"); err != nil {
			t.Fatal(err)
		}
		d.Close()
		if _, err := Open(path, full); !errors.Is(err, ErrIncompatible) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("table missing at the same version", func(t *testing.T) {
		// a schema changed without bumping its version
		withoutComments, _ := schema.New(3, []*schema.Table{
			{Name: "projects", Columns: full.Table("projects").Columns},
			{Name: "tasks", Columns: full.Table("tasks").Columns},
		}, nil)
		path := ldbCheckpointed(t, withoutComments, nil)
		if _, err := Open(path, full); !errors.Is(err, ErrIncompatible) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("not a database at all", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "junk.db")
		os.WriteFile(path, bytes.Repeat([]byte("junk"), 1000), 0o644)
		if _, err := Open(path, full); err == nil {
			t.Error("opened junk")
		}
	})
	t.Run("bad arguments", func(t *testing.T) {
		for _, p := range []string{"", ":memory:", "file:x.db"} {
			if _, err := Open(p, full); !errors.Is(err, ErrInvalid) {
				t.Errorf("%q: %v", p, err)
			}
		}
		if _, err := Open(filepath.Join(t.TempDir(), "a.db"), nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("nil schema: %v", err)
		}
	})
}

func TestOpenPathWithSpecialCharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "we?ird #name%20.db")
	db, err := Open(path, ldbMockSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	ldbWrite(t, db, func(tx *Tx) error { _, err := tx.Create("mock_projects", map[string]any{"id": "p"}); return err })
	db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("file not at its path: %v", err)
	}
	db, err = Open(path, ldbMockSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ldbExpectMatches(t, db, "mock_projects", "p", map[string]any{"_status": "created"})
}
