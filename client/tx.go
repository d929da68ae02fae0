package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/internal/sqlitedb"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Tx is a transaction handed to the function given to DB.Write or DB.Read. It is not
// safe for concurrent use, and must not be used after that function returns.
type Tx struct {
	db       *DB
	tx       *sql.Tx
	ctx      context.Context
	writable bool
	done     bool
	stmts    sqlitedb.Stmts
	changes  []RecordChange
	// summary is set once the transaction changed more records than an event lists
	// one by one: changes then holds one entry per table, type and origin.
	summary map[RecordChange]bool
}

func (tx *Tx) check(write bool) error {
	if tx.done {
		return ErrTxDone
	}
	if write && !tx.writable {
		return ErrReadOnly
	}
	return nil
}

// stmt returns a statement prepared once per transaction.
func (tx *Tx) stmt(query string) (*sql.Stmt, error) { return tx.stmts.Get(tx.ctx, tx.tx, query) }

func (tx *Tx) exec(query string, args ...any) (sql.Result, error) {
	s, err := tx.stmt(query)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(tx.ctx, args...)
}

// MaxEventChanges is how many record changes a ChangeEvent lists one by one; a larger
// transaction (a big sync) is reported per table instead (ChangeEvent.Summarized), so
// that its memory does not grow with the number of records.
const MaxEventChanges = 10000

func (tx *Tx) note(table, id string, typ ChangeType, fromSync bool) {
	if tx.summary == nil && len(tx.changes) < MaxEventChanges {
		tx.changes = append(tx.changes, RecordChange{Table: table, ID: id, Type: typ, FromSync: fromSync})
		return
	}
	if tx.summary == nil {
		listed := tx.changes
		tx.changes, tx.summary = nil, map[RecordChange]bool{}
		for _, c := range listed {
			tx.noteTable(c.Table, c.Type, c.FromSync)
		}
	}
	tx.noteTable(table, typ, fromSync)
}

func (tx *Tx) noteTable(table string, typ ChangeType, fromSync bool) {
	k := RecordChange{Table: table, Type: typ, FromSync: fromSync}
	if !tx.summary[k] {
		tx.summary[k] = true
		tx.changes = append(tx.changes, k)
	}
}

// Create inserts a new record in table as WatermelonDB's Collection.create does:
// _status "created", _changed "" and every column sanitized to its type (a value of the
// wrong type becomes the column's default; a column not given gets its default). The id
// is values["id"] when given (it must match ^[A-Za-z0-9_.-]{1,64}$), else a new
// WatermelonDB-style random id. A key that is not a column of the table (including
// "_status" and "_changed") is an ErrInvalid error; an existing id is ErrExists.
// Create returns the record as stored.
func (tx *Tx) Create(table string, values map[string]any) (Record, error) {
	if err := tx.check(true); err != nil {
		return nil, err
	}
	ti, err := tx.db.table(table)
	if err != nil {
		return nil, err
	}
	id := ""
	for k, v := range values {
		if k == "id" {
			s, ok := v.(string)
			if !ok || !melonsync.ValidID(s) {
				return nil, fmt.Errorf("%w: id %v for %s must be a string matching ^[A-Za-z0-9_.-]{1,64}$", ErrInvalid, v, table)
			}
			id = s
		} else if ti.t.Column(k) == nil {
			return nil, fmt.Errorf("%w: table %q has no column %q", ErrInvalid, table, k)
		}
	}
	if id == "" {
		id = NewID()
	}
	r := make(Record, len(ti.t.Columns)+3)
	r["id"] = id
	r["_status"] = StatusCreated
	r["_changed"] = ""
	for i := range ti.t.Columns {
		c := &ti.t.Columns[i]
		if v, ok := values[c.Name]; ok {
			r[c.Name] = c.Sanitize(v)
		} else {
			r[c.Name] = c.Default()
		}
	}
	if _, err := tx.exec(ti.insertSQL, ti.rowArgs(r)...); err != nil {
		if isPrimaryKeyConflict(err) {
			return nil, fmt.Errorf("%w: %s#%s", ErrExists, table, id)
		}
		return nil, fmt.Errorf("client: create %s#%s: %w", table, id, err)
	}
	tx.note(table, id, ChangeCreated, false)
	return r, nil
}

func isPrimaryKeyConflict(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	return false
}

// Update sets columns of the record table#id as WatermelonDB's Model.update does: each
// value is sanitized to the column's type; a column whose value really changes is added
// to _changed (kept as a set; columns changed in one call are added in schema order),
// and the record becomes "updated" unless it is "created" (a created record stays
// created). Nothing is written, and nobody is notified, when no value changes. A missing record is
// ErrNotFound, one marked as deleted ErrDeleted, an unknown column (or "_status",
// "_changed", a different "id") ErrInvalid.
func (tx *Tx) Update(table, id string, values map[string]any) error {
	if err := tx.check(true); err != nil {
		return err
	}
	ti, err := tx.db.table(table)
	if err != nil {
		return err
	}
	for k, v := range values {
		if k == "id" {
			if v != id {
				return fmt.Errorf("%w: cannot change the id of %s#%s", ErrInvalid, table, id)
			}
		} else if ti.t.Column(k) == nil {
			return fmt.Errorf("%w: table %q has no column %q", ErrInvalid, table, k)
		}
	}
	cur, err := tx.find(ti, id)
	if err != nil {
		return err
	}
	status := cur["_status"].(string)
	if status == StatusDeleted {
		return fmt.Errorf("%w: %s#%s", ErrDeleted, table, id)
	}
	changed := cur["_changed"].(string)
	dirty := false
	for i := range ti.t.Columns {
		c := &ti.t.Columns[i]
		v, ok := values[c.Name]
		if !ok {
			continue
		}
		nv := c.Sanitize(v)
		if nv == cur[c.Name] {
			continue
		}
		cur[c.Name] = nv
		changed = addToChanged(changed, c.Name)
		if status != StatusCreated {
			status = StatusUpdated
		}
		dirty = true
	}
	if !dirty {
		return nil
	}
	cur["_status"], cur["_changed"] = status, changed
	if _, err := tx.exec(ti.updateSQL, ti.updateArgs(cur)...); err != nil {
		return fmt.Errorf("client: update %s#%s: %w", table, id, err)
	}
	tx.note(table, id, ChangeUpdated, false)
	return nil
}

// MarkAsDeleted marks the record table#id as deleted, as WatermelonDB's
// Model.markAsDeleted does: it stays in the file with _status "deleted" (hidden from
// queries) until the deletion is pushed, whatever its previous status. A missing record
// is ErrNotFound; marking a deleted record again does nothing.
func (tx *Tx) MarkAsDeleted(table, id string) error {
	if err := tx.check(true); err != nil {
		return err
	}
	ti, err := tx.db.table(table)
	if err != nil {
		return err
	}
	cur, err := tx.find(ti, id)
	if err != nil {
		return err
	}
	if cur["_status"] == StatusDeleted {
		return nil
	}
	if _, err := tx.exec(`update "`+table+`" set "_status" = 'deleted' where "id" is ?`, id); err != nil {
		return fmt.Errorf("client: mark %s#%s as deleted: %w", table, id, err)
	}
	tx.note(table, id, ChangeDeleted, false)
	return nil
}

// DestroyPermanently removes the record table#id from the file at once, as
// WatermelonDB's Model.destroyPermanently does. The deletion is never synced: use
// MarkAsDeleted for records the server knows. A missing record is ErrNotFound.
func (tx *Tx) DestroyPermanently(table, id string) error {
	if err := tx.check(true); err != nil {
		return err
	}
	if _, err := tx.db.table(table); err != nil {
		return err
	}
	res, err := tx.exec(`delete from "`+table+`" where "id" is ?`, id)
	if err != nil {
		return fmt.Errorf("client: destroy %s#%s: %w", table, id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s#%s", ErrNotFound, table, id)
	}
	tx.note(table, id, ChangeDeleted, false)
	return nil
}

// Find returns the record table#id, or ErrNotFound. Like WatermelonDB's find, it also
// returns a record marked as deleted (its _status says so).
func (tx *Tx) Find(table, id string) (Record, error) {
	if err := tx.check(false); err != nil {
		return nil, err
	}
	ti, err := tx.db.table(table)
	if err != nil {
		return nil, err
	}
	return tx.find(ti, id)
}

func (tx *Tx) find(ti *tableInfo, id string) (Record, error) {
	s, err := tx.stmt(ti.selectSQL + ` where "id" is ? limit 1`)
	if err != nil {
		return nil, fmt.Errorf("client: find %s#%s: %w", ti.t.Name, id, err)
	}
	vals, ptrs := ti.scanBuf()
	if err := s.QueryRowContext(tx.ctx, id).Scan(ptrs...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%w: %s#%s", ErrNotFound, ti.t.Name, id)
		}
		return nil, fmt.Errorf("client: find %s#%s: %w", ti.t.Name, id, err)
	}
	return ti.decode(vals), nil
}

// Query returns the records of table that match q, in q's order. Records marked as
// deleted are left out unless q.IncludeDeleted is set.
func (tx *Tx) Query(table string, q Query) ([]Record, error) {
	if err := tx.check(false); err != nil {
		return nil, err
	}
	ti, err := tx.db.table(table)
	if err != nil {
		return nil, err
	}
	where, args, err := q.sql(ti)
	if err != nil {
		return nil, err
	}
	return tx.queryRecords(ti, ti.selectSQL+where, args...)
}

func (tx *Tx) queryRecords(ti *tableInfo, query string, args ...any) ([]Record, error) {
	rows, err := tx.tx.QueryContext(tx.ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("client: query %s: %w", ti.t.Name, err)
	}
	defer rows.Close()
	vals, ptrs := ti.scanBuf()
	var out []Record
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("client: query %s: %w", ti.t.Name, err)
		}
		out = append(out, ti.decode(vals))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("client: query %s: %w", ti.t.Name, err)
	}
	return out, nil
}

// queryIDs runs a query that selects one id column.
func (tx *Tx) queryIDs(query string, args ...any) ([]string, error) {
	rows, err := tx.tx.QueryContext(tx.ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v any
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, sqlitedb.Text(v))
	}
	return out, rows.Err()
}

// Count returns how many records of table match q (Limit and Offset apply).
func (tx *Tx) Count(table string, q Query) (int, error) {
	if err := tx.check(false); err != nil {
		return 0, err
	}
	ti, err := tx.db.table(table)
	if err != nil {
		return 0, err
	}
	where, args, err := q.sql(ti)
	if err != nil {
		return 0, err
	}
	query := `select count(*) from "` + table + `"` + where
	if q.Limit > 0 || q.Offset > 0 {
		query = `select count(*) from (select 1 from "` + table + `"` + where + ")"
	}
	var n int
	if err := tx.tx.QueryRowContext(tx.ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("client: count %s: %w", table, err)
	}
	return n, nil
}

// GetLocal returns the value stored under key in the local key/value storage
// (WatermelonDB's localStorage, table local_storage) and whether there is one.
func (tx *Tx) GetLocal(key string) (string, bool, error) {
	if err := tx.check(false); err != nil {
		return "", false, err
	}
	var v any
	err := tx.tx.QueryRowContext(tx.ctx, `select "value" from "local_storage" where "key" = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("client: get local %q: %w", key, err)
	}
	switch x := v.(type) {
	case string:
		return x, true, nil
	case []byte:
		return string(x), true, nil
	}
	return fmt.Sprint(v), true, nil
}

// SetLocal stores value under key in the local key/value storage, replacing any value.
func (tx *Tx) SetLocal(key, value string) error {
	if err := tx.check(true); err != nil {
		return err
	}
	if _, err := tx.exec(`insert or replace into "local_storage" ("key", "value") values (?, ?)`, key, value); err != nil {
		return fmt.Errorf("client: set local %q: %w", key, err)
	}
	return nil
}

// RemoveLocal removes key from the local key/value storage (no error when absent).
func (tx *Tx) RemoveLocal(key string) error {
	if err := tx.check(true); err != nil {
		return err
	}
	if _, err := tx.exec(`delete from "local_storage" where "key" = ?`, key); err != nil {
		return fmt.Errorf("client: remove local %q: %w", key, err)
	}
	return nil
}
