package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

type readTx struct {
	ctx   context.Context
	tx    querier
	s     *Store
	clock int64
}

// Clock returns the clock of a read's snapshot; in a write transaction, the highest
// version handed out when it is first called (or this transaction's version).
func (r *readTx) Clock() (int64, error) {
	if r.clock != 0 {
		return r.clock, nil
	}
	if err := r.tx.QueryRow(r.ctx, clockSQL).Scan(&r.clock); err != nil {
		return 0, wrap("clock", err)
	}
	return r.clock, nil
}

func (r *readTx) PurgedThrough() (int64, error) {
	var v int64
	if err := r.tx.QueryRow(r.ctx, `SELECT value::bigint FROM __melon_meta WHERE key = 'purged_through'`).Scan(&v); err != nil {
		return 0, wrap("purged_through", err)
	}
	return v, nil
}

// nonDefault returns a condition true when column c holds something other than its
// default value.
func nonDefault(c schema.Column) string {
	q := quoteIdent(c.Name)
	if c.IsOptional {
		return q + ` IS NOT NULL`
	}
	switch c.Type {
	case schema.String:
		return `(` + q + ` IS NOT NULL AND ` + q + ` <> '')`
	case schema.Number:
		return `(` + q + ` IS NOT NULL AND ` + q + ` <> 0)`
	default:
		return `coalesce(` + q + `, false)`
	}
}

// sqlType is the column type of a schema type.
func sqlType(t schema.Type) string {
	switch t {
	case schema.String:
		return "text"
	case schema.Number:
		return "double precision"
	default:
		return "boolean"
	}
}

// groupExpr is the SQL of a group table's group value (” when t has none).
func groupExpr(t *schema.Table) string {
	switch {
	case t.Rule.Kind != schema.GroupRule:
		return `''`
	case t.Rule.By == "id":
		return `id`
	}
	return `coalesce(` + quoteIdent(t.Rule.By) + `, '')`
}

// userExpr is the SQL of the user a membership row names (” outside members tables).
func userExpr(t *schema.Table) string {
	if g := t.Rule.MembersOf; g != nil {
		return `coalesce(` + quoteIdent(g.UserCol) + `, '')`
	}
	return `''`
}

// scope returns the scope condition of f on live rows of t (tomb: on tombstones).
func scope(t *schema.Table, f server.Filter, tomb bool, arg func(any) string) string {
	switch {
	case f.Any:
		return `true`
	case f.User != "" && t.Rule.MembersOf != nil:
		if tomb {
			return `usr = ` + arg(f.User)
		}
		return quoteIdent(t.Rule.MembersOf.UserCol) + ` = ` + arg(f.User)
	case f.Groups != nil && t.Rule.Kind == schema.GroupRule:
		col := `id`
		switch {
		case tomb:
			col = `grp`
		case t.Rule.By != "id":
			col = quoteIdent(t.Rule.By)
		}
		return col + ` = ANY(` + arg(f.Groups) + `::text[])`
	}
	if tomb {
		return `owner = ` + arg(f.Owner)
	}
	return `__owner = ` + arg(f.Owner)
}

func (r *readTx) Scan(t *schema.Table, cols []schema.Column, f server.Filter, fn func(*server.Row) error) error {
	if (f.Groups != nil && len(f.Groups) == 0 && !f.Any && f.User == "") || (f.IDs != nil && len(f.IDs) == 0) {
		return nil
	}
	var b strings.Builder
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Deleted {
		b.WriteString(`SELECT id, version, created_version, created_device, owner, grp, usr FROM __melon_tombstones WHERE tbl = ` + arg(t.Name) + ` AND ` + scope(t, f, true, arg))
		if f.IDs != nil {
			b.WriteString(` AND id = ANY(` + arg(f.IDs) + `::text[])`)
		}
		versionConds(&b, f, "version", "created_version", arg)
	} else {
		b.WriteString(`SELECT id, __version, __created_version, __created_device, __owner, ` + groupExpr(t) + `, ` + userExpr(t))
		for _, c := range cols {
			// The casts are no-ops on the columns melonsync creates; they keep the
			// answer's types right if someone changed a column's type.
			b.WriteString(`, ` + quoteIdent(c.Name) + `::` + sqlType(c.Type))
		}
		b.WriteString(` FROM ` + quoteIdent(t.Name) + ` WHERE ` + scope(t, f, false, arg))
		if f.IDs != nil {
			b.WriteString(` AND id = ANY(` + arg(f.IDs) + `::text[])`)
		}
		versionConds(&b, f, "__version", "__created_version", arg)
		if len(f.NonDefault) > 0 {
			conds := make([]string, len(f.NonDefault))
			for i, c := range f.NonDefault {
				conds[i] = nonDefault(c)
			}
			b.WriteString(` AND (` + strings.Join(conds, ` OR `) + `)`)
		}
		if f.ByCreated {
			b.WriteString(` ORDER BY __created_version, id`)
			if f.Limit > 0 {
				b.WriteString(` LIMIT ` + arg(f.Limit))
			}
		}
	}
	rows, err := r.tx.Query(r.ctx, b.String(), args...)
	if err != nil {
		return wrap("scan "+t.Name, err)
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	row := &server.Row{Values: make([]any, len(cols))}
	if f.Deleted {
		row.Values = row.Values[:0]
	}
	for rows.Next() {
		raw := rows.RawValues()
		row.ID = string(raw[0])
		if row.Version, err = decodeInt(fds[1].Format, raw[1]); err != nil {
			return fmt.Errorf("postgres: scan %s: %w", t.Name, err)
		}
		if row.CreatedVersion, err = decodeInt(fds[2].Format, raw[2]); err != nil {
			return fmt.Errorf("postgres: scan %s: %w", t.Name, err)
		}
		row.CreatedDevice = string(raw[3])
		row.Owner = string(raw[4])
		row.Group = string(raw[5])
		row.User = string(raw[6])
		if !f.Deleted {
			for i, c := range cols {
				if row.Values[i], err = decodeValue(c.Type, fds[7+i].Format, raw[7+i]); err != nil {
					return fmt.Errorf("postgres: scan %s.%s: %w", t.Name, c.Name, err)
				}
			}
		}
		if err := fn(row); err != nil {
			rows.Close()
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return wrap("scan "+t.Name, err)
	}
	return nil
}

// versionConds appends f's version bounds on the columns named version and created.
func versionConds(b *strings.Builder, f server.Filter, version, created string, arg func(any) string) {
	bound := func(col, op string, v int64) {
		if v > 0 {
			b.WriteString(` AND ` + col + ` ` + op + ` ` + arg(v))
		}
	}
	bound(version, ">", f.After)
	bound(version, "<=", f.Through)
	bound(created, ">", f.CreatedAfter)
	bound(created, "<=", f.CreatedThrough)
}

// Count returns how many rows of t match f.
func (r *readTx) Count(t *schema.Table, f server.Filter) (int64, error) {
	if (f.Groups != nil && len(f.Groups) == 0 && !f.Any && f.User == "") || (f.IDs != nil && len(f.IDs) == 0) {
		return 0, nil
	}
	var b strings.Builder
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Deleted {
		b.WriteString(`SELECT count(*) FROM __melon_tombstones WHERE tbl = ` + arg(t.Name) + ` AND ` + scope(t, f, true, arg))
		versionConds(&b, f, "version", "created_version", arg)
	} else {
		b.WriteString(`SELECT count(*) FROM ` + quoteIdent(t.Name) + ` WHERE ` + scope(t, f, false, arg))
		versionConds(&b, f, "__version", "__created_version", arg)
	}
	if f.IDs != nil {
		b.WriteString(` AND id = ANY(` + arg(f.IDs) + `::text[])`)
	}
	var n int64
	if err := r.tx.QueryRow(r.ctx, b.String(), args...).Scan(&n); err != nil {
		return 0, wrap("count "+t.Name, err)
	}
	return n, nil
}

// decodeInt decodes a bigint in the text or binary format.
func decodeInt(format int16, raw []byte) (int64, error) {
	if raw == nil {
		return 0, nil
	}
	if format == pgx.BinaryFormatCode {
		if len(raw) != 8 {
			return 0, fmt.Errorf("bigint of %d bytes", len(raw))
		}
		return int64(binary.BigEndian.Uint64(raw)), nil
	}
	return strconv.ParseInt(string(raw), 10, 64)
}

// decodeValue decodes a text, double precision or boolean value (the column cast to
// its schema type) as string, float64 or bool; NULL is nil.
func decodeValue(t schema.Type, format int16, raw []byte) (any, error) {
	if raw == nil {
		return nil, nil
	}
	switch t {
	case schema.String:
		return string(raw), nil
	case schema.Number:
		if format == pgx.BinaryFormatCode {
			if len(raw) != 8 {
				return nil, fmt.Errorf("float8 of %d bytes", len(raw))
			}
			return math.Float64frombits(binary.BigEndian.Uint64(raw)), nil
		}
		return strconv.ParseFloat(string(raw), 64)
	default:
		if format == pgx.BinaryFormatCode {
			if len(raw) != 1 {
				return nil, fmt.Errorf("bool of %d bytes", len(raw))
			}
			return raw[0] != 0, nil
		}
		return string(raw) == "t", nil
	}
}

type writeTx struct {
	readTx
	lazy    *lazyTx
	version int64
	vQueued bool // a statement queued in the batch being built takes the version
	// looked keeps what Lookup found, by table and id, to check at Apply that
	// nothing appeared in between (rows absent at Lookup cannot be locked).
	looked map[string]map[string]server.Meta
	// owners whose data this transaction changed, and the device that changed it,
	// for NOTIFY.
	owners map[string]bool
	device string
	// tables changed ("table group") and users named by membership rows, for NOTIFY.
	tables map[string]bool
	// locate: constraints are checked at once and refused records are found one by
	// one (refused.go).
	locate bool
	// noNotes: the ops are not noted (a group's transaction: each member's notes
	// are made for it, with its own device).
	noNotes bool
}

// Lookup returns the metadata of the live rows and tombstones with these ids, locking
// them (FOR UPDATE, in id order: live rows, then tombstones) until the transaction
// ends, so that nothing changes them between the push's checks and its writes.
func (w *writeTx) Lookup(t *schema.Table, ids []string) (map[string]server.Meta, error) {
	return lookupOne(w, t, ids)
}

// lookupOne is Lookup through LookupTables.
func lookupOne(tx server.TablesWriteTx, t *schema.Table, ids []string) (map[string]server.Meta, error) {
	out, err := tx.LookupTables([]*schema.Table{t}, [][]string{ids})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// LookupTables is Lookup for several tables, in one round trip: the statements run
// in order, so the locks are taken in the same order as by one Lookup per table.
// When it is the transaction's first statement (a push's is), the BEGIN and the clock
// go with it.
func (w *writeTx) LookupTables(tables []*schema.Table, ids [][]string) ([]map[string]server.Meta, error) {
	outs := make([]map[string]server.Meta, len(tables))
	err := w.lazy.sendFirst(w.ctx, func(b *pgx.Batch) {
		if !w.lazy.begun && w.clock == 0 {
			b.Queue(clockSQL).QueryRow(func(row pgx.Row) error { return row.Scan(&w.clock) })
		}
		for i, t := range tables {
			outs[i] = make(map[string]server.Meta, len(ids[i]))
			if len(ids[i]) > 0 {
				w.queueLookup(b, t, ids[i], outs[i])
			}
		}
	})
	if err != nil {
		return nil, wrap("lookup", err)
	}
	for i, t := range tables {
		looked := w.looked[t.Name]
		if looked == nil {
			looked = map[string]server.Meta{}
			w.looked[t.Name] = looked
		}
		for _, id := range ids[i] {
			if m, ok := outs[i][id]; ok {
				looked[id] = m
			} else {
				delete(looked, id)
			}
		}
	}
	return outs, nil
}

// queueLookup queues the statements that read (and lock) the rows of t with these
// ids into out: the live rows, then the tombstones, each locked in id order. They
// are two statements, not one: in READ COMMITTED each statement has its snapshot, and
// the tombstones' must be taken after the live rows' locks were waited for — a push
// that deleted a row meanwhile wrote its tombstone, which a snapshot taken before
// that wait would not show (the id would look as if it never existed).
func (w *writeTx) queueLookup(b *pgx.Batch, t *schema.Table, ids []string, out map[string]server.Meta) {
	sorted := append([]string(nil), ids...)
	sort.Strings(sorted)
	read := func(deleted bool) func(pgx.Rows) error {
		return func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var m server.Meta
				if err := rows.Scan(&id, &m.Owner, &m.Version, &m.Device, &m.Group, &m.User); err != nil {
					return err
				}
				m.Deleted = deleted
				if prev, seen := out[id]; seen && !prev.Deleted {
					continue // a live row wins over a stray tombstone
				}
				out[id] = m
			}
			return rows.Err()
		}
	}
	b.Queue(`SELECT id, __owner, __version, __device, `+groupExpr(t)+`, `+userExpr(t)+` FROM `+quoteIdent(t.Name)+
		` WHERE id = ANY($1) ORDER BY id FOR UPDATE`, sorted).Query(read(false))
	b.Queue(`SELECT id, owner, version, device, grp, usr FROM __melon_tombstones WHERE tbl = $1 AND id = ANY($2) ORDER BY id FOR UPDATE`,
		t.Name, sorted).Query(read(true))
}

// Clock returns the highest version handed out when it is first called; when it is
// the transaction's first statement (a push's is), it goes with the BEGIN.
func (w *writeTx) Clock() (int64, error) {
	if w.clock != 0 || w.lazy.begun {
		return w.readTx.Clock()
	}
	c, err := w.lazy.beginWithClock(w.ctx)
	if err != nil {
		return 0, err
	}
	w.clock = c
	return c, nil
}

// Version takes the gate and this transaction's version (see DESIGN.md).
func (w *writeTx) Version() (int64, error) {
	if w.version != 0 {
		return w.version, nil
	}
	var v int64
	if err := w.tx.QueryRow(w.ctx, `SELECT __melon_version($1, $2)`, w.s.instance, w.s.schema).Scan(&v); err != nil {
		return 0, wrap("version", err)
	}
	w.version = v
	w.clock = v
	return v, nil
}

// noteOp notes, for NOTIFY, whose data op on t changes (the row's owner, and the
// groups and users it concerns).
func (w *writeTx) noteOp(t *schema.Table, op server.Op) {
	if op.Kind == server.OpInsert {
		w.owner(op.Owner)
	} else if m, ok := w.looked[t.Name][op.ID]; ok {
		w.owner(m.Owner)
	}
	w.touched(t, op)
}

func (w *writeTx) owner(o string) {
	if w.owners == nil {
		w.owners = map[string]bool{}
	}
	w.owners[o] = true
}

// touched notes, for NOTIFY, the groups and users an op on t concerns.
func (w *writeTx) touched(t *schema.Table, op server.Op) {
	if t.Rule.Kind == schema.Owner {
		return
	}
	if w.tables == nil {
		w.tables = map[string]bool{}
	}
	for _, g := range []string{op.OldGroup, op.Group} {
		if g != "" || t.Rule.Kind == schema.Public {
			w.tables[t.Name+" "+g] = true
		}
	}
	for _, u := range []string{op.OldUser, op.User} {
		if u != "" {
			w.owner(u)
		}
	}
}

// notes returns one notification per owner whose data changed and per group or
// public table changed, sent after the commit (notify.go). A payload starts with
// "VERSION", or "VERSION:DEVICE" when the pushing device is known (device ids hold
// neither ':' nor ' '), so that listeners on other processes can skip the pushing
// device's own streams.
func (w *writeTx) notes() []note {
	if w.version == 0 || len(w.owners)+len(w.tables) == 0 {
		return nil
	}
	out := make([]note, 0, len(w.owners)+len(w.tables))
	v := strconv.FormatInt(w.version, 10)
	if w.device != "" && melonsync.ValidID(w.device) {
		v += ":" + w.device
	}
	for o := range w.owners {
		out = append(out, note{w.s.channel(), v + " " + o})
	}
	for tg := range w.tables {
		out = append(out, note{w.s.tableChannel(), v + " " + tg})
	}
	return out
}

// Apply performs ops with set-based statements: consecutive ops of one kind (and, for
// updates, the same columns and no repeated id) go in one statement.
//
// When the database refuses a write for its data (refused.go), the attempt ends with
// errLocate and Write runs it again in locate mode, which finds the refused records.
func (w *writeTx) Apply(t *schema.Table, ops []server.Op) error {
	return w.ApplyTables([]*schema.Table{t}, [][]server.Op{ops})
}

// ApplyTables is Apply for several tables, in one round trip (in locate mode, table by
// table).
func (w *writeTx) ApplyTables(tables []*schema.Table, ops [][]server.Op) error {
	return w.applyTablesMaybeCommit(tables, ops, false)
}

// ApplyTablesAndCommit is ApplyTables followed by the commit, in the same round trip
// (in locate mode the commit is left to Write).
func (w *writeTx) ApplyTablesAndCommit(tables []*schema.Table, ops [][]server.Op) error {
	return w.applyTablesMaybeCommit(tables, ops, true)
}

func (w *writeTx) applyTablesMaybeCommit(tables []*schema.Table, ops [][]server.Op, commit bool) error {
	for _, o := range ops {
		if len(o) > 0 && o[0].Device != "" {
			w.device = o[0].Device
		}
	}
	if w.locate {
		for i, t := range tables {
			if err := w.applyLocating(t, ops[i]); err != nil {
				return err
			}
		}
		return nil
	}
	err := w.applyTables(tables, ops, commit)
	if isRefusal(err) {
		return errLocate
	}
	return err
}

// apply is Apply without the handling of refusals.
func (w *writeTx) apply(t *schema.Table, ops []server.Op) error {
	return w.applyTables([]*schema.Table{t}, [][]server.Op{ops}, false)
}

// applyTables performs the ops of several tables in one round trip, and commits in
// it too when commit is set: every statement goes in one batch (they run in order,
// each seeing the ones before; after a failure PostgreSQL skips the rest, the
// COMMIT included).
func (w *writeTx) applyTables(tables []*schema.Table, ops [][]server.Op, commit bool) error {
	b := &pgx.Batch{}
	for i, t := range tables {
		if !w.noNotes {
			for _, op := range ops[i] {
				w.noteOp(t, op)
			}
		}
		for start := 0; start < len(ops[i]); {
			end := start + 1
			seen := map[string]bool{ops[i][start].ID: true}
			for end < len(ops[i]) && sameBatch(ops[i][start], ops[i][end]) && !seen[ops[i][end].ID] {
				seen[ops[i][end].ID] = true
				end++
			}
			batch := ops[i][start:end]
			switch batch[0].Kind {
			case server.OpInsert:
				w.insert(b, t, batch)
			case server.OpUpdate:
				w.update(b, t, batch)
			case server.OpDelete:
				w.delete(b, t, batch)
			default:
				return fmt.Errorf("postgres: unknown op kind %d", batch[0].Kind)
			}
			start = end
		}
	}
	if commit {
		// The push's timestamp is its version, wanted after the commit.
		w.versionSQL(b, false)
		b.Queue(`COMMIT`).Exec(func(tag pgconn.CommandTag) error {
			w.lazy.begun = false
			if tag.String() == "ROLLBACK" {
				return pgx.ErrTxCommitRollback
			}
			return nil
		})
	}
	if b.Len() == 0 {
		return nil
	}
	err := w.tx.SendBatch(w.ctx, b).Close()
	w.vQueued = false
	if err != nil {
		if r := racedError(err); r != nil {
			return r
		}
		return wrap("apply", err)
	}
	return nil
}

func sameBatch(a, b server.Op) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case server.OpUpdate:
		if len(a.Set) != len(b.Set) {
			return false
		}
		for i := range a.Set {
			if a.Set[i] != b.Set[i] {
				return false
			}
		}
	case server.OpDelete:
		return a.Device == b.Device
	}
	return true
}

// versionSQL returns the SQL of this transaction's version for the next statement
// queued on b. The first write takes the version, with its first statement: an
// insert selects it (inline, so reportV), other statements get a statement of their
// own queued before them. Later statements read it from the transaction's setting.
func (w *writeTx) versionSQL(b *pgx.Batch, inline bool) (sql string, reportV bool) {
	setting := `current_setting(` + quoteLiteral(w.s.versionSetting()) + `)::bigint`
	if w.version != 0 || w.vQueued {
		return setting, false
	}
	w.vQueued = true
	if inline {
		return `__melon_version(` + quoteLiteral(w.s.instance) + `, ` + quoteLiteral(w.s.schema) + `)`, true
	}
	b.Queue(`SELECT __melon_version($1, $2)`, w.s.instance, w.s.schema).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&w.version); err != nil {
			return err
		}
		w.clock = w.version
		return nil
	})
	return setting, false
}

// insert writes whole rows, in one statement. A tombstone with the same id is
// removed; a live row with the same id is replaced only if Lookup saw (and locked)
// it. Rows that appeared after Lookup (a tombstone it did not see: a concurrent
// delete; a live row it did not see: a concurrent create) make the statement raise
// MS409 (__melon_raced), which aborts the transaction: the push is a conflict.
func (w *writeTx) insert(b *pgx.Batch, t *schema.Table, ops []server.Op) {
	looked := w.looked[t.Name]
	ids := make([]string, len(ops))
	owners := make([]string, len(ops))
	devices := make([]string, len(ops))
	live, dead := []string{}, []string{} // empty arrays, not NULL: NOT x = ANY(NULL) is NULL
	for i, op := range ops {
		ids[i], owners[i], devices[i] = op.ID, op.Owner, op.Device
		if m, ok := looked[op.ID]; ok {
			if m.Deleted {
				dead = append(dead, op.ID)
			} else {
				live = append(live, op.ID)
			}
		}
	}
	v, _ := w.versionSQL(b, true)
	q := quoteIdent(t.Name)
	var cols, sel, types, alias, sets strings.Builder
	args := []any{t.Name, ids, owners, devices}
	for i, c := range t.Columns {
		qc := quoteIdent(c.Name)
		cols.WriteString(", " + qc)
		sel.WriteString(", u." + qc)
		types.WriteString(", $" + strconv.Itoa(len(args)+1) + "::" + sqlType(c.Type) + "[]")
		alias.WriteString(", " + qc)
		sets.WriteString(", " + qc + " = excluded." + qc)
		args = append(args, columnArray(c, ops, i))
	}
	args = append(args, live, dead)
	liveArg, deadArg := "$"+strconv.Itoa(len(args)-1), "$"+strconv.Itoa(len(args))
	sql := `WITH __v AS (SELECT ` + v + ` AS v),
		__gone AS (DELETE FROM __melon_tombstones WHERE tbl = $1 AND id = ANY($2) RETURNING id),
		__ins AS (INSERT INTO ` + q + ` AS __t (id, __owner, __version, __created_version, __created_device, __device` + cols.String() + `)
			SELECT u.id, u.__o, __v.v, __v.v, u.__d, u.__d` + sel.String() + `
			FROM unnest($2::text[], $3::text[], $4::text[]` + types.String() + `) AS u(id, __o, __d` + alias.String() + `), __v
			ON CONFLICT (id) DO UPDATE SET __owner = excluded.__owner, __version = excluded.__version,
				__created_version = excluded.__created_version, __created_device = excluded.__created_device,
				__device = excluded.__device` + sets.String() + `
			WHERE __t.id = ANY(` + liveArg + `::text[])
			RETURNING __t.id)
		SELECT __melon_raced($1,
			ARRAY(SELECT id FROM __gone WHERE NOT id = ANY(` + deadArg + `::text[])) ||
			ARRAY(SELECT k FROM unnest($2::text[]) AS k WHERE k NOT IN (SELECT id FROM __ins)),
			(SELECT v FROM __v))`
	b.Queue(sql, args...).QueryRow(func(row pgx.Row) error {
		var n int64
		if err := row.Scan(&n); err != nil {
			return err
		}
		w.version, w.clock = n, n
		return nil
	})
}

// racedErr is the conflict of a write that found rows appeared after its Lookup;
// Write runs the transaction again before answering it (isRetryableAbort).
type racedErr struct{ conflict error }

func (e *racedErr) Error() string { return e.conflict.Error() }
func (e *racedErr) Unwrap() error { return e.conflict }

// racedError turns the MS409 error of __melon_raced into the push's conflict.
func racedError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "MS409" {
		return nil
	}
	table, ids, _ := strings.Cut(pgErr.Detail, "\t")
	return &racedErr{melonsync.ConflictError(map[string][]string{table: strings.Split(ids, ",")})}
}

// update sets the columns marked in Set (the same for every op of the batch).
func (w *writeTx) update(b *pgx.Batch, t *schema.Table, ops []server.Op) {
	ids := make([]string, len(ops))
	devices := make([]string, len(ops))
	for i, op := range ops {
		ids[i], devices[i] = op.ID, op.Device
	}
	v, _ := w.versionSQL(b, false)
	var sets, types, alias strings.Builder
	args := []any{ids, devices}
	for i, c := range t.Columns {
		if i >= len(ops[0].Set) || !ops[0].Set[i] {
			continue
		}
		qc := quoteIdent(c.Name)
		sets.WriteString(", " + qc + " = u." + qc)
		types.WriteString(", $" + strconv.Itoa(len(args)+1) + "::" + sqlType(c.Type) + "[]")
		alias.WriteString(", " + qc)
		args = append(args, columnArray(c, ops, i))
	}
	b.Queue(`UPDATE `+quoteIdent(t.Name)+` AS __t SET __version = (SELECT `+v+`), __device = u.__d`+sets.String()+`
		FROM unnest($1::text[], $2::text[]`+types.String()+`) AS u(id, __d`+alias.String()+`)
		WHERE __t.id = u.id`, args...)
}

// delete removes live rows; the table's delete trigger turns them into tombstones with
// this transaction's version and the device in melonsync.device.
func (w *writeTx) delete(b *pgx.Batch, t *schema.Table, ops []server.Op) {
	ids := make([]string, len(ops))
	for i, op := range ops {
		ids[i] = op.ID
	}
	w.versionSQL(b, false)
	b.Queue(`SELECT set_config('melonsync.device', $1, true)`, ops[0].Device)
	b.Queue(`DELETE FROM `+quoteIdent(t.Name)+` WHERE id = ANY($1)`, ids)
}

// columnArray returns the values of column i of ops as an array parameter of the
// column's type (values of another type are stored as NULL).
func columnArray(c schema.Column, ops []server.Op, i int) any {
	value := func(op server.Op) any {
		if i < len(op.Values) {
			return op.Values[i]
		}
		return nil
	}
	switch c.Type {
	case schema.String:
		a := make(pgtype.FlatArray[pgtype.Text], len(ops))
		for k, op := range ops {
			if s, ok := value(op).(string); ok {
				a[k] = pgtype.Text{String: s, Valid: true}
			}
		}
		return a
	case schema.Number:
		a := make(pgtype.FlatArray[pgtype.Float8], len(ops))
		for k, op := range ops {
			switch x := value(op).(type) {
			case float64:
				a[k] = pgtype.Float8{Float64: x, Valid: true}
			case int64:
				a[k] = pgtype.Float8{Float64: float64(x), Valid: true}
			case int:
				a[k] = pgtype.Float8{Float64: float64(x), Valid: true}
			}
		}
		return a
	default:
		a := make(pgtype.FlatArray[pgtype.Bool], len(ops))
		for k, op := range ops {
			if b, ok := value(op).(bool); ok {
				a[k] = pgtype.Bool{Bool: b, Valid: true}
			}
		}
		return a
	}
}

func (r *readTx) Moves(t *schema.Table, f server.MoveFilter, fn func(server.Move) error) error {
	q := `SELECT id, version, from_grp, to_grp, from_usr, to_usr FROM __melon_moves WHERE tbl = $1 AND version > $2`
	args := []any{t.Name, f.After}
	switch {
	case f.IDs != nil:
		q += ` AND id = ANY($3::text[])`
		args = append(args, f.IDs)
	case f.FromGroups != nil:
		q += ` AND from_grp = ANY($3::text[])`
		args = append(args, f.FromGroups)
	case f.User != "":
		q = q + ` AND from_usr = $3 UNION ` + q + ` AND to_usr = $3`
		args = append(args, f.User)
	default:
		return fmt.Errorf("postgres: moves: no filter")
	}
	rows, err := r.tx.Query(r.ctx, `SELECT * FROM (`+q+`) m ORDER BY id, version`, args...)
	if err != nil {
		return wrap("moves "+t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var m server.Move
		if err := rows.Scan(&m.ID, &m.Version, &m.FromGroup, &m.ToGroup, &m.FromUser, &m.ToUser); err != nil {
			return wrap("moves "+t.Name, err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return wrap("moves "+t.Name, rows.Err())
}

// Memberships returns the groups of kind g user is a member of, locking those
// membership rows (FOR SHARE) so that a concurrent removal waits for this push.
func (w *writeTx) Memberships(g *schema.Group, user string) ([]string, error) {
	var groups []string
	b := &pgx.Batch{}
	queueMemberships(b, g, user, &groups)
	if err := w.tx.SendBatch(w.ctx, b).Close(); err != nil {
		return nil, wrap("memberships", err)
	}
	return groups, nil
}

// queueMemberships queues Memberships' statement, its answer into groups.
func queueMemberships(b *pgx.Batch, g *schema.Group, user string, groups *[]string) {
	b.Queue(`SELECT coalesce(`+quoteIdent(g.GroupCol)+`, '') FROM `+quoteIdent(g.Members.Name)+
		` WHERE `+quoteIdent(g.UserCol)+` = $1 ORDER BY id FOR SHARE`, user).Query(func(rows pgx.Rows) error {
		var err error
		*groups, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
}

// Unclaimed takes a transaction-scoped advisory lock on founding (g, id), then checks
// that no table of kind g has a live row of the group. Under the lock, READ
// COMMITTED statements see a concurrent founder's rows once it committed.
func (w *writeTx) Unclaimed(g *schema.Group, id string) (bool, error) {
	var taken bool
	b := &pgx.Batch{}
	w.s.queueUnclaimed(b, g, id, &taken)
	if err := w.tx.SendBatch(w.ctx, b).Close(); err != nil {
		return false, wrap("found", err)
	}
	return !taken, nil
}

// queueUnclaimed queues Unclaimed's statements: the lock, then one look per table of
// kind g (each statement's snapshot is taken after the lock was granted); taken says
// whether any found a row.
func (s *Store) queueUnclaimed(b *pgx.Batch, g *schema.Group, id string, taken *bool) {
	*taken = false
	b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "melonsync:found:"+s.instance+":"+g.Name+":"+id)
	for _, t := range s.tablesOf(g) {
		col := "id"
		if t.Rule.By != "id" {
			col = quoteIdent(t.Rule.By)
		}
		b.Queue(`SELECT EXISTS (SELECT 1 FROM `+quoteIdent(t.Name)+` WHERE `+col+` = $1)`, id).QueryRow(func(row pgx.Row) error {
			var found bool
			err := row.Scan(&found)
			*taken = *taken || found
			return err
		})
	}
}
