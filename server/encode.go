package server

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/melonsync/melonsync/schema"
)

// encoder writes JSON straight from rows, without building maps.
type encoder struct {
	w    *bufio.Writer
	last byte
	err  error
	buf  []byte
	// counts tallies what record writes, by the section set in kind (for PullStats).
	kind   int
	counts [3]int
}

// Sections of a table's changes, for encoder.kind.
const (
	kindCreated = iota
	kindUpdated
	kindDeleted
)

func newEncoder(w io.Writer) *encoder {
	return &encoder{w: bufio.NewWriterSize(w, 32<<10), buf: make([]byte, 0, 64)}
}

func (e *encoder) raw(s string) {
	if e.err != nil || len(s) == 0 {
		return
	}
	_, e.err = e.w.WriteString(s)
	e.last = s[len(s)-1]
}

func (e *encoder) byte(b byte) {
	if e.err != nil {
		return
	}
	e.err = e.w.WriteByte(b)
	e.last = b
}

func (e *encoder) lastWas(b byte) bool { return e.last == b }

func (e *encoder) bytes(b []byte) {
	if e.err != nil || len(b) == 0 {
		return
	}
	_, e.err = e.w.Write(b)
	e.last = b[len(b)-1]
}

func (e *encoder) int(n int64) { e.bytes(strconv.AppendInt(e.buf[:0], n, 10)) }

func (e *encoder) str(s string) { e.bytes(AppendString(e.buf[:0], s)) }

// openCreated, openUpdated and openDeleted start a table's sections; what record and
// id write next is counted under that section.
func (e *encoder) openCreated() { e.raw(`{"created":[`); e.kind = kindCreated }
func (e *encoder) openUpdated() { e.raw(`],"updated":[`); e.kind = kindUpdated }
func (e *encoder) openDeleted() { e.raw(`],"deleted":[`); e.kind = kindDeleted }

// id writes a deleted record's id.
func (e *encoder) id(s string) {
	e.counts[kindDeleted]++
	e.str(s)
}

func (e *encoder) flush() error {
	if e.err != nil {
		return e.err
	}
	return e.w.Flush()
}

// record writes {"id":…,"col":…} with nulls of non-optional columns replaced by the
// column's default (rows written before a column existed hold NULL).
func (e *encoder) record(r *Row, cols []schema.Column) {
	e.counts[e.kind]++
	b := appendRecord(e.buf[:0], r, cols)
	e.bytes(b)
	e.buf = b[:0]
}

// appendRecord appends r as the JSON record that encoder.record writes.
func appendRecord(b []byte, r *Row, cols []schema.Column) []byte {
	b = append(b, `{"id":`...)
	b = AppendString(b, r.ID)
	for i := range cols {
		c := &cols[i]
		b = append(b, ',')
		b = AppendString(b, c.Name)
		b = append(b, ':')
		v := r.Values[i]
		if v == nil {
			v = c.Default()
		}
		b = AppendValue(b, v)
	}
	return append(b, '}')
}

// AppendValue appends v (string, float64, bool or nil) as JSON.
func AppendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return AppendString(b, x)
	case float64:
		return AppendNumber(b, x)
	case bool:
		if x {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case int64:
		return strconv.AppendInt(b, x, 10)
	default:
		return append(b, "null"...)
	}
}

// AppendNumber appends f the way JavaScript's JSON.stringify writes numbers.
func AppendNumber(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		n := len(b)
		b = strconv.AppendFloat(b, f, 'e', -1, 64)
		// Go writes e-07; JavaScript writes e-7.
		m := len(b)
		if m-n >= 4 && b[m-4] == 'e' && b[m-3] == '-' && b[m-2] == '0' {
			b[m-2] = b[m-1]
			b = b[:m-1]
		}
		return b
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

const hex = "0123456789abcdef"

// AppendString appends s as a JSON string, escaping what JSON requires plus <, >, &
// and U+2028/U+2029; invalid UTF-8 becomes U+FFFD.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
