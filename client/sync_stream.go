package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/melonsync/melonsync"
)

// pullSink receives the records of a pull answer as the stream decoder meets them.
type pullSink interface {
	// wantTable tells whether the records of table are wanted (else they are skipped).
	wantTable(table string) bool
	record(table string, created bool, rec Record) error
	deleted(table, id string) error
}

type streamResult struct {
	Timestamp int64
	Strategy  Strategy
	Extra     map[string]json.RawMessage
	Records   int
}

// DecodePullResponse reads a whole pull answer ({"changes": ..., "timestamp": ...,
// "experimentalStrategy": ..., other keys}) into a PullResult. Errors are typed: a
// body cut short is ErrNetwork, malformed JSON or records are ErrInvalidData.
func DecodePullResponse(ctx context.Context, r io.Reader) (*PullResult, error) {
	sink := &changesSink{changes: melonsync.Changes{}}
	sr, err := streamPullResponse(ctx, r, sink)
	if err != nil {
		return nil, err
	}
	return &PullResult{Changes: sink.changes, Timestamp: sr.Timestamp, Strategy: sr.Strategy, Extra: sr.Extra}, nil
}

type changesSink struct{ changes melonsync.Changes }

// wantTable keeps every table, also one without records: a replacement answer
// replaces the tables it names, empty ones included.
func (s *changesSink) wantTable(t string) bool { s.table(t); return true }

func (s *changesSink) table(t string) *melonsync.TableChanges {
	tc := s.changes[t]
	if tc == nil {
		tc = &melonsync.TableChanges{Created: []melonsync.RawRecord{}, Updated: []melonsync.RawRecord{}, Deleted: []string{}}
		s.changes[t] = tc
	}
	return tc
}

func (s *changesSink) record(t string, created bool, rec Record) error {
	tc := s.table(t)
	if created {
		tc.Created = append(tc.Created, rec)
	} else {
		tc.Updated = append(tc.Updated, rec)
	}
	return nil
}

func (s *changesSink) deleted(t, id string) error {
	tc := s.table(t)
	tc.Deleted = append(tc.Deleted, id)
	return nil
}

// streamPullResponse decodes a pull answer token by token, handing each record to
// sink as soon as it is read, so that memory does not grow with the answer.
func streamPullResponse(ctx context.Context, r io.Reader, sink pullSink) (*streamResult, error) {
	src := &recordingReader{r: r}
	d := &streamDecoder{ctx: ctx, dec: json.NewDecoder(src), src: src, sink: sink}
	res, err := d.run()
	if err != nil {
		return nil, d.classify(err)
	}
	return res, nil
}

// recordingReader keeps the first error of the underlying reader, to tell a failing
// connection from malformed JSON.
type recordingReader struct {
	r   io.Reader
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

type streamDecoder struct {
	ctx  context.Context
	dec  *json.Decoder
	src  *recordingReader
	sink pullSink
}

// sinkError carries an error of the sink (the database) through the decoder unchanged.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

type shapeError struct{ msg string }

func (e *shapeError) Error() string { return e.msg }

func shapef(format string, args ...any) error { return &shapeError{fmt.Sprintf(format, args...)} }

// classify turns decoding failures into typed errors: a failing reader is a network
// error (unless it already is a typed or context error), a stream that ends early too,
// and anything else malformed is invalid data.
func (d *streamDecoder) classify(err error) error {
	var sk *sinkError
	if errors.As(err, &sk) {
		return sk.err
	}
	passThrough := func(e error) bool {
		var se *SyncError
		return errors.As(e, &se) || errors.Is(e, context.Canceled) || errors.Is(e, context.DeadlineExceeded)
	}
	if d.src.err != nil {
		if passThrough(d.src.err) {
			return d.src.err
		}
		return NetworkError(d.ctx, "pull", d.src.err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return NetworkError(d.ctx, "pull", fmt.Errorf("the answer was cut short: %w", io.ErrUnexpectedEOF))
	}
	if passThrough(err) {
		return err
	}
	return &SyncError{Kind: KindInvalidData, Op: "pull", Message: "malformed pull answer: " + err.Error(), Err: err}
}

func (d *streamDecoder) token() (json.Token, error) { return d.dec.Token() }

func (d *streamDecoder) expectDelim(want json.Delim, what string) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if dl, ok := t.(json.Delim); !ok || dl != want {
		return shapef("%s must be %s, found %v", what, describeDelim(want), t)
	}
	return nil
}

func describeDelim(d json.Delim) string {
	if d == '{' {
		return "an object"
	}
	return "an array"
}

func (d *streamDecoder) run() (*streamResult, error) {
	sink := d.sink
	res := &streamResult{}
	if err := d.expectDelim('{', "the pull answer"); err != nil {
		return nil, err
	}
	haveTimestamp, haveChanges := false, false
	for d.dec.More() {
		t, err := d.token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		switch key {
		case "changes":
			haveChanges = true
			if err := d.changes(sink, res); err != nil {
				return nil, err
			}
		case "timestamp":
			var raw json.RawMessage
			if err := d.dec.Decode(&raw); err != nil {
				return nil, err
			}
			ts, err := parseTimestamp(raw)
			if err != nil {
				return nil, err
			}
			res.Timestamp, haveTimestamp = ts, true
		case "experimentalStrategy":
			var raw json.RawMessage
			if err := d.dec.Decode(&raw); err != nil {
				return nil, err
			}
			if string(raw) != "null" {
				s, err := decodeStrategy(raw)
				if err != nil {
					return nil, err
				}
				res.Strategy = s
			}
		default:
			var raw json.RawMessage
			if err := d.dec.Decode(&raw); err != nil {
				return nil, err
			}
			if res.Extra == nil {
				res.Extra = map[string]json.RawMessage{}
			}
			res.Extra[key] = raw
		}
	}
	if _, err := d.token(); err != nil { // the closing '}'
		return nil, err
	}
	if !haveChanges {
		return nil, shapef(`the pull answer has no "changes"`)
	}
	if !haveTimestamp {
		res.Timestamp = 0 // reported as an invalid timestamp by Synchronize
	}
	return res, nil
}

func parseTimestamp(raw json.RawMessage) (int64, error) {
	if string(raw) == "null" {
		return 0, nil // reported as an invalid timestamp by Synchronize
	}
	if ts, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return ts, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f != float64(int64(f)) {
		return 0, invalidData("pull", "pullChanges() returned invalid timestamp %s. timestamp must be a non-zero integer", raw)
	}
	return int64(f), nil
}

func (d *streamDecoder) changes(sink pullSink, res *streamResult) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t == nil { // "changes": null
		return nil
	}
	if dl, ok := t.(json.Delim); !ok || dl != '{' {
		return shapef(`"changes" must be an object, found %v`, t)
	}
	for d.dec.More() {
		t, err := d.token()
		if err != nil {
			return err
		}
		table, _ := t.(string)
		if !sink.wantTable(table) {
			if err := d.skip(); err != nil {
				return err
			}
			continue
		}
		if err := d.tableChanges(sink, table, res); err != nil {
			return err
		}
	}
	_, err = d.token() // '}'
	return err
}

func (d *streamDecoder) tableChanges(sink pullSink, table string, res *streamResult) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t == nil {
		return nil
	}
	if dl, ok := t.(json.Delim); !ok || dl != '{' {
		return shapef("changes of table %q must be an object, found %v", table, t)
	}
	for d.dec.More() {
		t, err := d.token()
		if err != nil {
			return err
		}
		kind, _ := t.(string)
		switch kind {
		case "created", "updated":
			if err := d.records(sink, table, kind == "created", res); err != nil {
				return err
			}
		case "deleted":
			if err := d.deletedIDs(sink, table); err != nil {
				return err
			}
		default:
			if err := d.skip(); err != nil {
				return err
			}
		}
	}
	_, err = d.token() // '}'
	return err
}

func (d *streamDecoder) records(sink pullSink, table string, created bool, res *streamResult) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t == nil {
		return nil
	}
	if dl, ok := t.(json.Delim); !ok || dl != '[' {
		return shapef("%s.%s must be an array", table, kindName(created))
	}
	for d.dec.More() {
		var rec map[string]any
		if err := d.dec.Decode(&rec); err != nil {
			var typ *json.UnmarshalTypeError
			if errors.As(err, &typ) {
				return shapef("%s.%s: records must be objects", table, kindName(created))
			}
			return err
		}
		if rec == nil {
			return shapef("%s.%s: records must be objects, found null", table, kindName(created))
		}
		if err := sink.record(table, created, rec); err != nil {
			return &sinkError{err}
		}
		res.Records++
	}
	_, err = d.token() // ']'
	return err
}

func kindName(created bool) string {
	if created {
		return "created"
	}
	return "updated"
}

func (d *streamDecoder) deletedIDs(sink pullSink, table string) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t == nil {
		return nil
	}
	if dl, ok := t.(json.Delim); !ok || dl != '[' {
		return shapef("%s.deleted must be an array", table)
	}
	for d.dec.More() {
		t, err := d.token()
		if err != nil {
			return err
		}
		id, ok := t.(string)
		if !ok || id == "" {
			return shapef("%s.deleted must hold non-empty string ids, found %v", table, t)
		}
		if err := sink.deleted(table, id); err != nil {
			return &sinkError{err}
		}
	}
	_, err = d.token() // ']'
	return err
}

// skip reads and drops one value of any size without keeping it.
func (d *streamDecoder) skip() error {
	depth := 0
	for {
		t, err := d.token()
		if err != nil {
			return err
		}
		if dl, ok := t.(json.Delim); ok {
			switch dl {
			case '{', '[':
				depth++
			default:
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}
