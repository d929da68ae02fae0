package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/melonsync/melonsync/internal/sqlitedb"
	"github.com/melonsync/melonsync/schema"
)

// Option configures Open.
type Option func(*options)

type options = sqlitedb.Options

// WithReadConns sets the size of the read connection pool (default 4, at least 1).
func WithReadConns(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.ReadConns = n
		}
	}
}

// WithBusyTimeout sets how long a connection waits for a lock held by another process
// before failing with SQLITE_BUSY (default 5 s).
func WithBusyTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.BusyTimeout = d
		} else if d == 0 {
			o.BusyTimeout = -1 // no waiting
		}
	}
}

// WithRelaxedDurability commits with PRAGMA synchronous=NORMAL instead of FULL: faster
// commits; still atomic and safe when the process crashes, but a power loss may undo
// the last few commits.
func WithRelaxedDurability() Option {
	return func(o *options) { o.Synchronous = "NORMAL" }
}

// DB is a local database in one SQLite file with WatermelonDB's layout. It is safe for
// concurrent use by many goroutines: writes are serialized (one writer at a time), reads
// run concurrently on their own snapshot and are not blocked by writes.
type DB struct {
	path   string
	schema *schema.Schema
	tables map[string]*tableInfo

	writer *sql.DB // one connection, BEGIN IMMEDIATE
	reader *sql.DB // read-only pool, deferred transactions on WAL snapshots

	wsem    chan struct{} // holds the write turn
	closing chan struct{} // closed when Close starts
	closed  atomic.Bool
	once    sync.Once

	subs subscribers
}

// Open opens the database file at path, creating it when it does not exist, for the
// schema s (with its migrations). A file at an older schema version is migrated in one
// transaction (create_table, add_columns filling the default value, sql), as WatermelonDB
// does. A file newer than the schema, one that no migrations lead from, or one that is
// not a WatermelonDB database fails with ErrIncompatible and is left unchanged (where
// WatermelonDB would erase it). The file is switched to WAL journal mode.
func Open(path string, s *schema.Schema, opts ...Option) (*DB, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil schema", ErrInvalid)
	}
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("%w: Open needs the path of a file, not %q", ErrInvalid, path)
	}
	o := options{ReadConns: 4, BusyTimeout: 5 * time.Second, Synchronous: "FULL"}
	for _, opt := range opts {
		opt(&o)
	}
	db := &DB{path: path, schema: s, tables: make(map[string]*tableInfo, len(s.Tables)), wsem: make(chan struct{}, 1), closing: make(chan struct{})}
	for _, t := range s.Tables {
		db.tables[t.Name] = newTableInfo(t)
	}
	// The file is switched to WAL only after setUp, so that a file we refuse is left
	// as it was.
	var setUpErr error
	sdb, err := sqlitedb.Open(path, o, func(w *sql.DB) error {
		setUpErr = setUp(context.Background(), w, s)
		return setUpErr
	})
	if setUpErr != nil {
		return nil, setUpErr
	}
	if err != nil {
		return nil, fmt.Errorf("client: open %s: %w", path, err)
	}
	db.writer, db.reader = sdb.Writer, sdb.Reader
	return db, nil
}

// Close waits for the running write to finish, stops change notifications and closes the
// file. Calls after the first return nil; any other use of db returns ErrClosed.
func (db *DB) Close() error {
	var err error
	db.once.Do(func() {
		db.closed.Store(true)
		close(db.closing)     // writers waiting for their turn give up
		db.wsem <- struct{}{} // wait for the running writer; never released
		db.subs.closeAll()
		err = errors.Join(db.reader.Close(), db.writer.Close())
	})
	return err
}

// Path returns the path of the database file.
func (db *DB) Path() string { return db.path }

// Schema returns the schema the database was opened with.
func (db *DB) Schema() *schema.Schema { return db.schema }

// Write runs fn in a write transaction. Writes are serialized: Write waits (or fails
// with ctx's error) until no other write runs. The transaction commits when fn returns
// nil and rolls back when fn returns an error or panics: all or nothing. Change
// notifications go out after the commit. fn must not call Write, Read or Close on the
// same DB (use tx), and tx must not be used after fn returns.
func (db *DB) Write(ctx context.Context, fn func(tx *Tx) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	select {
	case db.wsem <- struct{}{}:
	case <-db.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-db.wsem }()
	if db.closed.Load() {
		return ErrClosed
	}
	stx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("client: begin write: %w", err)
	}
	tx := &Tx{db: db, tx: stx, ctx: ctx, writable: true}
	committed := false
	defer func() {
		tx.done = true
		if !committed {
			stx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	tx.done = true
	if err := stx.Commit(); err != nil {
		return fmt.Errorf("client: commit: %w", err)
	}
	committed = true
	if len(tx.changes) > 0 {
		db.subs.publish(tx.changes, tx.summary != nil) // still holding the write turn: events keep commit order
	}
	return nil
}

// Read runs fn in a read transaction: every read in it sees one consistent snapshot,
// the state after some commit. Reads are not blocked by a running write and do not see
// its uncommitted changes. Write methods of tx fail with ErrReadOnly.
func (db *DB) Read(ctx context.Context, fn func(tx *Tx) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	stx, err := db.reader.BeginTx(ctx, nil)
	if err != nil {
		if db.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("client: begin read: %w", err)
	}
	tx := &Tx{db: db, tx: stx, ctx: ctx}
	defer func() {
		tx.done = true
		stx.Rollback()
	}()
	return fn(tx)
}

// GetLocal reads one value of the local key/value storage (see Tx.GetLocal).
func (db *DB) GetLocal(ctx context.Context, key string) (value string, ok bool, err error) {
	err = db.Read(ctx, func(tx *Tx) error {
		value, ok, err = tx.GetLocal(key)
		return err
	})
	return value, ok, err
}

// SetLocal writes one value of the local key/value storage in its own write
// transaction (see Tx.SetLocal).
func (db *DB) SetLocal(ctx context.Context, key, value string) error {
	return db.Write(ctx, func(tx *Tx) error { return tx.SetLocal(key, value) })
}

// table returns the table's info or an ErrInvalid error.
func (db *DB) table(name string) (*tableInfo, error) {
	if ti, ok := db.tables[name]; ok {
		return ti, nil
	}
	return nil, fmt.Errorf("%w: unknown table %q", ErrInvalid, name)
}
