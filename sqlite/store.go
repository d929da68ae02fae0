// Package sqlite is melonsync's default server store: a server.Store in one SQLite
// file, with no set-up.
//
// Rules (see DESIGN.md): WAL; one writer connection with BEGIN IMMEDIATE, so writes are serialized
// and versions are handed out in commit order; a small pool of read-only
// connections, each pull reading one snapshot.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/melonsync/melonsync/internal/sqlitedb"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

var _ server.Store = (*Store)(nil)

// Store is the server store on one SQLite file.
type Store struct {
	path   string
	writer *sql.DB
	reader *sql.DB

	mu      sync.RWMutex
	schema  *schema.Schema
	changes server.SchemaChanges

	// Now returns the current time; versions are milliseconds since the epoch,
	// bumped to stay strictly increasing.
	Now func() time.Time
}

// storeOptions are the SQLite settings of the server store (see DESIGN.md): eight readers
// for concurrent pulls, a 10 s busy timeout (a second process, such as
// "melonsync token", may hold the write lock briefly), full fsync on commit (an
// acknowledged push survives power loss) and foreign keys on.
var storeOptions = sqlitedb.Options{ReadConns: 8, BusyTimeout: 10 * time.Second, Synchronous: "FULL", ForeignKeys: true}

// DSN returns the data source name with which a program's own connection opens the
// store's file at path (database/sql driver "sqlite") with the store's settings: txlock
// "immediate" for a connection that writes, anything else for a read-only one.
func DSN(path, txlock string) string {
	return sqlitedb.DSN(path, storeOptions, txlock == "immediate")
}

// Open opens (creating if needed) the store in the SQLite file at path and brings
// our own tables up to date. Call Prepare with the schema before serving.
func Open(path string) (*Store, error) {
	db, err := sqlitedb.Open(path, storeOptions, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w, r := db.Writer, db.Reader
	s := &Store{path: path, writer: w, reader: r, Now: time.Now}
	if err := s.migrate(context.Background()); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// migrate creates our own tables.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	defer tx.Rollback()
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS "__melon_meta" ("key" TEXT PRIMARY KEY NOT NULL, "value" TEXT NOT NULL)`,
		`INSERT OR IGNORE INTO "__melon_meta" ("key", "value") VALUES ('store_version', '1')`,
		`INSERT OR IGNORE INTO "__melon_meta" ("key", "value") VALUES ('clock', '` + strconv.FormatInt(time.Now().UnixMilli(), 10) + `')`,
		`INSERT OR IGNORE INTO "__melon_meta" ("key", "value") VALUES ('purged_through', '0')`,
		// Every change of a group table row's group (or a membership row's group or
		// user), for access rules (server/ACCESS.md).
		`CREATE TABLE IF NOT EXISTS "__melon_moves" ("tbl" TEXT NOT NULL, "id" TEXT NOT NULL, "version" INTEGER NOT NULL,
			"from_grp" TEXT NOT NULL, "to_grp" TEXT NOT NULL, "from_usr" TEXT NOT NULL DEFAULT '', "to_usr" TEXT NOT NULL DEFAULT '',
			PRIMARY KEY ("tbl", "id", "version"))`,
		// Group and user of rows being deleted by plain SQL, until their tombstone
		// takes them (access_triggers.go).
		`CREATE TABLE IF NOT EXISTS "__melon_gone" ("tbl" TEXT NOT NULL, "id" TEXT NOT NULL, "grp" TEXT NOT NULL, "usr" TEXT NOT NULL, PRIMARY KEY ("tbl", "id"))`,
		`CREATE INDEX IF NOT EXISTS "__melon_moves_from_grp" ON "__melon_moves" ("tbl", "from_grp", "version")`,
		`CREATE INDEX IF NOT EXISTS "__melon_moves_from_usr" ON "__melon_moves" ("tbl", "from_usr", "version") WHERE "from_usr" <> ''`,
		`CREATE INDEX IF NOT EXISTS "__melon_moves_to_usr" ON "__melon_moves" ("tbl", "to_usr", "version") WHERE "to_usr" <> ''`,
	}
	stmts = append(append(stmts, adminTables...), gapTables...)
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sqlite: migrate: %w", err)
		}
	}
	return tx.Commit()
}

// Close closes the store's connections.
func (s *Store) Close() error {
	err1 := s.reader.Close()
	err2 := s.writer.Close()
	return errors.Join(err1, err2)
}

// Ping checks that the file can be read.
func (s *Store) Ping(ctx context.Context) error {
	var n int
	return s.reader.QueryRowContext(ctx, `SELECT 1`).Scan(&n)
}

func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func sqlType(t schema.Type) string {
	switch t {
	case schema.String:
		return "TEXT"
	case schema.Number:
		return "REAL"
	default:
		return "INTEGER"
	}
}

// Secret returns the JWT secret kept in the file, generating it on first use.
func (s *Store) Secret(ctx context.Context) ([]byte, error) {
	var v string
	err := s.reader.QueryRowContext(ctx, `SELECT "value" FROM "__melon_meta" WHERE "key" = 'jwt_secret'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		buf := make([]byte, 32)
		if _, err := rand.Read(buf); err != nil {
			return nil, err
		}
		if _, err := s.writer.ExecContext(ctx, `INSERT OR IGNORE INTO "__melon_meta" ("key", "value") VALUES ('jwt_secret', ?)`, hex.EncodeToString(buf)); err != nil {
			return nil, fmt.Errorf("sqlite: secret: %w", err)
		}
		err = s.writer.QueryRowContext(ctx, `SELECT "value" FROM "__melon_meta" WHERE "key" = 'jwt_secret'`).Scan(&v)
	}
	if err != nil {
		return nil, classify(fmt.Errorf("sqlite: secret: %w", err))
	}
	return hex.DecodeString(v)
}

// Read runs fn in one read transaction (one WAL snapshot).
func (s *Store) Read(ctx context.Context, fn func(server.ReadTx) error) error {
	return classify(s.read(ctx, fn))
}

func (s *Store) read(ctx context.Context, fn func(server.ReadTx) error) error {
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: begin read: %w", err)
	}
	defer tx.Rollback()
	rt := &readTx{ctx: ctx, tx: tx}
	// The snapshot starts at the first read: take it now, so everything fn reads
	// (the clock included) comes from the same snapshot.
	if _, err := rt.Clock(); err != nil {
		return err
	}
	return fn(rt)
}

// Write runs fn in one IMMEDIATE transaction on the writer connection. A full disk
// (or file) rolls it back whole and wraps melonsync.ErrStorageFull.
func (s *Store) Write(ctx context.Context, fn func(server.WriteTx) error) error {
	return classify(s.write(ctx, fn))
}

func (s *Store) write(ctx context.Context, fn func(server.WriteTx) error) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin write: %w", err)
	}
	defer tx.Rollback()
	wt := &writeTx{readTx: readTx{ctx: ctx, tx: tx}, store: s, now: s.Now}
	defer wt.close()
	if err := fn(wt); err != nil {
		return err
	}
	if wt.version != 0 {
		// The marker that tells this transaction's rows to the triggers (triggers.go)
		// is never committed.
		if _, err := tx.ExecContext(ctx, `DELETE FROM "__melon_meta" WHERE "key" = 'writing'`); err != nil {
			return fmt.Errorf("sqlite: commit: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		if isRefusal(err) {
			return refusedAtCommit(err)
		}
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// PurgeTombstones deletes tombstones with a version ≤ before.
func (s *Store) PurgeTombstones(ctx context.Context, before int64) (int64, error) {
	n, err := s.purge(ctx, before)
	return n, classify(err)
}

func (s *Store) purge(ctx context.Context, before int64) (int64, error) {
	s.mu.RLock()
	sch := s.schema
	s.mu.RUnlock()
	if sch == nil {
		return 0, errors.New("sqlite: purge: store not prepared")
	}
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var n, newest int64
	for _, t := range sch.Tables {
		// Only versions of tombstones really purged make older pulls impossible.
		var top sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT max("__version") FROM `+quote(t.Name)+` WHERE "__deleted" = 1 AND "__version" <= ?`, before).Scan(&top); err != nil {
			return 0, fmt.Errorf("sqlite: purge %s: %w", t.Name, err)
		}
		if !top.Valid {
			continue
		}
		newest = max(newest, top.Int64)
		res, err := tx.ExecContext(ctx, `DELETE FROM `+quote(t.Name)+` WHERE "__deleted" = 1 AND "__version" <= ?`, before)
		if err != nil {
			return 0, fmt.Errorf("sqlite: purge %s: %w", t.Name, err)
		}
		k, _ := res.RowsAffected()
		n += k
	}
	// Moves as old as the purged tombstones go too: a pull from before them gets a
	// replacement answer, like one from before a purged deletion.
	var top sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT max("version") FROM "__melon_moves" WHERE "version" <= ?`, before).Scan(&top); err != nil {
		return 0, fmt.Errorf("sqlite: purge moves: %w", err)
	}
	if top.Valid {
		newest = max(newest, top.Int64)
		if _, err := tx.ExecContext(ctx, `DELETE FROM "__melon_moves" WHERE "version" <= ?`, before); err != nil {
			return 0, fmt.Errorf("sqlite: purge moves: %w", err)
		}
	}
	if newest == 0 {
		return 0, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE "__melon_meta" SET "value" = CAST(max(CAST("value" AS INTEGER), ?) AS TEXT) WHERE "key" = 'purged_through'`, newest); err != nil {
		return 0, err
	}
	return n, tx.Commit()
}

type readTx struct {
	ctx   context.Context
	tx    *sql.Tx
	clock int64
}

func (r *readTx) meta(key string) (int64, error) {
	var v string
	if err := r.tx.QueryRowContext(r.ctx, `SELECT "value" FROM "__melon_meta" WHERE "key" = ?`, key).Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlite: read %s: %w", key, err)
	}
	return strconv.ParseInt(v, 10, 64)
}

func (r *readTx) Clock() (int64, error) {
	if r.clock != 0 {
		return r.clock, nil
	}
	c, err := r.meta("clock")
	r.clock = c
	return c, err
}

func (r *readTx) PurgedThrough() (int64, error) { return r.meta("purged_through") }

// defaultCond returns a condition true when column c holds a non-default value.
func defaultCond(c schema.Column) string {
	q := quote(c.Name)
	if c.IsOptional {
		return q + ` IS NOT NULL`
	}
	switch c.Type {
	case schema.String:
		return `(` + q + ` IS NOT NULL AND ` + q + ` <> '')`
	default:
		return `(` + q + ` IS NOT NULL AND ` + q + ` <> 0)`
	}
}

// groupExpr is the SQL of a group table's group value ("" when t has none).
func groupExpr(t *schema.Table) string {
	switch {
	case t.Rule.Kind != schema.GroupRule:
		return `''`
	case t.Rule.By == "id":
		return `"id"`
	}
	return `coalesce(` + quote(t.Rule.By) + `, '')`
}

// userExpr is the SQL of the user a membership row names ("" outside members tables).
func userExpr(t *schema.Table) string {
	if g := t.Rule.MembersOf; g != nil {
		return `coalesce(` + quote(g.UserCol) + `, '')`
	}
	return `''`
}

// jsonList encodes a list of strings as one JSON array parameter, read back with
// json_each: any number of values in one statement.
func jsonList(list []string) string {
	b, _ := json.Marshal(list)
	return string(b)
}

// scope returns the scope condition of f on t and its arguments.
func scope(t *schema.Table, f server.Filter) (string, []any) {
	switch {
	case f.Any:
		return `1`, nil
	case f.User != "" && t.Rule.MembersOf != nil:
		return quote(t.Rule.MembersOf.UserCol) + ` = ?`, []any{f.User}
	case f.Groups != nil && t.Rule.Kind == schema.GroupRule:
		col := quote(t.Rule.By)
		if t.Rule.By == "id" {
			col = `"id"`
		}
		return col + ` IN (SELECT "value" FROM json_each(?))`, []any{jsonList(f.Groups)}
	}
	return `"__owner" = ?`, []any{f.Owner}
}

func (r *readTx) Scan(t *schema.Table, cols []schema.Column, f server.Filter, fn func(*server.Row) error) error {
	if (f.Groups != nil && len(f.Groups) == 0 && !f.Any && f.User == "") || (f.IDs != nil && len(f.IDs) == 0) {
		return nil
	}
	var b strings.Builder
	b.WriteString(`SELECT "id", "__version", "__created_version", "__created_device", "__owner", ` + groupExpr(t) + `, ` + userExpr(t))
	if !f.Deleted {
		for _, c := range cols {
			b.WriteString(", ")
			b.WriteString(quote(c.Name))
		}
	}
	cond, args := scope(t, f)
	b.WriteString(` FROM ` + quote(t.Name) + ` WHERE ` + cond + ` AND "__deleted" = ?`)
	args = append(args, sqlitedb.Bind(f.Deleted))
	if f.IDs != nil {
		b.WriteString(` AND "id" IN (SELECT "value" FROM json_each(?))`)
		args = append(args, jsonList(f.IDs))
	}
	args = filterConds(&b, f, args)
	if f.ByCreated {
		b.WriteString(` ORDER BY "__created_version", "id"`)
		if f.Limit > 0 {
			b.WriteString(` LIMIT ?`)
			args = append(args, f.Limit)
		}
	}
	rows, err := r.tx.QueryContext(r.ctx, b.String(), args...)
	if err != nil {
		return fmt.Errorf("sqlite: scan %s: %w", t.Name, err)
	}
	defer rows.Close()
	const meta = 7
	n := meta
	if !f.Deleted {
		n += len(cols)
	}
	raw := make([]any, n)
	ptrs := make([]any, n)
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	row := &server.Row{Values: make([]any, len(cols))}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("sqlite: scan %s: %w", t.Name, err)
		}
		row.ID = sqlitedb.Text(raw[0])
		row.Version = sqlitedb.Int(raw[1])
		row.CreatedVersion = sqlitedb.Int(raw[2])
		row.CreatedDevice = sqlitedb.Text(raw[3])
		row.Owner = sqlitedb.Text(raw[4])
		row.Group = sqlitedb.Text(raw[5])
		row.User = sqlitedb.Text(raw[6])
		if !f.Deleted {
			for i, c := range cols {
				row.Values[i] = sqlitedb.Value(c.Type, raw[meta+i])
			}
		}
		if err := fn(row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: scan %s: %w", t.Name, err)
	}
	return nil
}

// filterConds appends f's version and content conditions to a WHERE clause.
func filterConds(b *strings.Builder, f server.Filter, args []any) []any {
	bound := func(cond string, v int64) {
		if v > 0 {
			b.WriteString(` AND ` + cond + ` ?`)
			args = append(args, v)
		}
	}
	bound(`"__version" >`, f.After)
	bound(`"__version" <=`, f.Through)
	bound(`"__created_version" >`, f.CreatedAfter)
	bound(`"__created_version" <=`, f.CreatedThrough)
	if len(f.NonDefault) > 0 {
		conds := make([]string, len(f.NonDefault))
		for i, c := range f.NonDefault {
			conds[i] = defaultCond(c)
		}
		b.WriteString(` AND (` + strings.Join(conds, " OR ") + `)`)
	}
	return args
}

// Count returns how many rows of t match f.
func (r *readTx) Count(t *schema.Table, f server.Filter) (int64, error) {
	if (f.Groups != nil && len(f.Groups) == 0 && !f.Any && f.User == "") || (f.IDs != nil && len(f.IDs) == 0) {
		return 0, nil
	}
	var b strings.Builder
	cond, args := scope(t, f)
	b.WriteString(`SELECT count(*) FROM ` + quote(t.Name) + ` WHERE ` + cond + ` AND "__deleted" = ?`)
	args = append(args, sqlitedb.Bind(f.Deleted))
	if f.IDs != nil {
		b.WriteString(` AND "id" IN (SELECT "value" FROM json_each(?))`)
		args = append(args, jsonList(f.IDs))
	}
	args = filterConds(&b, f, args)
	var n int64
	if err := r.tx.QueryRowContext(r.ctx, b.String(), args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: count %s: %w", t.Name, err)
	}
	return n, nil
}

func (r *readTx) Moves(t *schema.Table, f server.MoveFilter, fn func(server.Move) error) error {
	q := `SELECT "id", "version", "from_grp", "to_grp", "from_usr", "to_usr" FROM "__melon_moves" WHERE "tbl" = ? AND "version" > ?`
	args := []any{t.Name, f.After}
	switch {
	case f.IDs != nil:
		q += ` AND "id" IN (SELECT "value" FROM json_each(?))`
		args = append(args, jsonList(f.IDs))
	case f.FromGroups != nil:
		q += ` AND "from_grp" IN (SELECT "value" FROM json_each(?))`
		args = append(args, jsonList(f.FromGroups))
	case f.User != "":
		q = `SELECT * FROM (` + q + ` AND "from_usr" = ? UNION ` + q + ` AND "to_usr" = ?)`
		args = append(args, f.User, t.Name, f.After, f.User)
	default:
		return errors.New("sqlite: moves: no filter")
	}
	rows, err := r.tx.QueryContext(r.ctx, q+` ORDER BY "id", "version"`, args...)
	if err != nil {
		return fmt.Errorf("sqlite: moves %s: %w", t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var m server.Move
		if err := rows.Scan(&m.ID, &m.Version, &m.FromGroup, &m.ToGroup, &m.FromUser, &m.ToUser); err != nil {
			return fmt.Errorf("sqlite: moves %s: %w", t.Name, err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return rows.Err()
}

type writeTx struct {
	readTx
	store   *Store
	now     func() time.Time
	version int64
	stmts   sqlitedb.Stmts
}

func (w *writeTx) close() { w.stmts.Close() }

func (w *writeTx) stmt(q string) (*sql.Stmt, error) { return w.stmts.Get(w.ctx, w.tx, q) }

func (w *writeTx) Version() (int64, error) {
	if w.version != 0 {
		return w.version, nil
	}
	clock, err := w.Clock()
	if err != nil {
		return 0, err
	}
	v := w.now().UnixMilli()
	if v <= clock {
		v = clock + 1
	}
	if _, err := w.tx.ExecContext(w.ctx, `UPDATE "__melon_meta" SET "value" = ? WHERE "key" = 'clock'`, strconv.FormatInt(v, 10)); err != nil {
		return 0, fmt.Errorf("sqlite: clock: %w", err)
	}
	// Rows with this version are melonsync's own writes: the triggers leave them
	// alone, and stamp side effects (the app's triggers, cascades) with it.
	if _, err := w.tx.ExecContext(w.ctx, `INSERT OR REPLACE INTO "__melon_meta" ("key", "value") VALUES ('writing', ?)`, strconv.FormatInt(v, 10)); err != nil {
		return 0, fmt.Errorf("sqlite: clock: %w", err)
	}
	w.version = v
	w.clock = v
	return v, nil
}

const lookupChunk = 500

func (w *writeTx) Lookup(t *schema.Table, ids []string) (map[string]server.Meta, error) {
	out := make(map[string]server.Meta, len(ids))
	for start := 0; start < len(ids); start += lookupChunk {
		end := min(start+lookupChunk, len(ids))
		chunk := ids[start:end]
		q := `SELECT "id", "__owner", "__version", "__deleted", "__device", ` + groupExpr(t) + `, ` + userExpr(t) + ` FROM ` + quote(t.Name) +
			` WHERE "id" IN (?` + strings.Repeat(",?", len(chunk)-1) + `)`
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := w.tx.QueryContext(w.ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: lookup %s: %w", t.Name, err)
		}
		for rows.Next() {
			var id, owner, device string
			var m server.Meta
			var deleted int64
			if err := rows.Scan(&id, &owner, &m.Version, &deleted, &device, &m.Group, &m.User); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: lookup %s: %w", t.Name, err)
			}
			m.Owner, m.Deleted, m.Device = owner, deleted != 0, device
			out[id] = m
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: lookup %s: %w", t.Name, err)
		}
	}
	return out, nil
}

func (w *writeTx) Apply(t *schema.Table, ops []server.Op) error {
	v, err := w.Version()
	if err != nil {
		return err
	}
	q := quote(t.Name)
	var cols, marks, sets strings.Builder
	for _, c := range t.Columns {
		cols.WriteString(", " + quote(c.Name))
		marks.WriteString(", ?")
		sets.WriteString(", " + quote(c.Name) + " = excluded." + quote(c.Name))
	}
	insertSQL := `INSERT INTO ` + q + ` ("id", "__owner", "__version", "__created_version", "__created_device", "__device", "__deleted"` + cols.String() +
		`) VALUES (?, ?, ?, ?, ?, ?, 0` + marks.String() + `) ON CONFLICT ("id") DO UPDATE SET "__owner" = excluded."__owner", "__version" = excluded."__version", "__created_version" = excluded."__created_version", "__created_device" = excluded."__created_device", "__device" = excluded."__device", "__deleted" = 0` + sets.String()
	var nulls strings.Builder
	for _, c := range t.Columns {
		// A tombstone keeps its group and user: pulls tell the members it is gone.
		if c.Name == t.Rule.By || (t.Rule.MembersOf != nil && c.Name == t.Rule.MembersOf.UserCol) {
			continue
		}
		nulls.WriteString(", " + quote(c.Name) + " = NULL")
	}
	deleteSQL := `UPDATE ` + q + ` SET "__deleted" = 1, "__version" = ?, "__device" = ?` + nulls.String() + ` WHERE "id" = ?`
	var refused *server.RefusedError
	for _, op := range ops {
		var err error
		switch op.Kind {
		case server.OpInsert:
			st, e := w.stmt(insertSQL)
			if e != nil {
				return fmt.Errorf("sqlite: insert %s: %w", t.Name, e)
			}
			args := make([]any, 0, 6+len(t.Columns))
			args = append(args, op.ID, op.Owner, v, v, op.Device, op.Device)
			for i := range t.Columns {
				args = append(args, sqlitedb.Bind(op.Values[i]))
			}
			_, err = st.ExecContext(w.ctx, args...)
		case server.OpUpdate:
			var b strings.Builder
			b.WriteString(`UPDATE ` + q + ` SET "__version" = ?, "__device" = ?`)
			args := []any{v, op.Device}
			for i, c := range t.Columns {
				if op.Set[i] {
					b.WriteString(", " + quote(c.Name) + " = ?")
					args = append(args, sqlitedb.Bind(op.Values[i]))
				}
			}
			b.WriteString(` WHERE "id" = ?`)
			args = append(args, op.ID)
			st, e := w.stmt(b.String())
			if e != nil {
				return fmt.Errorf("sqlite: update %s: %w", t.Name, e)
			}
			if _, err = st.ExecContext(w.ctx, args...); err == nil {
				err = w.move(t, v, op)
			}
		case server.OpDelete:
			st, e := w.stmt(deleteSQL)
			if e != nil {
				return fmt.Errorf("sqlite: delete %s: %w", t.Name, e)
			}
			_, err = st.ExecContext(w.ctx, v, op.Device, op.ID)
		}
		if err != nil && isRefusal(err) {
			// SQLite undid this statement only: go on, and report every refused record.
			if refused == nil {
				refused = &server.RefusedError{Table: t.Name, Reasons: map[string]string{}}
			}
			refused.Reasons[op.ID] = refusalReason(err)
			continue
		}
		if err != nil {
			return fmt.Errorf("sqlite: apply %s: %w", t.Name, err)
		}
	}
	if refused != nil {
		return refused
	}
	return nil
}

// move records a change of a row's group or membership user.
func (w *writeTx) move(t *schema.Table, v int64, op server.Op) error {
	if t.Rule.Kind != schema.GroupRule || (op.OldGroup == op.Group && op.OldUser == op.User) {
		return nil
	}
	st, err := w.stmt(`INSERT INTO "__melon_moves" ("tbl", "id", "version", "from_grp", "to_grp", "from_usr", "to_usr") VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT ("tbl", "id", "version") DO UPDATE SET "to_grp" = excluded."to_grp", "to_usr" = excluded."to_usr"`)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(w.ctx, t.Name, op.ID, v, op.OldGroup, op.Group, op.OldUser, op.User)
	return err
}

// Memberships returns the groups of kind g that user is a member of. (The writer
// connection serializes writes: nothing changes them until the transaction ends.)
func (w *writeTx) Memberships(g *schema.Group, user string) ([]string, error) {
	var out []string
	err := w.Scan(g.Members, nil, server.Filter{User: user}, func(r *server.Row) error {
		if r.Group != "" {
			out = append(out, r.Group)
		}
		return nil
	})
	return out, err
}

// Unclaimed reports whether no live row of any table of kind g belongs to group id.
func (w *writeTx) Unclaimed(g *schema.Group, id string) (bool, error) {
	w.store.mu.RLock()
	sch := w.store.schema
	w.store.mu.RUnlock()
	tables := []*schema.Table{g.Members} // never fewer: a group with members is claimed
	if sch != nil {
		for _, t := range sch.Tables {
			if t.Rule.Group != nil && t.Rule.Group.Name == g.Name && t.Name != g.Members.Name {
				tables = append(tables, t)
			}
		}
	}
	for _, t := range tables {
		found := false
		err := w.Scan(t, nil, server.Filter{Groups: []string{id}}, func(*server.Row) error {
			found = true
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			return false, err
		}
		if found {
			return false, nil
		}
	}
	return true, nil
}

var errStop = errors.New("stop")
