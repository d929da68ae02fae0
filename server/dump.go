package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/melonsync/melonsync/schema"
)

// The export format (melonsync export / import): newline-delimited JSON, one entry a
// line, in this order —
//
//	{"kind":"header","format":"melonsync-export","version":1,"store":"sqlite","clock":…,"purgedThrough":…,"schemaVersion":…}
//	{"kind":"secret","secret":"<hex>"}                      only when asked for
//	{"kind":"record","table":"tasks","id":"t1","owner":"alice","version":…,"createdVersion":…,
//	 "createdDevice":"phone","device":"phone","values":{"name":"Buy milk",…}}
//	{"kind":"record",…,"deleted":true,"values":{"team_id":"t9"}}   a tombstone (its kept columns)
//	{"kind":"bookkeeping","table":"__melon_moves","row":{"tbl":"tasks",…}}
//	{"kind":"end","records":N,"bookkeeping":M}
//
// Records carry everything sync needs to go on incrementally: owner, versions and
// devices (so no client needs a replacement), tombstones, the clock and the purge
// horizon. Bookkeeping rows are every other table of melonsync's own ("__melon_…")
// that holds state, copied column by column whatever it is (membership history, the
// sync log…), so tables added later travel without changes here. The end line
// tells a whole export from a cut-off one.

// DumpFormat is the header's format name; DumpVersion its version.
const (
	DumpFormat  = "melonsync-export"
	DumpVersion = 1
)

// DumpEntry is one line of an export.
type DumpEntry struct {
	Kind string `json:"kind"`
	// header
	Format        string `json:"format,omitempty"`
	Version       int    `json:"version,omitempty"`
	Store         string `json:"store,omitempty"`
	Clock         int64  `json:"clock,omitempty"`
	PurgedThrough int64  `json:"purgedThrough,omitempty"`
	SchemaVersion int    `json:"schemaVersion,omitempty"`
	// secret
	Secret string `json:"secret,omitempty"`
	// record, bookkeeping
	Table string `json:"table,omitempty"`
	// record
	ID             string         `json:"id,omitempty"`
	Owner          string         `json:"owner,omitempty"`
	RecordVersion  int64          `json:"recordVersion,omitempty"`
	CreatedVersion int64          `json:"createdVersion,omitempty"`
	CreatedDevice  string         `json:"createdDevice,omitempty"`
	Device         string         `json:"device,omitempty"`
	Deleted        bool           `json:"deleted,omitempty"`
	Values         map[string]any `json:"values,omitempty"`
	// bookkeeping
	Row map[string]any `json:"row,omitempty"`
	// end
	Records     int64 `json:"records,omitempty"`
	Bookkeeping int64 `json:"bookkeeping,omitempty"`
}

// Dump entry kinds.
const (
	DumpHeader      = "header"
	DumpSecret      = "secret"
	DumpRecord      = "record"
	DumpBookkeeping = "bookkeeping"
	DumpEnd         = "end"
)

// ExportOptions says what an export includes.
type ExportOptions struct {
	// Secret includes the JWT signing secret (tokens minted before keep working
	// against the imported store).
	Secret bool
}

// Dumper is a store that can export all it holds from one snapshot and import an
// export into itself while empty.
type Dumper interface {
	// Export calls emit for every entry of the store's export (header first, end
	// last), all read from one consistent snapshot.
	Export(ctx context.Context, sch *schema.Schema, opts ExportOptions, emit func(*DumpEntry) error) error
	// Import reads entries with next (io.EOF after the end entry) and writes them
	// into the store, prepared for sch, in one transaction. It refuses a store that
	// holds records or bookkeeping rows already, and a dump without its end entry.
	Import(ctx context.Context, sch *schema.Schema, next func() (*DumpEntry, error)) error
}

// ErrNotEmpty is returned by Import for a store that holds data already.
var ErrNotEmpty = errors.New("the store is not empty: import only into a new store")

// DumpEncoder writes entries as lines.
type DumpEncoder struct {
	w   *bufio.Writer
	enc *json.Encoder
}

// NewDumpEncoder returns an encoder writing to w; call Flush at the end.
func NewDumpEncoder(w io.Writer) *DumpEncoder {
	bw := bufio.NewWriterSize(w, 256<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &DumpEncoder{w: bw, enc: enc}
}

// Encode writes one entry.
func (e *DumpEncoder) Encode(d *DumpEntry) error { return e.enc.Encode(d) }

// Flush writes what is buffered.
func (e *DumpEncoder) Flush() error { return e.w.Flush() }

// DumpDecoder reads entries, checking the header and that the end entry comes last.
type DumpDecoder struct {
	dec    *json.Decoder
	line   int64
	header bool
	ended  bool
}

// NewDumpDecoder returns a decoder reading from r.
func NewDumpDecoder(r io.Reader) *DumpDecoder {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 256<<10))
	dec.UseNumber()
	return &DumpDecoder{dec: dec}
}

// Next returns the next entry, io.EOF after the end entry, or an error naming the
// line for a broken or cut-off export.
func (d *DumpDecoder) Next() (*DumpEntry, error) {
	if d.ended {
		return nil, io.EOF
	}
	var e DumpEntry
	err := d.dec.Decode(&e)
	d.line++
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("export ends at line %d without its end line: it was cut off", d.line-1)
	}
	if err != nil {
		return nil, fmt.Errorf("export line %d: %w", d.line, err)
	}
	if !d.header {
		if e.Kind != DumpHeader || e.Format != DumpFormat {
			return nil, fmt.Errorf("not a melonsync export (line 1 is not its header)")
		}
		if e.Version != DumpVersion {
			return nil, fmt.Errorf("export format version %d: this melonsync reads version %d", e.Version, DumpVersion)
		}
		d.header = true
	}
	if e.Kind == DumpEnd {
		d.ended = true
	}
	fixNumbers(e.Values)
	fixNumbers(e.Row)
	return &e, nil
}

// fixNumbers turns the json.Numbers of m into int64 when integral, else float64.
func fixNumbers(m map[string]any) {
	for k, v := range m {
		if n, ok := v.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				m[k] = i
			} else {
				f, _ := n.Float64()
				m[k] = f
			}
		}
	}
}
