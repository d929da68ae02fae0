package sqlitedb_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/melonsync/melonsync/internal/sqlitedb"
	"github.com/melonsync/melonsync/schema"
)

func pragma(t *testing.T, db *sql.DB, name string) string {
	t.Helper()
	var v string
	if err := db.QueryRow("pragma " + name).Scan(&v); err != nil {
		t.Fatalf("pragma %s: %v", name, err)
	}
	return v
}

// Every connection gets the settings of Options: the writer its durability, the
// readers query_only, both the busy timeout and foreign keys; the file is in WAL.
func TestOpenAppliesTheSettings(t *testing.T) {
	// '?' and '#' in the path must not be read as the URI's query or fragment.
	path := filepath.Join(t.TempDir(), "a?b#c.db")
	db, err := sqlitedb.Open(path, sqlitedb.Options{ReadConns: 2, BusyTimeout: 1500 * time.Millisecond, Synchronous: "NORMAL", ForeignKeys: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the file is not at its path: %v", err)
	}
	for _, c := range []struct {
		db          *sql.DB
		name, value string
	}{
		{db.Writer, "journal_mode", "wal"},
		{db.Writer, "busy_timeout", "1500"},
		{db.Writer, "synchronous", "1"}, // NORMAL
		{db.Writer, "foreign_keys", "1"},
		{db.Writer, "query_only", "0"},
		{db.Reader, "busy_timeout", "1500"},
		{db.Reader, "foreign_keys", "1"},
		{db.Reader, "query_only", "1"},
	} {
		if got := pragma(t, c.db, c.name); got != c.value {
			t.Errorf("pragma %s = %s, want %s", c.name, got, c.value)
		}
	}
	if _, err := db.Reader.Exec(`create table x (a)`); err == nil {
		t.Error("a reader connection wrote")
	}
	if n := db.Writer.Stats().MaxOpenConnections; n != 1 {
		t.Errorf("writer pool of %d connections", n)
	}
	if n := db.Reader.Stats().MaxOpenConnections; n != 2 {
		t.Errorf("reader pool of %d connections, want 2", n)
	}
}

func TestOpenDefaults(t *testing.T) {
	db, err := sqlitedb.Open(filepath.Join(t.TempDir(), "d.db"), sqlitedb.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := pragma(t, db.Writer, "busy_timeout"); got != "5000" {
		t.Errorf("busy_timeout %s, want 5000", got)
	}
	if got := pragma(t, db.Writer, "synchronous"); got != "2" { // FULL
		t.Errorf("synchronous %s, want 2 (FULL)", got)
	}
	if got := pragma(t, db.Writer, "foreign_keys"); got != "0" {
		t.Errorf("foreign_keys %s, want 0", got)
	}
	if n := db.Reader.Stats().MaxOpenConnections; n != 4 {
		t.Errorf("reader pool of %d connections, want 4", n)
	}
	noWait, err := sqlitedb.Open(filepath.Join(t.TempDir(), "n.db"), sqlitedb.Options{BusyTimeout: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer noWait.Close()
	if got := pragma(t, noWait.Writer, "busy_timeout"); got != "0" {
		t.Errorf("busy_timeout %s, want 0", got)
	}
}

// When before fails, Open returns its error and the file is not switched to WAL.
func TestOpenBeforeFailsLeavesJournalMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.db")
	refused := errors.New("refused")
	_, err := sqlitedb.Open(path, sqlitedb.Options{}, func(w *sql.DB) error {
		_, err := w.Exec(`create table t (a)`)
		if err != nil {
			return err
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("Open: %v, want the error of before", err)
	}
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if got := pragma(t, raw, "journal_mode"); got != "delete" {
		t.Errorf("journal_mode %s after a refused open, want delete", got)
	}
}

// A write transaction prepares each query once, whatever the number of rows.
func TestStmtsPrepareOnce(t *testing.T) {
	db, err := sqlitedb.Open(filepath.Join(t.TempDir(), "s.db"), sqlitedb.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.Writer.Exec(`create table t (a)`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Writer.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var stmts sqlitedb.Stmts
	defer stmts.Close()
	first, err := stmts.Get(ctx, tx, `insert into t values (?)`)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		st, err := stmts.Get(ctx, tx, `insert into t values (?)`)
		if err != nil {
			t.Fatal(err)
		}
		if st != first {
			t.Fatal("the same query was prepared again")
		}
		if _, err := st.Exec(sqlitedb.Bind(i%2 == 0)); err != nil {
			t.Fatal(err)
		}
	}
	var ones int
	if err := tx.QueryRow(`select count(*) from t where a = 1`).Scan(&ones); err != nil || ones != 50 {
		t.Errorf("booleans bound as 1: %d (%v), want 50", ones, err)
	}
	if _, err := stmts.Get(ctx, tx, `not sql`); err == nil {
		t.Error("a bad query prepared")
	}
}

func TestValueConversion(t *testing.T) {
	for _, c := range []struct {
		typ  schema.Type
		in   any
		want any
	}{
		{schema.String, "x", "x"}, {schema.String, []byte("x"), "x"}, {schema.String, int64(1), nil}, {schema.String, nil, nil},
		{schema.Number, int64(3), float64(3)}, {schema.Number, 2.5, 2.5}, {schema.Number, "3", nil},
		{schema.Boolean, int64(1), true}, {schema.Boolean, int64(0), false}, {schema.Boolean, 1.0, true}, {schema.Boolean, "1", nil},
	} {
		if got := sqlitedb.Value(c.typ, c.in); got != c.want {
			t.Errorf("Value(%v, %#v) = %#v, want %#v", c.typ, c.in, got, c.want)
		}
	}
	if sqlitedb.Bind(true) != int64(1) || sqlitedb.Bind(false) != int64(0) || sqlitedb.Bind("s") != "s" || sqlitedb.Bind(nil) != nil {
		t.Error("Bind")
	}
	for in, want := range map[any]string{"a": "a", int64(12): "12", nil: ""} {
		if got := sqlitedb.Text(in); got != want {
			t.Errorf("Text(%#v) = %q, want %q", in, got, want)
		}
	}
	if sqlitedb.Text([]byte("b")) != "b" || sqlitedb.Int(int64(7)) != 7 || sqlitedb.Int(7.0) != 7 || sqlitedb.Int("7") != 0 {
		t.Error("Text/Int")
	}
}
