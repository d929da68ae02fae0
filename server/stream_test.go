package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

var samePush = []cmp.Option{cmp.Comparer(func(a, b *schema.Table) bool { return a == b }), cmpopts.EquateEmpty(),
	cmp.Comparer(func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) })} // -0 is not 0

// sameOutcome fails t unless the new decoder's outcome (p, err) is the reference
// decoder's: the same push, or an error with the same code and message. The
// reference is not deterministic where it ranges over a map (a record with two
// forbidden keys, two numbers out of range): any message it can give is accepted.
func sameOutcome(t *testing.T, in []byte, p *PushParams, err error, ref func([]byte) (*PushParams, error)) {
	t.Helper()
	want, werr := ref(in)
	if (err == nil) != (werr == nil) {
		t.Fatalf("%q:\n new: %v, %v\n ref: %v, %v", in, p, err, want, werr)
	}
	if err == nil {
		if diff := cmp.Diff(want, p, samePush...); diff != "" {
			t.Fatalf("%q: decoders disagree (-ref +new):\n%s", in, diff)
		}
		return
	}
	if melonsync.ErrorCode(err) != melonsync.ErrorCode(werr) {
		t.Fatalf("%q: code %q, reference %q (%v / %v)", in, melonsync.ErrorCode(err), melonsync.ErrorCode(werr), err, werr)
	}
	for i := 0; i < 500 && err.Error() != werr.Error(); i++ {
		_, werr = ref(in)
	}
	if err.Error() != werr.Error() {
		t.Fatalf("%q: message\n %v\nreference\n %v", in, err, werr)
	}
}

func checkPush(t *testing.T, s *schema.Schema, in []byte) {
	t.Helper()
	p, err := DecodePush(s, in)
	sameOutcome(t, in, p, err, func(b []byte) (*PushParams, error) { return decodePushRef(s, b) })
	// Read in small pieces, as from a network, it decodes the same.
	p, err = DecodePushFrom(s, iotest.HalfReader(bytes.NewReader(in)), func() ([]byte, error) { return in, nil })
	sameOutcome(t, in, p, err, func(b []byte) (*PushParams, error) { return decodePushRef(s, b) })
}

func checkChanges(t *testing.T, s *schema.Schema, in []byte) {
	t.Helper()
	p, err := DecodeChanges(s, in)
	sameOutcome(t, in, p, err, func(b []byte) (*PushParams, error) { return decodeChangesRef(s, b) })
}

// pushCases are bodies of every kind the decoders must agree on.
var pushCases = []string{
	`{"lastPulledAt":0,"changes":{}}`,
	`{"changes":{"projects":{"created":[{"id":"a","name":"x","is_favorite":1,"position":"3"}],"updated":[{"id":"b","_status":"updated","_changed":"name, position,nope"}],"deleted":["c"]}},"lastPulledAt":17}`,
	`{"lastPulledAt":1.0e3,"changes":{"projects":{"created":null,"updated":[],"deleted":null}}}`,
	`{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":"t","description":["x"],"position":1e308,"is_done":0,"name":"a\u0000b"}]},"comments":{"deleted":["x","y"]}}}`,
	`{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":"t","position":-0,"is_done":true,"name":{"a":[1,{"b":null}]},"project_id":"p\ud83d\ude00\n"}]}}}`,
	`{"lastPulledAt":0,"changes":{"tasks":{"updated":[{"id":"t","position":1e-400,"is_done":2,"description":null,"_changed":""}]}}}`,
	`{"lastPulledAt":0,"changes":{"tasks":{"updated":[{"id":"t","position":true,"is_done":0.5,"name":7,"project_id":null,"description":false}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a"}],"deleted":["a"]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a"}],"updated":[{"id":"a"}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a"}]},"tasks":{"created":[{"id":"a"}]}}}`,
	`{"lastPulledAt":0,"changes":{"newer_table":{"created":[],"updated":null,"deleted":[]}}}`,
	`{"lastPulledAt":0,"changes":{"newer_table":{"created":[{"id":"a"}]}}}`,
	`{"lastPulledAt":0,"changes":{"Bad-Name":{}}}`,
	`{"lastPulledAt":0,"changes":{"__proto__":{}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"CREATED":[]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[null]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[[1]]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":null}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":{}}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"deleted":[1]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"deleted":["a b"]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a","__proto__":1}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a","__x":1,"constructor":2}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a b"}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":7}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"name":"no id"}]}}}`,
	`{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":"a","position":1e400}]}}}`,
	`{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":"a","extra":[-1e999]}]}}}`,
	`{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":"a","position":1e400,"x":2e400}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a","name":"x","name":"y"}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a"}]},"projects":{"deleted":["b"]}}}`,
	`{"lastPulledAt":0,"lastPulledAt":5,"changes":{}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a","name":"bad \xff utf-8"}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a","name":"lone \udc00 surrogate"}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"\u0069d":"a","n\u0061me":"esc"}]}}}`,
	`{"lastPulledAt":0,"changes":{},"extra":1e400}`,
	`{"lastPulledAt":0,"changes":{}} `,
	"\v{\"lastPulledAt\":0,\"changes\":{}}\u00a0",
	`{"lastPulledAt":0,"changes":{}} {}`,
	`{"lastPulledAt":0,"changes":{}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a",}]}}}`,
	`{"lastPulledAt":null,"changes":{}}`,
	`{"lastPulledAt":-1,"changes":{}}`,
	`{"lastPulledAt":1.5,"changes":{}}`,
	`{"lastPulledAt":9007199254740992,"changes":{}}`,
	`{"lastPulledAt":"1","changes":{}}`,
	`{"lastPulledAt":1e400,"changes":{}}`,
	`{"changes":{}}`,
	`{"lastPulledAt":0}`,
	`{"lastPulledAt":0,"changes":null}`,
	`{"lastPulledAt":0,"changes":[]}`,
	`[]`, ``, `null`, `{`, `{"lastPulledAt":0,"changes":{}}]`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a","x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a","x":` + strings.Repeat("[", 9995) + strings.Repeat("]", 9995) + `}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a","x":` + strings.Repeat("[", 9996) + strings.Repeat("]", 9996) + `}]}}}`,
	`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a","x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}]}}}`,
}

func TestStreamDecoderAgrees(t *testing.T) {
	for _, s := range []*schema.Schema{todo(t), optionalTodo(t)} {
		for _, in := range append(pushCases, corpus(t)...) {
			checkPush(t, s, []byte(in))
			// The same changes given alone, as POST /sync sends them.
			if i, j := strings.Index(in, `"changes":`), strings.LastIndex(in, "}"); i >= 0 && j > i {
				checkChanges(t, s, []byte(in[i+len(`"changes":`):j]))
			}
			checkChanges(t, s, []byte(in))
		}
	}
}

// optionalTodo is the todo schema with every column optional: wrong types become
// null there, not "", 0 or false.
func optionalTodo(t testing.TB) *schema.Schema {
	s, err := schema.Parse([]byte(`{"version":1,"tables":[
		{"name":"projects","columns":[{"name":"name","type":"string","isOptional":true},{"name":"is_favorite","type":"boolean","isOptional":true},{"name":"position","type":"number","isOptional":true}]},
		{"name":"tasks","columns":[{"name":"project_id","type":"string","isOptional":true},{"name":"name","type":"string","isOptional":true},{"name":"is_done","type":"boolean","isOptional":true},{"name":"position","type":"number","isOptional":true},{"name":"description","type":"string","isOptional":true}]},
		{"name":"comments","columns":[{"name":"task_id","type":"string","isOptional":true},{"name":"body","type":"string","isOptional":true}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The one-pass decoder decodes ordinary pushes itself: the checked decoder is not
// asked for them.
func TestStreamDecoderDecodesOrdinaryPushes(t *testing.T) {
	s := todo(t)
	ordinary := []string{pushCases[0], pushCases[1], pushCases[2], pushCases[3], pushCases[4], pushCases[5], pushCases[9],
		string(tenThousand(10)), `{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a","n\u0061me":"\"quoted\""}]}}}`}
	for _, in := range ordinary {
		p, err := DecodePushFrom(s, strings.NewReader(in), func() ([]byte, error) {
			t.Errorf("%s: the checked decoder was asked", in)
			return []byte(in), nil
		})
		if err != nil {
			t.Errorf("%s: %v", in, err)
		}
		sameOutcome(t, []byte(in), p, err, func(b []byte) (*PushParams, error) { return decodePushRef(s, b) })
	}
}

// An error reading the body is returned as it is, whatever the decoders make of
// what came before it.
func TestStreamDecoderReadError(t *testing.T) {
	s := todo(t)
	boom := errors.New("boom")
	for _, in := range []string{`{"lastPulledAt":0,"changes":{}}`, `{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":"a","name":"x`} {
		r := io.MultiReader(strings.NewReader(in), iotest.ErrReader(boom))
		_, err := DecodePushFrom(s, r, func() ([]byte, error) { return []byte(in), nil })
		if err != boom {
			t.Errorf("%s: got %v, want the read error", in, err)
		}
	}
	// And so is an error getting the whole body for the checked decoder.
	_, err := DecodePushFrom(s, strings.NewReader(`[]`), func() ([]byte, error) { return nil, boom })
	if err != boom {
		t.Errorf("got %v, want whole's error", err)
	}
}

// FuzzStreamDecoder: the one-pass decoder and the map-based reference decoder give
// the same push or the same error, for push bodies and for changes alone. Seeded
// with the corpora of the other decoding fuzz targets.
func FuzzStreamDecoder(f *testing.F) {
	schemas := []*schema.Schema{todo(f), optionalTodo(f)}
	for _, in := range append(pushCases, corpus(f)...) {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, s := range schemas {
			checkPush(t, s, in)
			checkChanges(t, s, in)
		}
	})
}

// corpus returns the inputs of server's fuzz corpora (testdata/fuzz).
func corpus(t testing.TB) []string {
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "*", "*"))
	var out []string
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			for _, kind := range []string{"[]byte(", "string("} {
				if v, ok := strings.CutPrefix(line, kind); ok {
					if s, err := strconv.Unquote(strings.TrimSuffix(v, ")")); err == nil {
						out = append(out, s)
					}
				}
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d corpus inputs found", len(out))
	}
	return out
}

// tenThousand returns a push body of n created tasks, as a WatermelonDB client
// sends them.
func tenThousand(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"lastPulledAt":1700000000000,"changes":{"projects":{"created":[],"updated":[],"deleted":[]},"tasks":{"created":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"task%06d","project_id":"p%d","name":"Task number %d","is_done":%v,"position":%d,"description":null,"_status":"created","_changed":""}`,
			i, i%50, i, i%3 == 0, i)
	}
	b.WriteString(`],"updated":[],"deleted":[]},"comments":{"created":[],"updated":[],"deleted":["c1","c2"]}}}`)
	return b.Bytes()
}
