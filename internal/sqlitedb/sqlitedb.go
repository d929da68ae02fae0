// Package sqlitedb is the one place where melonsync sets up SQLite: the driver, the
// DSN and its pragmas, one writer connection beside a pool of read-only connections,
// the statement cache of a transaction and the conversion of values to and from the
// driver. The server store (package sqlite) and the Go client's database (package
// client) both open their files here; DESIGN.md says why each setting is what it is.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/melonsync/melonsync/schema"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Options configures Open. The zero value is usable: see each field's default.
type Options struct {
	// ReadConns is the size of the read-only pool (default 4).
	ReadConns int
	// BusyTimeout is how long a connection waits for a lock another process holds
	// before failing with SQLITE_BUSY (default 5 s; negative: fail at once).
	BusyTimeout time.Duration
	// Synchronous is the writer's PRAGMA synchronous: "FULL" (default) or "NORMAL".
	Synchronous string
	// ForeignKeys turns foreign key enforcement on for every connection.
	ForeignKeys bool
}

func (o Options) withDefaults() Options {
	if o.ReadConns < 1 {
		o.ReadConns = 4
	}
	if o.BusyTimeout == 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.Synchronous == "" {
		o.Synchronous = "FULL"
	}
	return o
}

// DSN returns the data source name of the file at path: a file: URI (so that any path
// works, '?' and '#' included) with o's pragmas. The writer's transactions begin
// IMMEDIATE; readers' begin DEFERRED on query-only connections.
func DSN(path string, o Options, writer bool) string {
	o = o.withDefaults()
	p := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(max(0, o.BusyTimeout.Milliseconds()), 10)+")")
	if o.ForeignKeys {
		q.Add("_pragma", "foreign_keys(ON)")
	}
	if writer {
		q.Add("_pragma", "synchronous("+o.Synchronous+")")
		q.Set("_txlock", "immediate")
	} else {
		q.Set("_txlock", "deferred")
		q.Set("_query_only", "1")
	}
	return "file:" + p + "?" + q.Encode()
}

// DB is one SQLite file opened as one writer connection and a pool of readers.
type DB struct {
	// Writer is a pool of exactly one connection: every write transaction runs on it.
	Writer *sql.DB
	// Reader is the pool of read-only connections.
	Reader *sql.DB
}

// Open opens the file at path, creating it when it does not exist. It opens the
// writer, calls before with it (nil: nothing), switches the file to WAL, then opens
// the readers. An error from before is returned as is and leaves the file as before
// left it: nothing of Open's own is written until before succeeds.
func Open(path string, o Options, before func(w *sql.DB) error) (*DB, error) {
	o = o.withDefaults()
	w, err := sql.Open("sqlite", DSN(path, o, true))
	if err != nil {
		return nil, err
	}
	pool(w, 1)
	if before != nil {
		if err := before(w); err != nil {
			w.Close()
			return nil, err
		}
	}
	// WAL is persistent: every later connection to the file, ours or another
	// process's, uses it.
	if _, err := w.Exec("pragma journal_mode = WAL"); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", DSN(path, o, false))
	if err != nil {
		w.Close()
		return nil, err
	}
	pool(r, o.ReadConns)
	if err := r.Ping(); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	return &DB{Writer: w, Reader: r}, nil
}

// pool keeps n connections open for the life of db.
func pool(db *sql.DB, n int) {
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
}

// Close closes both pools.
func (db *DB) Close() error {
	return errors.Join(db.Reader.Close(), db.Writer.Close())
}

// Stmts prepares each query once per transaction: a push or a sync that writes
// thousands of rows prepares one insert. The zero value is ready to use; Close (or
// the end of the transaction) releases the statements.
type Stmts struct {
	m map[string]*sql.Stmt
}

// Get returns the statement of query prepared on tx, preparing it on first use.
func (s *Stmts) Get(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	if st, ok := s.m[query]; ok {
		return st, nil
	}
	st, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if s.m == nil {
		s.m = map[string]*sql.Stmt{}
	}
	s.m[query] = st
	return st, nil
}

// Close closes the prepared statements.
func (s *Stmts) Close() {
	for _, st := range s.m {
		st.Close()
	}
	s.m = nil
}

// Bind turns a value into what is bound to a statement: SQLite has no boolean type,
// so booleans are stored as INTEGER 1/0; every other value is bound as it is.
func Bind(v any) any {
	if b, ok := v.(bool); ok {
		if b {
			return int64(1)
		}
		return int64(0)
	}
	return v
}

// Text returns a TEXT or BLOB value as a string, and an INTEGER as its decimal form
// (an id a plain SQL write stored as a number); "" for anything else.
func Text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// Int returns an INTEGER or REAL value as an int64; 0 for anything else.
func Int(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	}
	return 0
}

// Value converts what the driver returns for a column of type t to the Go type the
// protocol uses: string, float64 or bool (INTEGER and REAL both read as numbers, any
// non-zero number as true), or nil for NULL and for a value of another type.
func Value(t schema.Type, v any) any {
	if v == nil {
		return nil
	}
	switch t {
	case schema.Boolean:
		switch x := v.(type) {
		case int64:
			return x != 0
		case float64:
			return x != 0
		case bool:
			return x
		}
		return nil
	case schema.Number:
		switch x := v.(type) {
		case float64:
			return x
		case int64:
			return float64(x)
		}
		return nil
	default:
		switch x := v.(type) {
		case string:
			return x
		case []byte:
			return string(x)
		}
		return nil
	}
}
