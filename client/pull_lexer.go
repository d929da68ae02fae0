package client

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// lexer reads JSON from a stream with a buffer of its own, for the schema-driven pull
// decoder (pull_rows.go). It accepts what encoding/json accepts and decodes strings
// and numbers to the same Go values (the rare strings with escapes or invalid UTF-8
// are handed to encoding/json itself); it holds one token at a time, or one small
// value captured by rawValue.
type lexer struct {
	r    io.Reader
	buf  []byte
	pos  int
	end  int
	rerr error // the reader's first error other than io.EOF
	eof  bool
	str  []byte // the last string read (valid until the next read)
	num  []byte
	// capture (rawValue): bytes buf[mark:] belong to the value being captured
	capturing bool
	mark      int
	raw       []byte
}

const (
	lexBufSize  = 64 << 10
	maxJSONNest = 10000 // encoding/json's limit
)

func newLexer(r io.Reader) *lexer { return &lexer{r: r, buf: make([]byte, lexBufSize)} }

type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

func syntaxf(format string, args ...any) error { return &syntaxError{fmt.Sprintf(format, args...)} }

// fill reads more input once the buffer is used up; false at the end of the stream
// (or on a read error, kept in rerr).
func (l *lexer) fill() bool {
	if l.capturing {
		l.raw = append(l.raw, l.buf[l.mark:l.end]...)
		l.mark = 0
	}
	l.pos, l.end = 0, 0
	for !l.eof {
		n, err := l.r.Read(l.buf)
		l.end = n
		if err != nil {
			l.eof = true
			if err != io.EOF && l.rerr == nil {
				l.rerr = err
			}
		}
		if n > 0 {
			return true
		}
	}
	return false
}

// peek returns the next byte after white space, without consuming it.
func (l *lexer) peek() (byte, error) {
	for {
		for l.pos < l.end {
			switch c := l.buf[l.pos]; c {
			case ' ', '\t', '\n', '\r':
				l.pos++
			default:
				return c, nil
			}
		}
		if !l.fill() {
			return 0, io.ErrUnexpectedEOF
		}
	}
}

// expect consumes the byte c (after white space).
func (l *lexer) expect(c byte, what string) error {
	got, err := l.peek()
	if err != nil {
		return err
	}
	if got != c {
		return syntaxf("invalid character %q %s", got, what)
	}
	l.pos++
	return nil
}

// more reports whether an object or array goes on after a member (consuming the
// comma), or ends (consuming close). first is true before the first member.
func (l *lexer) more(close byte, first bool) (bool, error) {
	c, err := l.peek()
	if err != nil {
		return false, err
	}
	if c == close {
		l.pos++
		return false, nil
	}
	if first {
		return true, nil
	}
	if c != ',' {
		return false, syntaxf("invalid character %q after an %s member", c, map[byte]string{'}': "object", ']': "array"}[close])
	}
	l.pos++
	return true, nil
}

// key reads an object key and its colon into l.str.
func (l *lexer) key() error {
	c, err := l.peek()
	if err != nil {
		return err
	}
	if c != '"' {
		return syntaxf("invalid character %q looking for the beginning of an object key", c)
	}
	if err := l.readString(); err != nil {
		return err
	}
	return l.expect(':', "after an object key")
}

// readString reads the string that starts at the current byte ('"') into l.str.
func (l *lexer) readString() error {
	l.pos++ // the opening quote
	l.str = l.str[:0]
	escaped, nonASCII, afterBackslash := false, false, false
	for {
		start := l.pos
		for l.pos < l.end {
			c := l.buf[l.pos]
			switch {
			case afterBackslash:
				afterBackslash = false
			case c == '"':
				l.str = append(l.str, l.buf[start:l.pos]...)
				l.pos++
				if escaped || (nonASCII && !utf8.Valid(l.str)) {
					return l.slowString()
				}
				return nil
			case c == '\\':
				escaped, afterBackslash = true, true
			case c < 0x20:
				return syntaxf("invalid character %q in string literal", c)
			case c >= 0x80:
				nonASCII = true
			}
			l.pos++
		}
		l.str = append(l.str, l.buf[start:l.end]...)
		if !l.fill() {
			return io.ErrUnexpectedEOF
		}
	}
}

// slowString decodes l.str (a string's raw bytes) with encoding/json: escapes, and
// invalid UTF-8 replaced as encoding/json replaces it.
func (l *lexer) slowString() error {
	q := make([]byte, 0, len(l.str)+2)
	q = append(append(append(q, '"'), l.str...), '"')
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return syntaxf("invalid string literal: %v", err)
	}
	l.str = append(l.str[:0], s...)
	return nil
}

// number reads a JSON number and returns it as encoding/json decodes it into an
// interface (a float64).
func (l *lexer) number() (float64, error) {
	l.num = l.num[:0]
	for {
		for l.pos < l.end {
			switch c := l.buf[l.pos]; {
			case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
				l.num = append(l.num, c)
				l.pos++
				continue
			}
			return l.parseNumber()
		}
		if !l.fill() {
			if l.rerr != nil {
				return 0, io.ErrUnexpectedEOF
			}
			return l.parseNumber()
		}
	}
}

func (l *lexer) parseNumber() (float64, error) {
	b := l.num
	if !validNumber(b) {
		return 0, syntaxf("invalid number literal %q", b)
	}
	// integers of up to 15 digits are exact in a float64
	if n := len(b); n > 0 && n <= 15 {
		neg := b[0] == '-'
		digits := b
		if neg {
			digits = b[1:]
		}
		v, ok := int64(0), true
		for _, c := range digits {
			if c < '0' || c > '9' {
				ok = false
				break
			}
			v = v*10 + int64(c-'0')
		}
		if ok {
			if neg {
				return -float64(v), nil
			}
			return float64(v), nil
		}
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, syntaxf("number %s does not fit a float64", b)
	}
	return f, nil
}

// validNumber checks JSON's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if i >= len(b) || b[i] < '1' || b[i] > '9' || digits() == 0 {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

// literal consumes the word (true, false or null) whose first byte is current.
func (l *lexer) literal(word string) error {
	for i := 0; i < len(word); i++ {
		if l.pos >= l.end && !l.fill() {
			return io.ErrUnexpectedEOF
		}
		if l.buf[l.pos] != word[i] {
			return syntaxf("invalid character %q in literal %s", l.buf[l.pos], word)
		}
		l.pos++
	}
	return nil
}

// scalar reads a string, number, true, false or null as encoding/json decodes it into
// an interface; composite is true (and v nil) for an object or an array, which is
// skipped.
func (l *lexer) scalar() (v any, composite bool, err error) {
	c, err := l.peek()
	if err != nil {
		return nil, false, err
	}
	switch {
	case c == '"':
		if err := l.readString(); err != nil {
			return nil, false, err
		}
		return string(l.str), false, nil
	case c == '-' || (c >= '0' && c <= '9'):
		f, err := l.number()
		return f, false, err
	case c == 't':
		return true, false, l.literal("true")
	case c == 'f':
		return false, false, l.literal("false")
	case c == 'n':
		return nil, false, l.literal("null")
	case c == '{' || c == '[':
		return nil, true, l.skip()
	}
	return nil, false, syntaxf("invalid character %q looking for the beginning of a value", c)
}

// skip reads and checks one value of any size without keeping it.
func (l *lexer) skip() error { return l.skipDepth(0) }

func (l *lexer) skipDepth(depth int) error {
	c, err := l.peek()
	if err != nil {
		return err
	}
	if c != '{' && c != '[' {
		_, _, err := l.scalar()
		return err
	}
	if depth >= maxJSONNest {
		return syntaxf("exceeded max depth")
	}
	l.pos++
	close := byte('}')
	if c == '[' {
		close = ']'
	}
	for first := true; ; first = false {
		ok, err := l.more(close, first)
		if err != nil || !ok {
			return err
		}
		if close == '}' {
			if err := l.key(); err != nil {
				return err
			}
		}
		if err := l.skipDepth(depth + 1); err != nil {
			return err
		}
	}
}

// rawValue reads one value and returns its bytes (white space around it excluded),
// for the small top-level values of a pull answer.
func (l *lexer) rawValue() ([]byte, error) {
	if _, err := l.peek(); err != nil {
		return nil, err
	}
	l.capturing, l.mark, l.raw = true, l.pos, nil
	err := l.skip()
	if err == nil {
		l.raw = append(l.raw, l.buf[l.mark:l.pos]...)
	}
	l.capturing = false
	return l.raw, err
}
