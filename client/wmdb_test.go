package client

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/schema"
)

// File-format round trip with the real WatermelonDB (its SQLite adapter on better-sqlite3,
// in Node): files written by one open, read and write correctly in the other.
// testdata/wmdb-sqlite holds the pinned packages and the script; the test installs them
// when node_modules is missing and skips only when node or npm is not on PATH.

const ldbWMDir = "testdata/wmdb-sqlite"

var ldbWMInstall struct {
	once sync.Once
	err  error
	out  []byte
}

func ldbNeedNode(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH: skipping the WatermelonDB round trip", tool)
		}
	}
	ldbWMInstall.once.Do(func() {
		if _, err := os.Stat(filepath.Join(ldbWMDir, "node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node")); err == nil {
			return
		}
		ldbWMInstall.out, ldbWMInstall.err = exec.Command("sh", filepath.Join(ldbWMDir, "install.sh")).CombinedOutput()
	})
	if ldbWMInstall.err != nil {
		t.Fatalf("installing WatermelonDB for the round trip: %v\n%s", ldbWMInstall.err, ldbWMInstall.out)
	}
}

// ldbWMResult is what roundtrip.js prints.
type ldbWMResult struct {
	Before      *ldbDump    `json:"before"`
	After       *ldbDump    `json:"after"`
	Master      [][4]string `json:"master"`
	UserVersion int         `json:"userVersion"`
}

type ldbDump struct {
	Tables   map[string][]Record `json:"tables"`
	Local    map[string]string   `json:"local"`
	Unsynced bool                `json:"unsynced"`
}

// ldbRunWM runs roundtrip.js cmd on file with the schema (written as JSON).
func ldbRunWM(t *testing.T, cmd string, schemaJSON []byte, file string) ldbWMResult {
	t.Helper()
	sf := filepath.Join(t.TempDir(), "schema.json")
	if err := os.WriteFile(sf, schemaJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	c := exec.Command("node", "roundtrip.js", cmd, sf, file)
	c.Dir = ldbWMDir
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		t.Fatalf("roundtrip.js %s: %v\n%s", cmd, err, stderr.String())
	}
	var res ldbWMResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("roundtrip.js output: %v\n%s", err, stdout.String())
	}
	return res
}

// ldbDumpGo reads everything the way roundtrip.js dumps it.
func ldbDumpGo(t *testing.T, db *DB) *ldbDump {
	t.Helper()
	d := &ldbDump{Tables: map[string][]Record{}, Local: map[string]string{}}
	err := db.Read(context.Background(), func(tx *Tx) error {
		for _, tb := range db.Schema().Tables {
			recs, err := tx.Query(tb.Name, Query{IncludeDeleted: true, SortBy: []Sort{Asc("id")}})
			if err != nil {
				return err
			}
			if recs == nil {
				recs = []Record{}
			}
			d.Tables[tb.Name] = recs
		}
		for _, k := range []string{"__watermelon_last_pulled_at", "__watermelon_last_pulled_schema_version", "go", "node"} {
			v, ok, err := tx.GetLocal(k)
			if err != nil {
				return err
			}
			if ok {
				d.Local[k] = v
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Unsynced, err = db.HasUnsyncedChanges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func ldbSchemaJSON(t *testing.T, s *schema.Schema) []byte {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWatermelonDBFileOpensInGo(t *testing.T) {
	ldbNeedNode(t)
	full := testutil.TodoSchema(t)
	todoJSON, err := os.ReadFile(filepath.Join("..", "examples", "todo", "schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "wmdb.db")
	res := ldbRunWM(t, "write", todoJSON, file)

	// same layout as a file Go creates
	goFile := ldbCheckpointed(t, full, nil)
	var goMaster [][4]string
	rows, err := ldbRawSQL(t, goFile).Query(`select type, name, tbl_name, coalesce(sql, '') from sqlite_master order by name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r [4]string
		rows.Scan(&r[0], &r[1], &r[2], &r[3])
		goMaster = append(goMaster, r)
	}
	if diff := cmp.Diff(res.Master, goMaster); diff != "" {
		t.Errorf("sqlite_master (-WatermelonDB +Go):\n%s", diff)
	}

	db, err := Open(file, full)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(res.After, ldbDumpGo(t, db)); diff != "" {
		t.Errorf("Go reads (-WatermelonDB +Go):\n%s", diff)
	}
	lc, err := db.FetchLocalChanges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ids := func(l []Record) (out []string) {
		for _, r := range l {
			out = append(out, r["id"].(string))
		}
		return out
	}
	if got := ids(lc.Changes["projects"].Created); !cmp.Equal(got, []string{"p_created"}) {
		t.Errorf("created projects %v", got)
	}
	if got := ids(lc.Changes["projects"].Updated); !cmp.Equal(got, []string{"p_updated"}) {
		t.Errorf("updated projects %v", got)
	}
	if got := lc.Changes["projects"].Deleted; !cmp.Equal(got, []string{"p_deleted"}) {
		t.Errorf("deleted projects %v", got)
	}

	// Go writes into WatermelonDB's file; WatermelonDB then reads what Go wrote
	ldbWrite(t, db, func(tx *Tx) error {
		if _, err := tx.Create("projects", map[string]any{"id": "g_new", "name": "from Go", "is_favorite": true, "position": 2.25}); err != nil {
			return err
		}
		if err := tx.Update("projects", "p_synced", map[string]any{"name": "Synced, edited in Go"}); err != nil {
			return err
		}
		if err := tx.Update("tasks", "t_created", map[string]any{"is_done": true}); err != nil {
			return err
		}
		if err := tx.MarkAsDeleted("tasks", "t_synced"); err != nil {
			return err
		}
		if _, err := tx.Create("comments", map[string]any{"id": "g_comment", "task_id": "t_created", "body": "hi"}); err != nil {
			return err
		}
		return tx.SetLocal("go", "wrote this")
	})
	if err := db.MarkAsSynced(context.Background(), lc, nil); err != nil {
		t.Fatal(err)
	}
	goView := ldbDumpGo(t, db)
	db.Close()
	res2 := ldbRunWM(t, "read", todoJSON, file)
	if diff := cmp.Diff(goView, res2.Before); diff != "" {
		t.Errorf("WatermelonDB reads Go's writes (-Go +WatermelonDB):\n%s", diff)
	}
	ldbExpectInDump(t, res2.Before, "projects", "p_synced", map[string]any{"_status": "updated", "_changed": "name", "name": "Synced, edited in Go"})
	ldbExpectInDump(t, res2.Before, "projects", "p_updated", map[string]any{"_status": "synced", "_changed": ""})
	ldbExpectInDump(t, res2.Before, "projects", "p_deleted", nil) // pushed deletion destroyed
	// changed after the fetch: not marked as synced, still created
	ldbExpectInDump(t, res2.Before, "tasks", "t_created", map[string]any{"_status": "created", "_changed": "position,is_done", "is_done": true})
	ldbExpectInDump(t, res2.Before, "tasks", "t_synced", map[string]any{"_status": "deleted"})
	ldbExpectInDump(t, res2.Before, "projects", "g_new", map[string]any{"_status": "created", "_changed": "", "is_favorite": true, "position": 2.25})
}

// ldbExpectInDump checks a record of a dump (match nil: the record must be absent).
func ldbExpectInDump(t *testing.T, d *ldbDump, table, id string, match map[string]any) {
	t.Helper()
	var rec Record
	for _, r := range d.Tables[table] {
		if r["id"] == id {
			rec = r
		}
	}
	if match == nil {
		if rec != nil {
			t.Errorf("%s#%s exists: %v", table, id, rec)
		}
		return
	}
	if rec == nil {
		t.Errorf("%s#%s missing", table, id)
		return
	}
	for k, v := range match {
		if rec[k] != v {
			t.Errorf("%s#%s: %s = %#v, want %#v", table, id, k, rec[k], v)
		}
	}
}

func TestGoFileOpensInWatermelonDB(t *testing.T) {
	ldbNeedNode(t)
	full := testutil.TodoSchema(t)
	todoJSON, err := os.ReadFile(filepath.Join("..", "examples", "todo", "schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "go.db")
	db, err := Open(file, full)
	if err != nil {
		t.Fatal(err)
	}
	ldbWrite(t, db, func(tx *Tx) error {
		for _, r := range []Record{
			{"id": "g_synced", "name": "synced 🍉 'q' \"dq\"", "is_favorite": true, "position": 1e15},
			{"id": "g_updated", "name": "before", "position": -0.5},
			{"id": "g_deleted", "name": "doomed"},
		} {
			if err := tx.InsertSynced("projects", r); err != nil {
				return err
			}
		}
		if _, err := tx.Create("projects", map[string]any{"id": "g_created", "name": "new", "position": 3}); err != nil {
			return err
		}
		if _, err := tx.Create("tasks", map[string]any{"id": "g_task", "project_id": "g_created", "name": "t", "is_done": true, "position": 0.1, "description": nil}); err != nil {
			return err
		}
		if _, err := tx.Create("comments", map[string]any{"id": "g_comment", "task_id": "g_task", "body": "b"}); err != nil {
			return err
		}
		if err := tx.Update("projects", "g_updated", map[string]any{"name": "after", "is_favorite": true}); err != nil {
			return err
		}
		if err := tx.MarkAsDeleted("projects", "g_deleted"); err != nil {
			return err
		}
		return ldbFirstErr(tx.SetLocal("__watermelon_last_pulled_at", "1700000000999"), tx.SetLocal("__watermelon_last_pulled_schema_version", "3"), tx.SetLocal("go", "wrote this"))
	})
	goView := ldbDumpGo(t, db)
	db.Close()

	res := ldbRunWM(t, "read", todoJSON, file)
	if res.UserVersion != 3 {
		t.Errorf("user_version %d after WatermelonDB opened the file", res.UserVersion)
	}
	if diff := cmp.Diff(goView, res.Before); diff != "" {
		t.Errorf("WatermelonDB reads (-Go +WatermelonDB):\n%s", diff)
	}
	// WatermelonDB's edits read back in Go
	db, err = Open(file, full)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if diff := cmp.Diff(res.After, ldbDumpGo(t, db)); diff != "" {
		t.Errorf("Go reads WatermelonDB's edits (-WatermelonDB +Go):\n%s", diff)
	}
	ldbExpectMatches(t, db, "projects", "g_synced", map[string]any{"_status": "updated", "_changed": "name", "name": "edited by node"})
	ldbExpectMatches(t, db, "projects", "n_new", map[string]any{"_status": "created", "name": "made by node", "position": 7.0, "is_favorite": false})
	if v, _, _ := db.GetLocal(context.Background(), "node"); v != "was here" {
		t.Errorf("local storage written by WatermelonDB: %q", v)
	}
}

func TestMigrationsAcrossGoAndWatermelonDB(t *testing.T) {
	ldbNeedNode(t)
	full := testutil.TodoSchema(t)
	todoJSON, err := os.ReadFile(filepath.Join("..", "examples", "todo", "schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("WatermelonDB v1 file migrated by Go", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "v1.db")
		res := ldbRunWM(t, "write", ldbSchemaJSON(t, ldbSchemaAt(t, full, 1)), file)
		if res.UserVersion != 1 {
			t.Fatalf("user_version %d", res.UserVersion)
		}
		db, err := Open(file, full)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ldbExpectMatches(t, db, "tasks", "t_synced", map[string]any{"name": "Task", "is_done": true, "description": nil})
		ldbExpectMatches(t, db, "projects", "p_updated", map[string]any{"_status": "updated", "_changed": "name,is_favorite", "name": "After"})
		ldbWrite(t, db, func(tx *Tx) error {
			_, err := tx.Create("comments", map[string]any{"task_id": "t_synced", "body": "after the migration"})
			return err
		})
	})
	t.Run("Go v2 file migrated by WatermelonDB", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "v2.db")
		db, err := Open(file, ldbSchemaAt(t, full, 2))
		if err != nil {
			t.Fatal(err)
		}
		ldbWrite(t, db, func(tx *Tx) error {
			if err := tx.InsertSynced("projects", Record{"id": "g_synced", "name": "p"}); err != nil {
				return err
			}
			_, err := tx.Create("tasks", map[string]any{"id": "g_task", "project_id": "g_synced", "name": "t", "position": 5})
			return err
		})
		db.Close()
		res := ldbRunWM(t, "read", todoJSON, file)
		if res.UserVersion != 3 {
			t.Fatalf("WatermelonDB left user_version %d", res.UserVersion)
		}
		ldbExpectInDump(t, res.Before, "tasks", "g_task", map[string]any{"_status": "created", "name": "t", "position": 5.0, "description": nil})
		ldbExpectInDump(t, res.After, "projects", "g_synced", map[string]any{"_status": "updated", "name": "edited by node"})
		db, err = Open(file, full)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if diff := cmp.Diff(res.After, ldbDumpGo(t, db)); diff != "" {
			t.Errorf("(-WatermelonDB +Go):\n%s", diff)
		}
	})
}
