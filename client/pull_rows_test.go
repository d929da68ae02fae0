package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/melonsync/melonsync/internal/testutil"
)

// The schema-driven decoder of the streamed first sync must accept, refuse and store
// exactly what the reference path does: encoding/json's token stream into maps
// (streamPullResponse), then InsertSynced record by record (refInsertSink).

// refInsertSink is the reference: every record through Tx.InsertSynced.
type refInsertSink struct{ tx *Tx }

func (s *refInsertSink) wantTable(t string) bool { return s.tx.db.Schema().Table(t) != nil }
func (s *refInsertSink) record(t string, _ bool, rec Record) error {
	if err := checkRemoteRaw(t, rec); err != nil {
		return err
	}
	return s.tx.InsertSynced(t, rec)
}
func (s *refInsertSink) deleted(string, string) error { return nil }

type turboOutcome struct {
	kind    string // "" (ok) or the error's kind
	res     *streamResult
	records map[string]Record
}

func errKind(err error) string {
	for _, k := range []error{ErrInvalidData, ErrNetwork, ErrExists, ErrInvalid} {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

// runTurbo loads body into db's empty tables in a write it rolls back, and returns
// the outcome.
func runTurbo(t testing.TB, db *DB, body func() io.Reader, fast bool) turboOutcome {
	t.Helper()
	var out turboOutcome
	err := db.Write(context.Background(), func(tx *Tx) error {
		var err error
		if fast {
			out.res, err = tx.turboLoad(context.Background(), body(), nil, nil)
		} else {
			out.res, err = streamPullResponse(context.Background(), body(), &refInsertSink{tx: tx})
		}
		out.kind = errKind(err)
		if err != nil {
			out.res = nil
			return errRollback
		}
		if out.records, err = fuzzDump(tx); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	return out
}

func compareTurbo(t *testing.T, body string) {
	t.Helper()
	db := ldbOpen(t)
	for _, chunked := range []bool{false, true} {
		mk := func() io.Reader {
			if chunked {
				return iotest.OneByteReader(strings.NewReader(body))
			}
			return strings.NewReader(body)
		}
		ref, got := runTurbo(t, db, mk, false), runTurbo(t, db, mk, true)
		if ref.kind != got.kind {
			t.Fatalf("body %s (one byte at a time: %v):\nerror %q, reference %q", body, chunked, got.kind, ref.kind)
		}
		if !reflect.DeepEqual(ref.res, got.res) {
			t.Fatalf("body %s: result %+v, reference %+v", body, got.res, ref.res)
		}
		if !reflect.DeepEqual(ref.records, got.records) {
			t.Fatalf("body %s: records\n%v\nreference\n%v", body, got.records, ref.records)
		}
	}
}

var turboCorpus = []string{
	`{"changes": {}, "timestamp": 5}`,
	`{"timestamp": 5, "changes": {"mock_projects": {"created": [{"id": "p1", "name": "one"}]}}}`,
	`{"changes": {"mock_projects": {"created": [{"id": "p1", "name": "x", "name": "last wins", "id": "p2"}]}}, "timestamp": 1}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "t1", "position": "not a number", "is_completed": 1, "name": null, "description": 5}]}}, "timestamp": 1}`,
	`{"changes": {"mock_tasks": {"updated": [{"id": "t1", "position": -0, "is_completed": 0.0, "name": {"a": [1, {"b": 2}]}, "description": [1, 2]}]}}, "timestamp": 1}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "t1", "position": -12.5e-3, "name": "", "description": "d"}, {"id": "t2", "position": 01}]}}, "timestamp": 1}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "t1", "position": -, "name": "n"}]}}, "timestamp": 1}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "t1", "position": 7, "name": "unterminated}]}}, "timestamp": 1}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "t1", "position": 1e3, "name": "caf\u00e9 \"q\" \\ \/ \b\f\n\r\t \ud83d\ude00 \ud800 x\u0000y"}]}}, "timestamp": 1}`,
	"{\"changes\": {\"mock_tasks\": {\"created\": [{\"id\": \"t1\", \"name\": \"bad \xff utf8 \xe2\x82\", \"description\": \"ok é ü 日本\"}]}}, \"timestamp\": 1}",
	`{"changes": {"mock_tasks": {"created": [{"id": "t1", "position": 123456789012345678901234567890}, {"id": "t2", "position": 0.1}, {"id": "t3", "position": -12.5e-3}, {"id": "t4", "position": 999999999999999}, {"id": "t5", "position": -9007199254740993}]}}, "timestamp": 1}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "t1", "position": 1e400}]}}, "timestamp": 1}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "t1", "position": 01}]}}, "timestamp": 1}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "t1", "position": 1.}]}}, "timestamp": 1}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "t1", "position": -}]}}, "timestamp": 1}`,
	`{"changes": {"future": {"created": [{"id": "f", "x": {"deep": [[[]]]}}]}, "mock_comments": null, "mock_tasks": {"created": null, "updated": [], "deleted": ["a", "b"], "other": {"x": 1}}}, "timestamp": 1.0, "hello": [1, "two"], "experimentalStrategy": "replacement"}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "a"}], "updated": [{"id": "a"}]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "a"}, {"id": "b", "_status": "created"}]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "a", "_changed": null}]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"created": [{"id": 5}]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "bad id!"}]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"created": [{"name": "no id"}]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"created": [null]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"created": [5]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"created": {"id": "a"}}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"deleted": [""]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"deleted": [5]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": 5}, "timestamp": 5}`,
	`{"changes": [], "timestamp": 5}`,
	`{"changes": null, "timestamp": 5}`,
	`{"timestamp": 5}`,
	`[]`,
	`{"changes": {"mock_tasks": {"created": [{"id": "a"} {"id": "b"}]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "a",}]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "a"}]}}, "timestamp": 5`,
	`{"changes": {"mock_tasks": {"created": [{"id": "a"`,
	`{"changes": {"mock_tasks": {"created": [{"id": "a", "name": "tab	in string"}]}}, "timestamp": 5}`,
	`{"changes": {"mock_tasks": {"created": [{"id": "a", "is_completed": tru}]}}, "timestamp": 5}`,
	`{"changes": {}, "timestamp": "5"}`,
	`{"changes": {}, "timestamp": 5.5}`,
	`{"changes": {}, "timestamp": null, "experimentalStrategy": {"default": "replacement", "override": {"mock_tasks": "incremental"}}}`,
	`{"changes": {}, "timestamp": 5, "experimentalStrategy": 7}`,
	` {"changes" : { "mock_projects" : { "created" : [ { "id" : "p" , "name" : "sp" } ] } } , "timestamp" : 5 } `,
}

func TestTurboDecoderMatchesReference(t *testing.T) {
	for i, body := range turboCorpus {
		t.Run(fmt.Sprint(i), func(t *testing.T) { compareTurbo(t, body) })
	}
}

// A stream long enough for several batches of each table, one table after another
// and back, and a duplicate id far from its first occurrence.
func TestTurboDecoderBatches(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"changes": {`)
	for round, table := range []string{"mock_projects", "mock_tasks", "mock_projects"} {
		if round > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `%q: {"created": [`, table)
		for i := 0; i < 777; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, `{"id": "r%d_%d", "name": "n%d", "position": %d, "is_completed": %v}`, round, i, i, i, i%2 == 0)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`}, "timestamp": 9}`)
	compareTurbo(t, b.String())
	dup := strings.Replace(b.String(), `"r2_700"`, `"r0_3"`, 1)
	compareTurbo(t, dup)
}

func FuzzTurboDecoder(f *testing.F) {
	for _, body := range turboCorpus {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body string) { compareTurbo(t, body) })
}

// The streamed first sync drops the secondary indexes for its load and builds each
// table's again once the stream moves on to another table (the rest at the end): the
// file ends with WatermelonDB's layout, and the indexes hold every row, also those of
// a table the stream comes back to after its indexes were built.
func TestTurboKeepsLayoutAndIndexes(t *testing.T) {
	db := ldbOpen(t, testutil.TodoSchema(t))
	path := db.Path()
	before := ldbMaster(t, ldbRawSQL(t, path))
	var b strings.Builder
	b.WriteString(`{"changes": {`)
	section := func(table string, from, to int, rec func(i int) string) {
		if from > 0 || table != "tasks" {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `%q: {"created": [`, table)
		for i := from; i < to; i++ {
			if i > from {
				b.WriteString(",")
			}
			b.WriteString(rec(i))
		}
		b.WriteString(`]}`)
	}
	task := func(i int) string {
		return fmt.Sprintf(`{"id": "t%d", "name": "task %d", "project_id": "p%d"}`, i, i, i%7)
	}
	section("tasks", 0, 1500, task)
	section("comments", 0, 900, func(i int) string { return fmt.Sprintf(`{"id": "c%d", "task_id": "t%d", "body": "b"}`, i, i%5) })
	section("tasks", 1500, 1800, task) // back to tasks, whose indexes are built by now
	b.WriteString(`}, "timestamp": 10}`)
	if err := Synchronize(context.Background(), db, SyncOptions{UnsafeTurbo: true, PullChanges: stBody(b.String())}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	d := ldbRawSQL(t, path)
	if after := ldbMaster(t, d); !reflect.DeepEqual(before, after) {
		t.Errorf("sqlite_master after the load:\n%v\nbefore:\n%v", after, before)
	}
	var ok string
	if err := d.QueryRow(`pragma integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Errorf("integrity_check: %q, %v", ok, err)
	}
	for q, want := range map[string]int{
		`select count(*) from "tasks" indexed by "tasks_project_id" where "project_id" = 'p3'`:     257,
		`select count(*) from "tasks" indexed by "tasks__status" where "_status" = 'synced'`:       1800,
		`select count(*) from "comments" indexed by "comments_task_id" where "task_id" = 't4'`:     180,
		`select count(*) from "comments" indexed by "comments__status" where "_status" = 'synced'`: 900,
		`select count(*) from "projects" indexed by "projects__status" where "_status" = 'synced'`: 0,
	} {
		var n int
		if err := d.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s: %d, want %d", q, n, want)
		}
	}
}
