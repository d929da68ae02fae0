package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) server.Store { return openTestStore(t) })
}

// TestInsertRace: two pushes both find an id absent; the one that writes second must
// not overwrite the first (which may be another user's record): its write fails, it
// runs again (seeing the record now), and the first record stays as it was.
func TestInsertRace(t *testing.T) {
	s := openTestStore(t)
	h := storetest.NewHarness(t, s)
	tasks := h.Schema.Table("tasks")
	ctx := context.Background()
	values := func(name string) []any {
		v := make([]any, len(tasks.Columns))
		for i, c := range tasks.Columns {
			v[i] = c.Default()
			if c.Name == "name" {
				v[i] = name
			}
		}
		return v
	}
	firstLooked, secondLooked := make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- s.Write(ctx, func(tx server.WriteTx) error {
			m, err := tx.Lookup(tasks, []string{"x"})
			if err != nil || len(m) != 0 {
				return fmt.Errorf("lookup: %v %v", m, err)
			}
			close(firstLooked)
			<-secondLooked
			return tx.Apply(tasks, []server.Op{{Kind: server.OpInsert, ID: "x", Values: values("alice's"), Owner: "alice", Device: "a"}})
		})
	}()
	runs := 0
	err := s.Write(ctx, func(tx server.WriteTx) error {
		runs++
		<-firstLooked
		m, err := tx.Lookup(tasks, []string{"x"})
		if err != nil {
			return err
		}
		if runs > 1 {
			// Run again, the transaction sees alice's record: the service's checks
			// would refuse bob's push now, as this does.
			if m["x"].Owner != "alice" {
				return fmt.Errorf("second run: lookup %v", m)
			}
			return melonsync.ConflictError(map[string][]string{"tasks": {"x"}})
		}
		if len(m) != 0 {
			return fmt.Errorf("lookup: %v", m)
		}
		close(secondLooked)
		if err := <-firstDone; err != nil {
			t.Errorf("first write: %v", err)
		}
		return tx.Apply(tasks, []server.Op{{Kind: server.OpInsert, ID: "x", Values: values("bob's"), Owner: "bob", Device: "b"}})
	})
	if melonsync.ErrorCode(err) != melonsync.EConflict || runs != 2 {
		t.Fatalf("second insert of the same id: want conflict after a second run, got %v after %d runs", err, runs)
	}
	r := h.PullFrom("alice", "z", 0)
	if c := r.Changes["tasks"]; c == nil || len(c.Created) != 1 || c.Created[0]["name"] != "alice's" {
		t.Errorf("alice's record = %v", c)
	}
	if c := h.PullFrom("bob", "z", 0).Changes["tasks"]; c != nil && len(c.Created) != 0 {
		t.Errorf("bob got %v", c.Created)
	}
}

// TestInsertRaceWithDelete: a push finds an id absent, and before it writes, another
// creates and deletes that id (leaving a tombstone). The push must not bring the
// record back over a deletion it never saw: its write fails, it runs again (seeing
// the tombstone now), and nothing of the first run is written.
func TestInsertRaceWithDelete(t *testing.T) {
	s := openTestStore(t)
	h := storetest.NewHarness(t, s)
	tasks := h.Schema.Table("tasks")
	ctx := context.Background()
	values := make([]any, len(tasks.Columns))
	for i, c := range tasks.Columns {
		values[i] = c.Default()
	}
	runs := 0
	err := s.Write(ctx, func(tx server.WriteTx) error {
		runs++
		m, err := tx.Lookup(tasks, []string{"y", "z"})
		if err != nil {
			return err
		}
		if runs > 1 {
			// Run again, the transaction sees the deletion: a push that did not
			// see it is a conflict (SPEC §3 push rule 4), as the service would say.
			if !m["y"].Deleted {
				return fmt.Errorf("second run: lookup %v", m)
			}
			return melonsync.ConflictError(map[string][]string{"tasks": {"y"}})
		}
		if len(m) != 0 {
			return fmt.Errorf("lookup: %v", m)
		}
		if _, err := h.Push("alice", "other", 0, `{"tasks":{"created":[{"id":"y","name":"meanwhile"}]}}`); err != nil {
			return err
		}
		if _, err := h.Push("alice", "other", 0, `{"tasks":{"deleted":["y"]}}`); err != nil {
			return err
		}
		return tx.Apply(tasks, []server.Op{
			{Kind: server.OpInsert, ID: "y", Values: values, Owner: "alice", Device: "a"},
			{Kind: server.OpInsert, ID: "z", Values: values, Owner: "alice", Device: "a"},
		})
	})
	var me *melonsync.Error
	if !errors.As(err, &me) || me.Code != melonsync.EConflict || fmt.Sprint(me.Details) != "map[conflicts:map[tasks:[y]]]" || runs != 2 {
		t.Fatalf("insert over a tombstone that appeared after Lookup: want a conflict on tasks/y after a second run, got %v (%v) after %d runs", err, me, runs)
	}
	r := h.PullFrom("alice", "w", 0)
	if c := r.Changes["tasks"]; c != nil && len(c.Created) != 0 {
		t.Errorf("the failed push wrote %v", c.Created)
	}
}

// TestLookupLocks: a row returned by Lookup cannot change until the transaction ends;
// a second Lookup of it waits and then sees the new version.
func TestLookupLocks(t *testing.T) {
	s := openTestStore(t)
	h := storetest.NewHarness(t, s)
	tasks := h.Schema.Table("tasks")
	ctx := context.Background()
	t0 := h.PullFrom("alice", "a", 0).Timestamp
	h.MustPush("alice", "a", t0, `{"tasks":{"created":[{"id":"x","name":"v1"}]}}`)
	looked := make(chan struct{})
	var written int64
	done := make(chan error, 1)
	go func() {
		done <- s.Write(ctx, func(tx server.WriteTx) error {
			if _, err := tx.Lookup(tasks, []string{"x"}); err != nil {
				return err
			}
			close(looked)
			time.Sleep(300 * time.Millisecond) // the other Lookup waits meanwhile
			set := make([]bool, len(tasks.Columns))
			vals := make([]any, len(tasks.Columns))
			var err error
			written, err = tx.Version()
			if err != nil {
				return err
			}
			return tx.Apply(tasks, []server.Op{{Kind: server.OpUpdate, ID: "x", Values: vals, Set: set, Device: "b"}})
		})
	}()
	<-looked
	var seen server.Meta
	start := time.Now()
	err := s.Write(ctx, func(tx server.WriteTx) error {
		m, err := tx.Lookup(tasks, []string{"x"})
		seen = m["x"]
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if seen.Version != written || seen.Device != "b" {
		t.Errorf("second Lookup saw version %d device %q, want %d \"b\" (waited %v)", seen.Version, seen.Device, written, time.Since(start))
	}
}

// TestUnreachable: a database that does not answer gives errors wrapping
// melonsync.ErrUnavailable (503), not internal ones.
func TestUnreachable(t *testing.T) {
	testDSN(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = postgres.Open(ctx, "postgres://melonsync@"+addr+"/none?sslmode=disable&connect_timeout=2")
	if !errors.Is(err, melonsync.ErrUnavailable) {
		t.Fatalf("open of an unreachable database: %v (want ErrUnavailable)", err)
	}
}
