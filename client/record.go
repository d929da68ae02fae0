package client

import (
	"crypto/rand"
	"strings"

	"github.com/melonsync/melonsync/internal/sqlitedb"
	"github.com/melonsync/melonsync/schema"
)

// Record is one raw record as WatermelonDB keeps it (its RawRecord): "id" (string), every
// column of the table (string, float64, bool or nil, as the schema says; never another
// type), "_status" ("synced", "created", "updated" or "deleted") and "_changed" (the
// comma-separated names of the columns changed locally since the last sync).
type Record = map[string]any

// Sync statuses of a record (its "_status").
const (
	StatusSynced  = "synced"
	StatusCreated = "created"
	StatusUpdated = "updated"
	StatusDeleted = "deleted"
)

// tableInfo holds one table's schema and the SQL text used on it.
type tableInfo struct {
	t          *schema.Table
	selectCols string // "id", "_status", "_changed", "c1", ...
	selectSQL  string // select <selectCols> from "t"
	insertSQL  string
	updateSQL  string // sets _status, _changed and every column, where "id" is ?
	// slots maps a key of a remote record to its place in a row of the streamed first
	// sync's insert arguments: 0 for "id", 1+i for column i, -1 for "_status" and
	// "_changed" (not allowed: the statement sets them).
	slots map[string]int
	// bulkInsertSQL inserts rowsPerInsert rows (the streamed first sync);
	// syncedInsertSQL one (insertBatch's retry).
	bulkInsertSQL, syncedInsertSQL string
}

func newTableInfo(t *schema.Table) *tableInfo {
	var cols, ph, set strings.Builder
	cols.WriteString(`"id", "_status", "_changed"`)
	ph.WriteString("?, ?, ?")
	set.WriteString(`"_status" = ?, "_changed" = ?`)
	for _, c := range t.Columns {
		cols.WriteString(`, "` + c.Name + `"`)
		ph.WriteString(", ?")
		set.WriteString(`, "` + c.Name + `" = ?`)
	}
	q := `"` + t.Name + `"`
	slots := map[string]int{"id": 0, "_status": -1, "_changed": -1}
	for i, c := range t.Columns {
		slots[c.Name] = 1 + i
	}
	ti := &tableInfo{
		slots:      slots,
		t:          t,
		selectCols: cols.String(),
		selectSQL:  "select " + cols.String() + " from " + q,
		insertSQL:  "insert into " + q + " (" + cols.String() + ") values (" + ph.String() + ")",
		updateSQL:  "update " + q + " set " + set.String() + ` where "id" is ?`,
	}
	ti.bulkInsertSQL = ti.multiInsertSQL(ti.rowsPerInsert())
	ti.syncedInsertSQL = ti.multiInsertSQL(1)
	return ti
}

// scanBuf returns value slots and pointers to them for scanning one row.
func (ti *tableInfo) scanBuf() ([]any, []any) {
	vals := make([]any, len(ti.t.Columns)+3)
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	return vals, ptrs
}

// decode turns a row (id, _status, _changed, columns...) into a sanitized Record, as
// WatermelonDB's sanitizedRaw does when it reads a record from SQLite.
func (ti *tableInfo) decode(vals []any) Record {
	r := make(Record, len(ti.t.Columns)+3)
	r["id"] = sqlitedb.Text(vals[0])
	r["_status"] = decodeStatus(vals[1])
	r["_changed"] = decodeChanged(vals[2])
	for i := range ti.t.Columns {
		c := &ti.t.Columns[i]
		r[c.Name] = decodeValue(c, vals[i+3])
	}
	return r
}

func decodeStatus(v any) string {
	if b, ok := v.([]byte); ok {
		v = string(b)
	}
	if s, ok := v.(string); ok && validStatus(s) {
		return s
	}
	return StatusCreated // as sanitizedRaw: a broken status makes the record new
}

func validStatus(s string) bool {
	return s == StatusSynced || s == StatusCreated || s == StatusUpdated || s == StatusDeleted
}

func decodeChanged(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}

// decodeValue converts what SQLite returns to the column's Go type. Numbers and booleans
// may be stored as REAL (WatermelonDB's Node driver binds JS numbers as doubles) or
// INTEGER (SQL literals of migrations); both read back as float64 or bool.
func decodeValue(c *schema.Column, v any) any {
	switch x := v.(type) {
	case int64:
		v = float64(x)
	case []byte:
		if c.Type == schema.String {
			v = string(x)
		}
	}
	return c.Sanitize(v)
}

// rowArgs returns the insert arguments of a sanitized record (id, _status, _changed,
// columns in order).
func (ti *tableInfo) rowArgs(r Record) []any {
	args := make([]any, 0, len(ti.t.Columns)+3)
	args = append(args, r["id"], r["_status"], r["_changed"])
	for _, c := range ti.t.Columns {
		args = append(args, sqlitedb.Bind(r[c.Name]))
	}
	return args
}

// updateArgs returns the arguments of updateSQL for a sanitized record.
func (ti *tableInfo) updateArgs(r Record) []any {
	args := make([]any, 0, len(ti.t.Columns)+3)
	args = append(args, r["_status"], r["_changed"])
	for _, c := range ti.t.Columns {
		args = append(args, sqlitedb.Bind(r[c.Name]))
	}
	return append(args, r["id"])
}

// sanitizeRaw is WatermelonDB's sanitizedRaw for a record already known to have a string
// id: status and changed default to "created" and "" when invalid, each schema column
// is sanitized (missing → default), and every other key is dropped.
func (ti *tableInfo) sanitizeRaw(dirty map[string]any, id string) Record {
	r := make(Record, len(ti.t.Columns)+3)
	r["id"] = id
	if s, ok := dirty["_status"].(string); ok && validStatus(s) {
		r["_status"] = s
	} else {
		r["_status"] = StatusCreated
	}
	if s, ok := dirty["_changed"].(string); ok {
		r["_changed"] = s
	} else {
		r["_changed"] = ""
	}
	for i := range ti.t.Columns {
		c := &ti.t.Columns[i]
		v, ok := dirty[c.Name]
		if !ok {
			r[c.Name] = c.Default()
			continue
		}
		r[c.Name] = c.Sanitize(v)
	}
	return r
}

// recordsEqual compares two sanitized records of the same table (WatermelonDB's
// areRecordsEqual).
func (ti *tableInfo) recordsEqual(a, b Record) bool {
	if a["id"] != b["id"] || a["_status"] != b["_status"] || a["_changed"] != b["_changed"] {
		return false
	}
	for _, c := range ti.t.Columns {
		if a[c.Name] != b[c.Name] {
			return false
		}
	}
	return true
}

// copyRecord returns a shallow copy of r (values are immutable scalars).
func copyRecord(r Record) Record {
	out := make(Record, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

// addToChanged adds column to a _changed set (WatermelonDB's addToRawSet).
func addToChanged(changed, column string) string {
	var parts []string
	if changed != "" {
		parts = strings.Split(changed, ",")
	}
	out := make([]string, 0, len(parts)+1)
	seen := make(map[string]bool, len(parts)+1)
	for _, p := range append(parts, column) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return strings.Join(out, ",")
}

const idAlphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// NewID returns a new random record id the way WatermelonDB's randomId makes one:
// 16 characters from [0-9a-zA-Z], from a cryptographic random source.
func NewID() string {
	var out [16]byte
	var buf [32]byte
	n := 0
	for n < len(out) {
		if _, err := rand.Read(buf[:]); err != nil {
			panic("client: no random source: " + err.Error())
		}
		for _, b := range buf {
			if v := b >> 2; v < 62 {
				out[n] = idAlphabet[v]
				n++
				if n == len(out) {
					break
				}
			}
		}
	}
	return string(out[:])
}
