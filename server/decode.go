package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

func invalid(format string, args ...any) *melonsync.Error {
	return melonsync.Errorf(melonsync.EInvalid, format, args...)
}

// forbiddenKey reports keys that must never be used as names: they would poison
// JavaScript objects on the way back to clients.
func forbiddenKey(k string) bool {
	return k == "__proto__" || k == "constructor" || k == "prototype" || strings.HasPrefix(k, "__")
}

// PushParams is a validated push: records sanitized per the schema.
type PushParams struct {
	LastPulledAt int64
	Tables       []TablePush
}

// TablePush holds the pushed changes of one table.
type TablePush struct {
	Table   *schema.Table
	Created []PushedRecord
	Updated []PushedRecord
	Deleted []string
}

// PushedRecord is one pushed record: a value for every column of the table and which
// columns the record carried (a missing column keeps the server's value).
type PushedRecord struct {
	ID     string
	Values []any
	Set    []bool
	// Changed marks the columns named in the record's "_changed" list (WatermelonDB's
	// columns changed since the last sync); nil when the record has no "_changed".
	// Only conflict policies read it (client-wins); it never limits what is written
	// when there is no conflict.
	Changed []bool
}

// DecodePush validates and decodes a push body {"changes": …, "lastPulledAt": n}.
// It fails with invalid_request, naming the problem, for a broken shape; it never
// fails for sloppy values, which are sanitized as WatermelonDB's sanitizedRaw does.
func DecodePush(s *schema.Schema, body []byte) (*PushParams, error) {
	return DecodePushFrom(s, bytes.NewReader(body), func() ([]byte, error) { return body, nil })
}

// DecodePushFrom is DecodePush reading the body from r, in one pass (stream.go). When
// that pass does not decode the body (a refused body, or one too unusual for it),
// whole is called for the whole body, which the checked decoder then decodes or
// names the problem of; the outcome is always DecodePush's. An error from r is
// returned as it is.
func DecodePushFrom(s *schema.Schema, r io.Reader, whole func() ([]byte, error)) (*PushParams, error) {
	return decodeFrom(s, r, whole, true)
}

// decodePushChecked is DecodePush by way of the checked decoder, which names what is
// wrong with a body.
func decodePushChecked(s *schema.Schema, body []byte) (*PushParams, error) {
	var top map[string]json.RawMessage
	if err := unmarshalObject(body, &top); err != nil {
		return nil, invalid("body: %v", err)
	}
	raw, ok := top["lastPulledAt"]
	if !ok {
		return nil, invalid("lastPulledAt is required")
	}
	lpa, isNull, err := DecodeTimestamp(raw)
	if err != nil || isNull {
		return nil, invalid("lastPulledAt must be a non-negative integer")
	}
	changes, ok := top["changes"]
	if !ok {
		return nil, invalid("changes is required")
	}
	p, err := decodeChangesChecked(s, changes)
	if err != nil {
		return nil, err
	}
	p.LastPulledAt = lpa
	return p, nil
}

// DecodeTimestamp decodes a JSON lastPulledAt: null, or an integer 0 ≤ n < 2^53.
func DecodeTimestamp(raw json.RawMessage) (n int64, isNull bool, err error) {
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		return 0, true, nil
	}
	var f float64
	if len(raw) == 0 || raw[0] == '"' || json.Unmarshal(raw, &f) != nil {
		return 0, false, fmt.Errorf("not a number")
	}
	if f < 0 || f != math.Trunc(f) || f >= 1<<53 {
		return 0, false, fmt.Errorf("not a non-negative integer")
	}
	return int64(f), false, nil
}

// ParseTimestamp parses a lastPulledAt from a URL query: "", "null" and "undefined"
// mean null.
func ParseTimestamp(s string) (n int64, isNull bool, err error) {
	switch s {
	case "", "null", "undefined":
		return 0, true, nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false, fmt.Errorf("not a non-negative integer")
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v >= 1<<53 {
		return 0, false, fmt.Errorf("not a non-negative integer")
	}
	return v, false, nil
}

// DecodeChanges validates and decodes a Changes object.
func DecodeChanges(s *schema.Schema, raw json.RawMessage) (*PushParams, error) {
	return DecodeChangesFrom(s, bytes.NewReader(raw), func() ([]byte, error) { return raw, nil })
}

// DecodeChangesFrom is DecodeChanges reading the object from r, as DecodePushFrom.
func DecodeChangesFrom(s *schema.Schema, r io.Reader, whole func() ([]byte, error)) (*PushParams, error) {
	return decodeFrom(s, r, whole, false)
}

// decodeChangesChecked decodes changes one part at a time, naming the first thing
// wrong. It is the decoder of record: the one-pass decoder only ever agrees with it.
func decodeChangesChecked(s *schema.Schema, raw json.RawMessage) (*PushParams, error) {
	var tables map[string]json.RawMessage
	if err := unmarshalObject(raw, &tables); err != nil {
		return nil, invalid("changes must be an object of tables: %v", err)
	}
	p := &PushParams{}
	seen := map[string]bool{}
	// Apply tables in schema order so that every push locks in the same order.
	for _, t := range s.Tables {
		rt, ok := tables[t.Name]
		if !ok {
			continue
		}
		delete(tables, t.Name)
		tp, err := decodeTableChanges(t, rt, seen)
		if err != nil {
			return nil, err
		}
		if len(tp.Created)+len(tp.Updated)+len(tp.Deleted) > 0 {
			p.Tables = append(p.Tables, tp)
		}
	}
	for name, rt := range tables {
		if forbiddenKey(name) {
			return nil, invalid("changes: %q is not allowed as a table name", name)
		}
		// A client whose schema is newer than the server's sends its new tables too,
		// usually empty: those are ignored; records in them are refused.
		var parts map[string][]json.RawMessage
		if err := json.Unmarshal(rt, &parts); err == nil && parts != nil && schema.ValidName(name) == nil {
			empty := true
			for k, v := range parts {
				if (k != "created" && k != "updated" && k != "deleted") || len(v) > 0 {
					empty = false
				}
			}
			if empty {
				continue
			}
		}
		return nil, invalid("changes: unknown table %q", truncate(name))
	}
	return p, nil
}

func decodeTableChanges(t *schema.Table, raw json.RawMessage, seen map[string]bool) (TablePush, error) {
	tp := TablePush{Table: t}
	var parts map[string]json.RawMessage
	if err := unmarshalObject(raw, &parts); err != nil {
		return tp, invalid("changes.%s must be an object with created, updated and deleted: %v", t.Name, err)
	}
	for k := range parts {
		if k != "created" && k != "updated" && k != "deleted" {
			return tp, invalid("changes.%s: unexpected key %q (expected created, updated, deleted)", t.Name, truncate(k))
		}
	}
	for _, kind := range []string{"created", "updated"} {
		var items []json.RawMessage
		if r, ok := parts[kind]; ok && string(bytes.TrimSpace(r)) != "null" {
			if err := unmarshalArray(r, &items); err != nil {
				return tp, invalid("changes.%s.%s must be an array of records: %v", t.Name, kind, err)
			}
		}
		recs := make([]PushedRecord, 0, len(items))
		for i, item := range items {
			rec, err := decodeRecord(t, item)
			if err != nil {
				return tp, invalid("changes.%s.%s[%d]: %v", t.Name, kind, i, err)
			}
			if seen[t.Name+"\x00"+rec.ID] {
				return tp, invalid("changes.%s: id %q appears more than once", t.Name, rec.ID)
			}
			seen[t.Name+"\x00"+rec.ID] = true
			recs = append(recs, rec)
		}
		if kind == "created" {
			tp.Created = recs
		} else {
			tp.Updated = recs
		}
	}
	if r, ok := parts["deleted"]; ok && string(bytes.TrimSpace(r)) != "null" {
		var ids []json.RawMessage
		if err := unmarshalArray(r, &ids); err != nil {
			return tp, invalid("changes.%s.deleted must be an array of ids: %v", t.Name, err)
		}
		for i, rawID := range ids {
			var id string
			if err := json.Unmarshal(rawID, &id); err != nil || bytes.TrimSpace(rawID)[0] != '"' {
				return tp, invalid("changes.%s.deleted[%d] must be a string id", t.Name, i)
			}
			if !melonsync.ValidID(id) {
				return tp, invalid("changes.%s.deleted[%d]: invalid id %q (expected ^[A-Za-z0-9_.-]{1,64}$)", t.Name, i, truncate(id))
			}
			if seen[t.Name+"\x00"+id] {
				return tp, invalid("changes.%s: id %q appears more than once", t.Name, id)
			}
			seen[t.Name+"\x00"+id] = true
			tp.Deleted = append(tp.Deleted, id)
		}
	}
	return tp, nil
}

func decodeRecord(t *schema.Table, raw json.RawMessage) (PushedRecord, error) {
	var m map[string]any
	if err := unmarshalObject(raw, &m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && strings.HasPrefix(te.Value, "number") {
			return PushedRecord{}, fmt.Errorf("%s %s is out of range (numbers must fit a 64-bit float, as in JavaScript)", outOfRangeKey(raw), truncate(te.Value))
		}
		if strings.HasPrefix(err.Error(), "malformed JSON") {
			return PushedRecord{}, err
		}
		return PushedRecord{}, fmt.Errorf("a record must be an object")
	}
	return recordFromMap(t, m)
}

// outOfRangeKey names the key of raw whose number does not fit a float64.
func outOfRangeKey(raw []byte) string {
	var kv map[string]json.RawMessage
	if json.Unmarshal(raw, &kv) == nil {
		for k, v := range kv {
			var f float64
			if len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9') && json.Unmarshal(v, &f) != nil {
				return fmt.Sprintf("column %q:", truncate(k))
			}
		}
	}
	return "a value:"
}

func recordFromMap(t *schema.Table, m map[string]any) (PushedRecord, error) {
	id, ok := m["id"].(string)
	if !ok {
		return PushedRecord{}, fmt.Errorf("a record needs a string id")
	}
	if !melonsync.ValidID(id) {
		return PushedRecord{}, fmt.Errorf("invalid id %q (expected ^[A-Za-z0-9_.-]{1,64}$)", truncate(id))
	}
	for k := range m {
		if forbiddenKey(k) {
			return PushedRecord{}, fmt.Errorf("key %q is not allowed", truncate(k))
		}
	}
	rec := PushedRecord{ID: id, Values: make([]any, len(t.Columns)), Set: make([]bool, len(t.Columns))}
	for i := range t.Columns {
		c := &t.Columns[i]
		v, ok := m[c.Name]
		if !ok {
			rec.Values[i] = c.Default()
			continue
		}
		rec.Values[i] = c.Sanitize(v)
		rec.Set[i] = true
	}
	if ch, ok := m["_changed"].(string); ok {
		rec.Changed = changedColumns(t, ch)
	}
	return rec, nil
}

// changedColumns turns a "_changed" list ("name,is_done") into flags per column of t;
// names that are not columns of t are ignored.
func changedColumns(t *schema.Table, list string) []bool {
	out := make([]bool, len(t.Columns))
	for _, name := range strings.Split(list, ",") {
		if i := t.ColumnIndex(strings.TrimSpace(name)); i >= 0 {
			out[i] = true
		}
	}
	return out
}

func unmarshalObject(raw []byte, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return fmt.Errorf("expected a JSON object")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) {
			return err
		}
		return fmt.Errorf("malformed JSON: %s", jsonErr(err))
	}
	return nil
}

func unmarshalArray(raw []byte, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		return fmt.Errorf("expected a JSON array")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("malformed JSON: %s", jsonErr(err))
	}
	return nil
}

func jsonErr(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "json: ")
	return truncate(s)
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// DecodePull validates a pull body {"lastPulledAt", "schemaVersion", "migration"}.
// An empty body is a first sync.
func DecodePull(body []byte) (PullParams, error) {
	var p PullParams
	if len(bytes.TrimSpace(body)) == 0 {
		return p, nil
	}
	var top map[string]json.RawMessage
	if err := unmarshalObject(body, &top); err != nil {
		return p, invalid("body: %v", err)
	}
	if raw, ok := top["lastPulledAt"]; ok {
		n, _, err := DecodeTimestamp(raw)
		if err != nil {
			return p, invalid("lastPulledAt must be null or a non-negative integer")
		}
		p.LastPulledAt = n
	}
	if raw, ok := top["schemaVersion"]; ok && string(bytes.TrimSpace(raw)) != "null" {
		n, _, err := DecodeTimestamp(raw)
		if err != nil || n < 1 || n > math.MaxInt32 {
			return p, invalid("schemaVersion must be a positive integer")
		}
		p.SchemaVersion = int(n)
	}
	if raw, ok := top["migration"]; ok {
		m, err := DecodeMigration(raw)
		if err != nil {
			return p, err
		}
		p.Migration = m
	}
	if raw, ok := top["pageSize"]; ok && string(bytes.TrimSpace(raw)) != "null" {
		n, _, err := DecodeTimestamp(raw)
		if err != nil || n < 1 || n > MaxPageSize {
			return p, invalid("pageSize must be an integer from 1 to %d", MaxPageSize)
		}
		p.PageSize = int(n)
	}
	return p, nil
}

// MaxPageSize is the largest page a paged pull may ask for.
const MaxPageSize = 1_000_000

// DecodeMigration validates a pull's "migration" (null or {from, tables, columns}).
func DecodeMigration(raw json.RawMessage) (*melonsync.Migration, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m melonsync.Migration
	if raw[0] != '{' {
		return nil, invalid("migration must be null or an object {from, tables, columns}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&m); err != nil {
		return nil, invalid("migration must be null or an object {from, tables, columns}: %s", jsonErr(err))
	}
	if m.From < 1 {
		return nil, invalid("migration.from must be a positive integer")
	}
	return &m, nil
}
