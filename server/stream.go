package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

// The one-pass push decoder (DECODE.md): it reads the JSON tokens from the body as
// they come and decodes each record straight into its PushedRecord, per the table's
// columns, with no map per record and no copy of the body. It only ever agrees with
// the checked decoder (decode.go): whatever it does not like — a refused body, and
// also the rare valid body it leaves alone (invalid UTF-8, duplicate keys, unknown
// tables with records, deep nesting, odd whitespace) — makes it give up, and the
// checked decoder then decodes the whole body or names its problem.

// errGiveUp says the one-pass decoder leaves a body to the checked decoder.
var errGiveUp = errors.New("the one-pass decoder leaves this body to the checked decoder")

// maxNested is the deepest nesting of a value the one-pass decoder reads (a column's
// object or array, an unknown key's value); bodies with deeper ones go to the checked
// decoder, which alone says where encoding/json's bound of 10,000 lies.
const maxNested = 100

// decodeFrom decodes a push (top) or a changes object from r in one pass; when the
// pass gives up it decodes whole() with the checked decoder. An error from r wins.
func decodeFrom(s *schema.Schema, r io.Reader, whole func() ([]byte, error), top bool) (*PushParams, error) {
	er := &errReader{r: r}
	d := &streamDecoder{s: s, dec: jsontext.NewDecoder(er,
		jsontext.AllowDuplicateNames(false), jsontext.AllowInvalidUTF8(false))}
	var p *PushParams
	var err error
	if top {
		p, err = d.push()
	} else {
		p, err = d.changesDoc()
	}
	if er.err != nil {
		return nil, er.err
	}
	if err == nil {
		return p, nil
	}
	body, err := whole()
	if err != nil {
		return nil, err
	}
	if top {
		return decodePushChecked(s, body)
	}
	return decodeChangesChecked(s, body)
}

// errReader remembers the first error of r other than io.EOF.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// streamDecoder decodes one body. Every method fails with errGiveUp (or the
// tokenizer's error) at the first thing it does not like.
type streamDecoder struct {
	s   *schema.Schema
	dec *jsontext.Decoder
	buf []byte // unquoted strings that held escapes
	// Slabs the records' Values, Set and Changed are cut from: a few allocations
	// per slab of records instead of three per record.
	vals []any
	sets []bool
	slab int // records per slab: doubles from minSlabRecords to maxSlabRecords
}

// A body's first slab holds minSlabRecords records, so that a push of a few records
// allocates little; each next one twice as many, up to maxSlabRecords.
const (
	minSlabRecords = 4
	maxSlabRecords = 256
)

// slabSize returns the number of records the next slab holds, and doubles it.
func (d *streamDecoder) slabSize() int {
	n := max(d.slab, minSlabRecords)
	d.slab = min(2*n, maxSlabRecords)
	return n
}

// push decodes {"lastPulledAt": n, "changes": {…}} up to the end of the input.
func (d *streamDecoder) push() (*PushParams, error) {
	if err := d.open('{'); err != nil {
		return nil, err
	}
	var p *PushParams
	var lpa int64
	haveLPA := false
	for d.more() {
		name, err := d.name()
		if err != nil {
			return nil, err
		}
		switch string(name) {
		case "lastPulledAt":
			lpa, err = d.timestamp()
			haveLPA = true
		case "changes":
			p, err = d.changes()
		default:
			err = d.skip()
		}
		if err != nil {
			return nil, err
		}
	}
	if err := d.close(); err != nil {
		return nil, err
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	if p == nil || !haveLPA {
		return nil, errGiveUp
	}
	p.LastPulledAt = lpa
	return p, nil
}

// changesDoc decodes a changes object up to the end of the input.
func (d *streamDecoder) changesDoc() (*PushParams, error) {
	p, err := d.changes()
	if err != nil {
		return nil, err
	}
	return p, d.end()
}

// changes decodes {"table": {"created": […], "updated": […], "deleted": […]}, …}
// into the schema's order of tables.
func (d *streamDecoder) changes() (*PushParams, error) {
	if err := d.open('{'); err != nil {
		return nil, err
	}
	tps := make([]TablePush, len(d.s.Tables))
	for d.more() {
		name, err := d.name()
		if err != nil {
			return nil, err
		}
		i := d.tableIndex(name)
		if i < 0 {
			if err := d.unknownTable(string(name)); err != nil {
				return nil, err
			}
			continue
		}
		tps[i].Table = d.s.Tables[i]
		if err := d.table(&tps[i]); err != nil {
			return nil, err
		}
	}
	if err := d.close(); err != nil {
		return nil, err
	}
	p := &PushParams{}
	for _, tp := range tps {
		if len(tp.Created)+len(tp.Updated)+len(tp.Deleted) > 0 {
			p.Tables = append(p.Tables, tp)
		}
	}
	return p, nil
}

func (d *streamDecoder) tableIndex(name []byte) int {
	for i, t := range d.s.Tables {
		if t.Name == string(name) {
			return i
		}
	}
	return -1
}

// unknownTable accepts what the checked decoder ignores: a table of a newer client
// schema with a valid name and nothing in it.
func (d *streamDecoder) unknownTable(name string) error {
	if forbiddenKey(name) || schema.ValidName(name) != nil {
		return errGiveUp
	}
	if err := d.open('{'); err != nil {
		return err
	}
	for d.more() {
		part, err := d.name()
		if err != nil {
			return err
		}
		if s := string(part); s != "created" && s != "updated" && s != "deleted" {
			return errGiveUp
		}
		v, err := d.dec.ReadValue()
		if err != nil {
			return err
		}
		if s := string(v); s != "null" && s != "[]" {
			return errGiveUp
		}
	}
	return d.close()
}

// table decodes one table's {"created", "updated", "deleted"}.
func (d *streamDecoder) table(tp *TablePush) error {
	if err := d.open('{'); err != nil {
		return err
	}
	seen := map[string]struct{}{} // the table's ids so far: each may appear once
	for d.more() {
		name, err := d.name()
		if err != nil {
			return err
		}
		switch string(name) {
		case "created":
			tp.Created, err = d.records(tp.Table, seen)
		case "updated":
			tp.Updated, err = d.records(tp.Table, seen)
		case "deleted":
			tp.Deleted, err = d.deleted(seen)
		default:
			err = errGiveUp
		}
		if err != nil {
			return err
		}
	}
	return d.close()
}

// records decodes null or an array of records of t.
func (d *streamDecoder) records(t *schema.Table, seen map[string]struct{}) ([]PushedRecord, error) {
	if null, err := d.array(); null || err != nil {
		return nil, err
	}
	// The records go into chunks (of doubling size, from a few: most pushes hold a
	// few records), copied once into one slice at the end: half the allocation of
	// growing one slice as they come.
	var full [][]PushedRecord
	var chunk []PushedRecord
	n := 0
	for d.more() {
		rec, err := d.record(t)
		if err != nil {
			return nil, err
		}
		if _, dup := seen[rec.ID]; dup {
			return nil, errGiveUp
		}
		seen[rec.ID] = struct{}{}
		if len(chunk) == cap(chunk) {
			if cap(chunk) > 0 {
				full = append(full, chunk)
			}
			chunk = make([]PushedRecord, 0, max(4, min(2*cap(chunk), 4096)))
		}
		chunk = append(chunk, rec)
		n++
	}
	if len(full) == 0 {
		return chunk, d.close()
	}
	recs := make([]PushedRecord, 0, n)
	for _, c := range append(full, chunk) {
		recs = append(recs, c...)
	}
	return recs, d.close()
}

// deleted decodes null or an array of ids.
func (d *streamDecoder) deleted(seen map[string]struct{}) ([]string, error) {
	if null, err := d.array(); null || err != nil {
		return nil, err
	}
	var ids []string
	for d.more() {
		v, err := d.scalar()
		if err != nil {
			return nil, err
		}
		if v.kind != '"' || !melonsync.ValidID(string(v.str)) {
			return nil, errGiveUp
		}
		id := string(v.str)
		if _, dup := seen[id]; dup {
			return nil, errGiveUp
		}
		seen[id] = struct{}{}
		ids = append(ids, id)
	}
	return ids, d.close()
}

// record decodes one record of t: its id, its columns sanitized as Column.Sanitize
// does (missing ones take their default and stay unset) and its "_changed" list.
func (d *streamDecoder) record(t *schema.Table) (PushedRecord, error) {
	if err := d.open('{'); err != nil {
		return PushedRecord{}, err
	}
	n := len(t.Columns)
	rec := PushedRecord{Values: d.valueSlab(n), Set: d.setSlab(n)}
	hasID := false
	for d.more() {
		k, err := d.name()
		if err != nil {
			return rec, err
		}
		if forbiddenKey(string(k)) {
			return rec, errGiveUp
		}
		// k is gone after the next read: say what it names first. "id" and
		// "_changed" are reserved, never a column's name.
		isID, isChanged := string(k) == "id", string(k) == "_changed"
		col := -1
		if !isID && !isChanged {
			col = columnIndex(t, string(k))
		}
		v, err := d.scalar()
		if err != nil {
			return rec, err
		}
		switch {
		case isID:
			if v.kind != '"' || !melonsync.ValidID(string(v.str)) {
				return rec, errGiveUp
			}
			rec.ID, hasID = string(v.str), true
		case isChanged:
			if v.kind == '"' {
				rec.Changed = d.changed(t, v.str)
			}
		case col >= 0:
			rec.Values[col] = sanitize(&t.Columns[col], v)
			rec.Set[col] = true
		}
	}
	if err := d.close(); err != nil {
		return rec, err
	}
	if !hasID {
		return rec, errGiveUp
	}
	for i := range rec.Values {
		if !rec.Set[i] {
			rec.Values[i] = t.Columns[i].Default()
		}
	}
	return rec, nil
}

// changed is changedColumns for a "_changed" list read from the body.
func (d *streamDecoder) changed(t *schema.Table, list []byte) []bool {
	out := d.setSlab(len(t.Columns))
	for {
		part, rest, more := bytes.Cut(list, []byte{','})
		if i := columnIndex(t, string(bytes.TrimSpace(part))); i >= 0 {
			out[i] = true
		}
		if !more {
			return out
		}
		list = rest
	}
}

// sanitize is Column.Sanitize for a value read from the body.
func sanitize(c *schema.Column, v value) any {
	switch c.Type {
	case schema.String:
		if v.kind == '"' {
			if bytes.IndexByte(v.str, 0) >= 0 {
				return strings.ReplaceAll(string(v.str), "\x00", "\uFFFD")
			}
			return string(v.str)
		}
	case schema.Boolean:
		switch {
		case v.kind == 't':
			return true
		case v.kind == 'f':
			return false
		case v.kind == '0' && (v.num == 0 || v.num == 1):
			return v.num == 1
		}
	case schema.Number:
		if v.kind == '0' {
			if v.num == 0 {
				return float64(0) // -0 → 0
			}
			return v.num
		}
	}
	return c.Default()
}

// value is one JSON value read from the body.
type value struct {
	kind byte    // '"', '0' (a number), 't', 'f', 'n', or '{' (an object or an array)
	str  []byte  // a string's unquoted bytes, valid until the next read
	num  float64 // a number's value
}

// scalar reads the next value. An object or array is only checked the way
// encoding/json decodes it into an any (a number beyond a float64 is an error).
func (d *streamDecoder) scalar() (value, error) {
	k := d.dec.PeekKind()
	raw, err := d.dec.ReadValue()
	if err != nil {
		return value{}, err
	}
	switch k {
	case '{', '[':
		var x any
		if nesting(raw) > maxNested || json.Unmarshal(raw, &x) != nil {
			return value{}, errGiveUp
		}
		return value{kind: '{'}, nil
	case '"':
		b, err := d.unquote(raw)
		return value{kind: '"', str: b}, err
	case '0':
		f, ok := parseNumber(raw)
		if !ok {
			return value{}, errGiveUp
		}
		return value{kind: '0', num: f}, nil
	}
	return value{kind: byte(k)}, nil
}

// skip reads a value that does not matter.
func (d *streamDecoder) skip() error {
	raw, err := d.dec.ReadValue()
	if err == nil && nesting(raw) > maxNested {
		return errGiveUp
	}
	return err
}

// nesting returns how deeply objects and arrays nest in a valid JSON value.
func nesting(raw []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// parseNumber is how encoding/json reads a JSON number into a float64: false when it
// does not fit one.
func parseNumber(raw []byte) (float64, bool) {
	digits, neg := raw, false
	if len(digits) > 0 && digits[0] == '-' {
		digits, neg = digits[1:], true
	}
	if len(digits) > 0 && len(digits) <= 15 { // an integer below 10^15 is exact
		n := int64(0)
		for _, c := range digits {
			if c < '0' || c > '9' {
				goto general
			}
			n = n*10 + int64(c-'0')
		}
		if neg {
			return -float64(n), true
		}
		return float64(n), true
	}
general:
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}

// timestamp reads lastPulledAt: an integer 0 ≤ n < 2^53 (DecodeTimestamp).
func (d *streamDecoder) timestamp() (int64, error) {
	v, err := d.scalar()
	if err != nil {
		return 0, err
	}
	if v.kind != '0' || v.num < 0 || v.num != math.Trunc(v.num) || v.num >= 1<<53 {
		return 0, errGiveUp
	}
	return int64(v.num), nil
}

// name reads an object's key, unquoted; valid until the next read.
func (d *streamDecoder) name() ([]byte, error) {
	raw, err := d.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	return d.unquote(raw)
}

// unquote returns the content of a JSON string; valid until the next read.
func (d *streamDecoder) unquote(raw jsontext.Value) ([]byte, error) {
	if b := raw[1 : len(raw)-1]; bytes.IndexByte(b, '\\') < 0 {
		return b, nil
	}
	var err error
	d.buf, err = jsontext.AppendUnquote(d.buf[:0], raw)
	return d.buf, err
}

// open reads the start of an object ('{') or array ('[').
func (d *streamDecoder) open(kind jsontext.Kind) error {
	if d.dec.PeekKind() != kind {
		return errGiveUp
	}
	_, err := d.dec.ReadToken()
	return err
}

// array reads null (true) or the start of an array.
func (d *streamDecoder) array() (null bool, err error) {
	if d.dec.PeekKind() == 'n' {
		_, err := d.dec.ReadToken()
		return true, err
	}
	return false, d.open('[')
}

// more reports whether the object or array being read has another member.
func (d *streamDecoder) more() bool {
	k := d.dec.PeekKind()
	return k != '}' && k != ']' && k != 0
}

// close reads the end of the object or array being read (or the error that ended it).
func (d *streamDecoder) close() error {
	_, err := d.dec.ReadToken()
	return err
}

// end checks that nothing follows the top-level value.
func (d *streamDecoder) end() error {
	if _, err := d.dec.ReadToken(); err != io.EOF {
		return errGiveUp
	}
	return nil
}

func (d *streamDecoder) valueSlab(n int) []any {
	if len(d.vals) < n {
		d.vals = make([]any, n*d.slabSize())
	}
	s := d.vals[:n:n]
	d.vals = d.vals[n:]
	return s
}

func (d *streamDecoder) setSlab(n int) []bool {
	if len(d.sets) < n {
		d.sets = make([]bool, n*max(d.slab, minSlabRecords))
	}
	s := d.sets[:n:n]
	d.sets = d.sets[n:]
	return s
}
