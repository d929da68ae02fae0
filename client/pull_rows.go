package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/internal/sqlitedb"
)

// rowDecoder is the schema-driven decoder of a pull answer for the streamed first
// sync: each record is read straight into a row of insert arguments (id, then the
// table's columns, sanitized; the INSERT sets _status and _changed), in a batch buffer that is reused,
// without building a map per record. It checks and decodes exactly what
// streamPullResponse does (records as WatermelonDB's validateRemoteRaw wants them,
// values as sanitizeRaw makes them); rows_test.go compares the two.
type rowDecoder struct {
	ctx   context.Context
	lx    *lexer
	src   *recordingReader
	want  func(table string) *tableInfo          // nil: skip the table
	batch func(ti *tableInfo) (*rowBatch, error) // the batch to fill for ti (flushing another)
	res   streamResult
}

// rowBatch holds up to cap(ids) rows of one table as insert arguments.
type rowBatch struct {
	ti   *tableInfo
	args []any
	ids  []string
	// end marks the last item of a stream: err is its outcome (nil: res is complete)
	end bool
	err error
	res *streamResult
}

// width is the number of arguments of one row of ti in the streamed first sync's
// INSERT: the id and the columns (its SQL text sets _status and _changed).
func (ti *tableInfo) width() int { return len(ti.t.Columns) + 1 }

// slot maps a key of a remote record to its argument slot in a row: 0 for "id",
// -1 for "_status" and "_changed" (not allowed), 1+i for column i.
func (ti *tableInfo) slot(key []byte) (int, bool) {
	i, ok := ti.slots[string(key)]
	return i, ok
}

func (d *rowDecoder) run() (*streamResult, error) {
	lx := d.lx
	if ok, err := d.open('{', "the pull answer must be an object"); err != nil || !ok {
		if err == nil {
			err = shapef("the pull answer must be an object, found null")
		}
		return nil, err
	}
	haveChanges := false
	for first := true; ; first = false {
		ok, err := lx.more('}', first)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if err := lx.key(); err != nil {
			return nil, err
		}
		key := string(lx.str)
		if key == "changes" {
			haveChanges = true
			if err := d.changes(); err != nil {
				return nil, err
			}
			continue
		}
		raw, err := lx.rawValue()
		if err != nil {
			return nil, err
		}
		switch key {
		case "timestamp":
			ts, err := parseTimestamp(raw)
			if err != nil {
				return nil, err
			}
			d.res.Timestamp = ts
		case "experimentalStrategy":
			if string(raw) != "null" {
				s, err := decodeStrategy(raw)
				if err != nil {
					return nil, err
				}
				d.res.Strategy = s
			}
		default:
			if d.res.Extra == nil {
				d.res.Extra = map[string]json.RawMessage{}
			}
			d.res.Extra[key] = json.RawMessage(raw)
		}
	}
	if !haveChanges {
		return nil, shapef(`the pull answer has no "changes"`)
	}
	return &d.res, nil
}

// open reads the start of an object or array (delim) or null (ok false). A value of
// another type is read whole (its syntax errors come first, as with encoding/json),
// then refused with the shape error what.
func (d *rowDecoder) open(delim byte, what string) (ok bool, err error) {
	c, err := d.lx.peek()
	if err != nil {
		return false, err
	}
	switch c {
	case delim:
		d.lx.pos++
		return true, nil
	case 'n':
		return false, d.lx.literal("null")
	}
	if err := d.lx.skip(); err != nil {
		return false, err
	}
	return false, shapef("%s", what)
}

func (d *rowDecoder) changes() error {
	ok, err := d.open('{', `"changes" must be an object`)
	if err != nil || !ok {
		return err
	}
	for first := true; ; first = false {
		more, err := d.lx.more('}', first)
		if err != nil || !more {
			return err
		}
		if err := d.lx.key(); err != nil {
			return err
		}
		ti := d.want(string(d.lx.str))
		if ti == nil {
			if err := d.lx.skip(); err != nil {
				return err
			}
			continue
		}
		if err := d.tableChanges(ti); err != nil {
			return err
		}
	}
}

func (d *rowDecoder) tableChanges(ti *tableInfo) error {
	table := ti.t.Name
	ok, err := d.open('{', fmt.Sprintf("changes of table %q must be an object", table))
	if err != nil || !ok {
		return err
	}
	for first := true; ; first = false {
		more, err := d.lx.more('}', first)
		if err != nil || !more {
			return err
		}
		if err := d.lx.key(); err != nil {
			return err
		}
		switch kind := string(d.lx.str); kind {
		case "created", "updated":
			err = d.records(ti, kind)
		case "deleted":
			err = d.deletedIDs(ti)
		default:
			err = d.lx.skip()
		}
		if err != nil {
			return err
		}
	}
}

func (d *rowDecoder) records(ti *tableInfo, kind string) error {
	ok, err := d.open('[', fmt.Sprintf("%s.%s must be an array", ti.t.Name, kind))
	if err != nil || !ok {
		return err
	}
	for first := true; ; first = false {
		more, err := d.lx.more(']', first)
		if err != nil || !more {
			return err
		}
		if err := d.record(ti, kind); err != nil {
			return err
		}
		d.res.Records++
		if d.res.Records%1024 == 0 {
			if err := d.ctx.Err(); err != nil {
				return err
			}
		}
	}
}

// record reads one record into the next row of the table's batch.
func (d *rowDecoder) record(ti *tableInfo, kind string) error {
	lx := d.lx
	c, err := lx.peek()
	if err != nil {
		return err
	}
	if c == 'n' {
		if err := lx.literal("null"); err != nil {
			return err
		}
		return shapef("%s.%s: records must be objects, found null", ti.t.Name, kind)
	}
	if c != '{' {
		if err := lx.skip(); err != nil {
			return err
		}
		return shapef("%s.%s: records must be objects", ti.t.Name, kind)
	}
	lx.pos++
	b, err := d.batch(ti)
	if err != nil {
		return err
	}
	base := len(b.args)
	row := b.args[base : base+ti.width()]
	for i := range row {
		row[i] = unset
	}
	bad := false // _status or _changed
	for first := true; ; first = false {
		more, err := lx.more('}', first)
		if err != nil {
			return err
		}
		if !more {
			break
		}
		if err := lx.key(); err != nil {
			return err
		}
		i, known := ti.slot(lx.str)
		if !known {
			if err := lx.skip(); err != nil {
				return err
			}
			continue
		}
		v, composite, err := lx.scalar()
		if err != nil {
			return err
		}
		switch {
		case i < 0:
			bad = true
		case i == 0:
			row[0] = v
			if composite {
				row[0] = unset
			}
		case composite:
			row[i] = sqlitedb.Bind(ti.t.Columns[i-1].Default())
		default:
			row[i] = sqlitedb.Bind(ti.t.Columns[i-1].Sanitize(v))
		}
	}
	id, ok := row[0].(string)
	if !ok || !melonsync.ValidID(id) || bad {
		shown := row[0]
		if shown == unset {
			shown = nil
		}
		err := fmt.Errorf("%w: invalid raw record in %s (id %v): records must have a string 'id' matching ^[A-Za-z0-9_.-]{1,64}$ and no '_status' or '_changed'", ErrInvalid, ti.t.Name, shown)
		return &sinkError{&SyncError{Kind: KindInvalidData, Op: "pull", Message: err.Error(), Err: err}}
	}
	for i := 1; i < len(row); i++ {
		if row[i] == unset {
			row[i] = sqlitedb.Bind(ti.t.Columns[i-1].Default())
		}
	}
	b.args = b.args[:base+len(row)]
	b.ids = append(b.ids, id)
	return nil
}

// unset marks an argument slot no key of the record filled.
var unset any = &struct{ byte }{}

func (d *rowDecoder) deletedIDs(ti *tableInfo) error {
	ok, err := d.open('[', fmt.Sprintf("%s.deleted must be an array", ti.t.Name))
	if err != nil || !ok {
		return err
	}
	for first := true; ; first = false {
		more, err := d.lx.more(']', first)
		if err != nil || !more {
			return err
		}
		v, composite, err := d.lx.scalar()
		if err != nil {
			return err
		}
		if id, ok := v.(string); !ok || id == "" || composite {
			return shapef("%s.deleted must hold non-empty string ids, found %v", ti.t.Name, v)
		}
		// A first sync has nothing to delete: the ids are checked and dropped.
	}
}

// classify turns a failure of the decoder into a typed error, as streamDecoder's
// classify does.
func (d *rowDecoder) classify(err error) error {
	var sk *sinkError
	if errors.As(err, &sk) {
		return sk.err
	}
	sd := &streamDecoder{ctx: d.ctx, src: d.src}
	if d.lx.rerr != nil && d.src.err == nil {
		d.src.err = d.lx.rerr
	}
	return sd.classify(err)
}
