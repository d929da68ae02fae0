package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

// batchStore opens a store whose batches take writes for a whole second, so that a
// test's queued writes surely join the batch under way.
func batchStore(t *testing.T) (*sqlite.Store, *storetest.Harness, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.BatchTime = time.Second
	return s, storetest.NewHarness(t, s), path
}

// blocker starts a write that inserts the project id and then waits for release;
// it returns once the write runs, and the write's result comes on the channel.
func blocker(t *testing.T, s *sqlite.Store, h *storetest.Harness, table, id string, release <-chan struct{}) <-chan error {
	t.Helper()
	tbl := h.Schema.Table(table)
	running := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		done <- s.Write(context.Background(), func(tx server.WriteTx) error {
			err := tx.Apply(tbl, []server.Op{{Kind: server.OpInsert, ID: id, Owner: "alice", Values: make([]any, len(tbl.Columns))}})
			once.Do(func() { close(running) })
			<-release
			return err
		})
	}()
	<-running
	return done
}

// queued runs fn in a goroutine and returns its result's channel; it gives the
// goroutine time to queue behind the running write.
func queued(fn func() error) <-chan error {
	c := make(chan error, 1)
	go func() { c <- fn() }()
	time.Sleep(100 * time.Millisecond)
	return c
}

func pulledIDs(h *storetest.Harness, table string) string {
	r := h.PullFrom("alice", "check", 0)
	return strings.Join(storetest.IDs(r.Changes[table].Created), ",")
}

// TestGroupCommit: writes that queue while one runs join its transaction, each in a
// savepoint: a later one sees the earlier one's rows (which no reader sees before
// the commit), one that fails leaves nothing behind and spoils nothing for the
// others, and one whose context ends while it waits is not run.
func TestGroupCommit(t *testing.T) {
	s, h, _ := batchStore(t)
	projects := h.Schema.Table("projects")
	release := make(chan struct{})
	first := blocker(t, s, h, "projects", "blk", release)

	var inTx, outside bool
	errRefused := errors.New("refused by the test")
	failing := queued(func() error {
		return s.Write(context.Background(), func(tx server.WriteTx) error {
			m, err := tx.Lookup(projects, []string{"blk"})
			if err != nil {
				return err
			}
			_, inTx = m["blk"]
			err = s.Read(context.Background(), func(rt server.ReadTx) error {
				return rt.Scan(projects, nil, server.Filter{Any: true, IDs: []string{"blk"}}, func(*server.Row) error {
					outside = true
					return nil
				})
			})
			if err != nil {
				return err
			}
			if err := tx.Apply(projects, []server.Op{{Kind: server.OpInsert, ID: "undone", Owner: "alice", Values: make([]any, len(projects.Columns))}}); err != nil {
				return err
			}
			return errRefused
		})
	})
	pushed := queued(func() error {
		_, err := h.Push("alice", "d2", 0, `{"projects":{"created":[{"id":"p2","name":"P2"}]}}`)
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	late := queued(func() error {
		return s.Write(ctx, func(tx server.WriteTx) error {
			return tx.Apply(projects, []server.Op{{Kind: server.OpInsert, ID: "late", Owner: "alice", Values: make([]any, len(projects.Columns))}})
		})
	})
	cancel()
	if err := <-late; !errors.Is(err, context.Canceled) {
		t.Errorf("a write whose context ended while it waited: %v, want context.Canceled", err)
	}
	close(release)

	if err := <-failing; !errors.Is(err, errRefused) {
		t.Errorf("failing write: %v, want its own error", err)
	}
	// Its failure is told only once the batch it saw committed.
	if got := pulledIDs(h, "projects"); !strings.Contains(got, "blk") {
		t.Errorf("when the failing write was answered, projects were %q: the batch had not committed", got)
	}
	if err := <-first; err != nil {
		t.Fatalf("first write: %v", err)
	}
	if err := <-pushed; err != nil {
		t.Errorf("push: %v", err)
	}
	if !inTx || outside {
		t.Errorf("the queued write saw the first one's row: in its transaction %v (want true), from a reader %v (want false)", inTx, outside)
	}
	if got := pulledIDs(h, "projects"); got != "blk,p2" {
		t.Errorf("projects after the batch: %s, want blk,p2", got)
	}
}

// TestGroupCommitRefusedAtCommit: when the database refuses a batch at COMMIT (a
// deferred foreign key of the app's), each write runs again alone: the one that
// breaks the key is refused, the others commit.
func TestGroupCommitRefusedAtCommit(t *testing.T) {
	s, h, path := batchStore(t)
	app := openApp(t, path)
	exec(t, app, `ALTER TABLE comments ADD COLUMN app_task TEXT REFERENCES tasks (id) DEFERRABLE INITIALLY DEFERRED`)
	exec(t, app, `CREATE TRIGGER app_comment_task AFTER INSERT ON comments BEGIN
		UPDATE comments SET app_task = NEW.task_id WHERE id = NEW.id; END`)
	release := make(chan struct{})
	first := blocker(t, s, h, "tasks", "t0", release)
	good := queued(func() error {
		_, err := h.Push("alice", "a", 0, `{"tasks":{"created":[{"id":"t1","name":"T"}]},"comments":{"created":[{"id":"c1","task_id":"t1"}]}}`)
		return err
	})
	bad := queued(func() error {
		_, err := h.Push("alice", "b", 0, `{"comments":{"created":[{"id":"c2","task_id":"nope"}]}}`)
		return err
	})
	close(release)
	if err := <-first; err != nil {
		t.Errorf("first write: %v", err)
	}
	if err := <-good; err != nil {
		t.Errorf("push that breaks nothing: %v", err)
	}
	if err := <-bad; melonsync.ErrorCode(err) != melonsync.EInvalid {
		t.Errorf("push that breaks the deferred key: %v (code %s), want invalid_request", err, melonsync.ErrorCode(err))
	}
	if got := pulledIDs(h, "tasks") + " " + pulledIDs(h, "comments"); got != "t0,t1 c1" {
		t.Errorf("tasks and comments: %s, want t0,t1 c1", got)
	}
}

// BenchmarkConcurrentPush: 32 concurrent clients of 100 users push 1–3 new records
// each, through server.Service (decoding included, no HTTP), with each push
// committing alone (batch=1) and with group commit (batch=64).
//
//	go test ./sqlite -run '^$' -bench ConcurrentPush -benchtime 5s -count 3
func BenchmarkConcurrentPush(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, err := sqlite.Open(filepath.Join(b.TempDir(), "server.db"))
			if err != nil {
				b.Fatal(err)
			}
			s.MaxBatch = batch
			benchPushes(b, storetest.NewHarness(b, s))
		})
	}
}

func benchPushes(b *testing.B, h *storetest.Harness) {
	const clients, users = 32, 100
	var ids, dev atomic.Int64
	b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		d := dev.Add(1)
		rng := rand.New(rand.NewPCG(uint64(d), 14))
		for pb.Next() {
			recs := make([]string, 1+rng.IntN(3))
			for i := range recs {
				recs[i] = fmt.Sprintf(`{"id":"r%d","name":"project"}`, ids.Add(1))
			}
			user := fmt.Sprintf("u%d", rng.IntN(users))
			if _, err := h.Push(user, fmt.Sprintf("dev%d", d), 0, `{"projects":{"created":[`+strings.Join(recs, ",")+`]}}`); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
}
