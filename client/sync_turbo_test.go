package client

// WatermelonDB's synchronize-turbo.test.js, for our streamed first sync: the pull's
// raw answer is decoded token by token straight into the database.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/melonsync/melonsync"
)

func stBody(s string) PullFunc {
	return func(context.Context, PullArgs) (*PullResult, error) {
		return &PullResult{Body: io.NopCloser(strings.NewReader(s))}, nil
	}
}

func TestTurboValidatesSettings(t *testing.T) {
	db := ldbOpen(t)
	err := Synchronize(context.Background(), db, SyncOptions{UnsafeTurbo: true, PullChanges: stEmptyPull(1500).Pull})
	if !errors.Is(err, ErrProgrammer) || !strings.Contains(err.Error(), "PullResult.Body") {
		t.Errorf("decoded changes in turbo: %v", err)
	}
	if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(1500).Pull}); err != nil {
		t.Fatal(err)
	}
	pulled := false
	err = Synchronize(context.Background(), db, SyncOptions{UnsafeTurbo: true, PullChanges: func(ctx context.Context, a PullArgs) (*PullResult, error) {
		pulled = true
		return stBody(`{"changes": {}, "timestamp": 2000}`)(ctx, a)
	}})
	if !errors.Is(err, ErrProgrammer) || !strings.Contains(err.Error(), "unsafeTurbo can only be used as the first sync") || pulled {
		t.Errorf("turbo after a sync: %v (pulled %v)", err, pulled)
	}

	// Not empty: a record created before the first sync.
	db2 := ldbOpen(t)
	ldbWrite(t, db2, func(tx *Tx) error { _, err := tx.Create("mock_projects", nil); return err })
	err = Synchronize(context.Background(), db2, SyncOptions{UnsafeTurbo: true, PullChanges: stBody(`{"changes": {}, "timestamp": 2000}`)})
	if !errors.Is(err, ErrProgrammer) || !strings.Contains(err.Error(), "empty database") {
		t.Errorf("turbo on a database with records: %v", err)
	}
	if ok, err := TurboEligible(context.Background(), db2); ok || err != nil {
		t.Errorf("TurboEligible = %v, %v on a database with records", ok, err)
	}
	if ok, err := TurboEligible(context.Background(), ldbOpen(t)); !ok || err != nil {
		t.Errorf("TurboEligible = %v, %v on a new database", ok, err)
	}
}

func TestTurboPull(t *testing.T) {
	for _, order := range []string{"timestamp last", "timestamp first"} {
		t.Run(order, func(t *testing.T) {
			db := ldbOpen(t)
			changes := `"changes": {
				"mock_projects": {"created": [{"id": "p1", "name": "one"}, {"id": "p2", "name": "two", "unknown_column": 5}], "updated": [], "deleted": []},
				"future_table": {"created": [{"id": "f1", "nested": {"a": [1, 2, {"b": null}]}}], "updated": [], "deleted": []},
				"mock_tasks": {"created": [], "updated": [{"id": "t1", "name": "task", "position": 3, "is_completed": true}], "deleted": ["gone"]},
				"mock_comments": null
			}`
			body := `{` + changes + `, "timestamp": 1011, "hello": "hi", "experimentalStrategy": null}`
			if order == "timestamp first" {
				body = `{"timestamp": 1011, "hello": "hi", ` + changes + `}`
			}
			var args PullArgs
			var will []int
			var did []PulledInfo
			log := &SyncLog{}
			err := Synchronize(context.Background(), db, SyncOptions{
				UnsafeTurbo: true,
				Log:         log,
				PullChanges: func(ctx context.Context, a PullArgs) (*PullResult, error) {
					args = a
					return stBody(body)(ctx, a)
				},
				OnWillApplyRemoteChanges: func(_ context.Context, i RemoteChangeInfo) error {
					will = append(will, i.RemoteChangeCount)
					return nil
				},
				OnDidPullChanges: func(_ context.Context, i PulledInfo) error { did = append(did, i); return nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			if !args.Turbo || args.LastPulledAt != nil {
				t.Errorf("pull args %+v", args)
			}
			if v := stLastPulledAt(t, db); v == nil || *v != 1011 {
				t.Errorf("lastPulledAt %v", v)
			}
			if log.LastPulledAt != nil || log.NewLastPulledAt == nil || *log.NewLastPulledAt != 1011 || !log.Turbo || log.RemoteChangeCount != 3 {
				t.Errorf("log %+v", log.Snapshot())
			}
			if len(will) != 1 || will[0] != -1 {
				t.Errorf("onWillApplyRemoteChanges got %v, want [-1]", will)
			}
			if len(did) != 1 || did[0].Timestamp != 1011 || string(did[0].Extra["hello"]) != `"hi"` || did[0].Records != 3 {
				t.Errorf("onDidPullChanges got %+v", did)
			}
			ldbExpectMatches(t, db, "mock_projects", "p1", map[string]any{"name": "one"})
			ldbExpectMatches(t, db, "mock_projects", "p2", map[string]any{"name": "two"})
			ldbExpectMatches(t, db, "mock_tasks", "t1", map[string]any{"name": "task", "position": 3.0, "is_completed": true})
			if _, ok := ldbGetRaw(t, db, "mock_projects", "p2")["unknown_column"]; ok {
				t.Error("unknown column stored")
			}
			if v, _ := stGetLocal(t, db, melonsync.KeyLastPulledSchemaVersion); v != "1" {
				t.Errorf("schema version %q not noted", v)
			}
			stExpectNoLocalChanges(t, db)
		})
	}
}

// stStream generates a pull answer with n task records, written as it is read.
func stStream(n int, ts int64, tail string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriter(pw)
		fmt.Fprint(w, `{"changes": {"mock_tasks": {"created": [`)
		for i := 0; i < n; i++ {
			if i > 0 {
				w.WriteByte(',')
			}
			fmt.Fprintf(w, `{"id": "t%07d", "name": "Task number %d with a few words", "position": %d, "is_completed": %v, "description": null, "project_id": "p%d", "project_section_id": null}`, i, i, i, i%2 == 0, i%100)
		}
		fmt.Fprintf(w, `], "updated": [], "deleted": []}}%s`, tail)
		if ts != 0 {
			fmt.Fprintf(w, `, "timestamp": %d}`, ts)
		}
		w.Flush()
		pw.Close()
	}()
	return pr
}

func TestTurboFailuresKeepNothing(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		body func() io.ReadCloser
		want error
	}{
		{"cut short", func() io.ReadCloser { return stStream(3000, 0, "") }, ErrNetwork},
		{"no timestamp", func() io.ReadCloser {
			return io.NopCloser(strings.NewReader(`{"changes": {"mock_tasks": {"created": [{"id": "a"}]}}}`))
		}, ErrInvalidData},
		{"bad record", func() io.ReadCloser {
			return io.NopCloser(strings.NewReader(`{"changes": {"mock_tasks": {"created": [{"id": "a"}, {"id": "b", "_status": "created"}]}}, "timestamp": 5}`))
		}, ErrInvalidData},
		{"duplicate id", func() io.ReadCloser {
			return io.NopCloser(strings.NewReader(`{"changes": {"mock_tasks": {"created": [{"id": "a"}], "updated": [{"id": "a"}]}}, "timestamp": 5}`))
		}, ErrExists},
		{"malformed", func() io.ReadCloser {
			return io.NopCloser(strings.NewReader(`{"changes": {"mock_tasks": {"created": [{"id": "a"} {"id": "b"}]}}, "timestamp": 5}`))
		}, ErrInvalidData},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := ldbOpen(t)
			err := Synchronize(ctx, db, SyncOptions{UnsafeTurbo: true, PullChanges: func(context.Context, PullArgs) (*PullResult, error) {
				return &PullResult{Body: tc.body()}, nil
			}})
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if n := stCountAll(t, db); n != 0 {
				t.Errorf("%d records kept", n)
			}
			if v := stLastPulledAt(t, db); v != nil {
				t.Errorf("lastPulledAt %d kept", *v)
			}
			// And the next turbo sync works.
			err = Synchronize(ctx, db, SyncOptions{UnsafeTurbo: true, PullChanges: func(context.Context, PullArgs) (*PullResult, error) {
				return &PullResult{Body: stStream(10, 77, "")}, nil
			}})
			if err != nil || stCountAll(t, db) != 10 {
				t.Errorf("the repairing sync: %v, %d records", err, stCountAll(t, db))
			}
		})
	}
}

func TestTurboCancelledMidStream(t *testing.T) {
	db := ldbOpen(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := Synchronize(ctx, db, SyncOptions{
		UnsafeTurbo: true,
		PullChanges: func(context.Context, PullArgs) (*PullResult, error) {
			return &PullResult{Body: stStream(20000, 99, "")}, nil
		},
		OnProgress: func(p Progress) {
			if p.Records >= 2000 {
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	if n := stCountAll(t, db); n != 0 {
		t.Errorf("%d records kept", n)
	}
	if ok, _ := TurboEligible(context.Background(), db); !ok {
		t.Error("the database is no longer eligible for a turbo first sync")
	}
}

func TestTurboLargeStream(t *testing.T) {
	db := ldbOpen(t)
	const n = 20000
	var progress []int
	err := Synchronize(context.Background(), db, SyncOptions{
		UnsafeTurbo: true,
		PullChanges: func(context.Context, PullArgs) (*PullResult, error) {
			return &PullResult{Body: stStream(n, 123, "")}, nil
		},
		OnProgress: func(p Progress) { progress = append(progress, p.Records) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := stCountAll(t, db); c != n {
		t.Errorf("%d records, want %d", c, n)
	}
	if len(progress) != n/1000 || progress[len(progress)-1] != n {
		t.Errorf("progress reports %v", progress)
	}
	ldbExpectMatches(t, db, "mock_tasks", "t0012345", map[string]any{"position": 12345.0, "is_completed": false, "project_id": "p45"})
}
