package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
)

// TestWriteRetriesDeadlockVictim: two transactions lock two rows in opposite orders;
// PostgreSQL aborts one of them to break the deadlock, and Write runs that one again,
// so both succeed.
func TestWriteRetriesDeadlockVictim(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	sch := storetest.TodoSchema(t)
	if err := s.Prepare(ctx, sch); err != nil {
		t.Fatal(err)
	}
	tasks := sch.Table("tasks")
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
	err := s.Write(ctx, func(tx server.WriteTx) error {
		if _, err := tx.Version(); err != nil {
			return err
		}
		return tx.Apply(tasks, []server.Op{
			{Kind: server.OpInsert, ID: "a", Values: values("a"), Owner: "u"},
			{Kind: server.OpInsert, ID: "b", Values: values("b"), Owner: "u"},
		})
	})
	if err != nil {
		t.Fatal(err)
	}

	var attempts atomic.Int32
	var bothLocked sync.WaitGroup
	bothLocked.Add(2)
	write := func(first, second, name string) error {
		tries := 0
		return s.Write(ctx, func(tx server.WriteTx) error {
			attempts.Add(1)
			tries++
			if _, err := tx.Lookup(tasks, []string{first}); err != nil {
				return err
			}
			if tries == 1 {
				// Wait until the other transaction holds its first row too.
				bothLocked.Done()
				waitGroup(&bothLocked, 10*time.Second)
			}
			if _, err := tx.Lookup(tasks, []string{second}); err != nil {
				return err
			}
			if _, err := tx.Version(); err != nil {
				return err
			}
			set := make([]bool, len(tasks.Columns))
			for i, c := range tasks.Columns {
				set[i] = c.Name == "name"
			}
			return tx.Apply(tasks, []server.Op{
				{Kind: server.OpUpdate, ID: first, Values: values(name), Set: set},
				{Kind: server.OpUpdate, ID: second, Values: values(name), Set: set},
			})
		})
	}
	errs := make(chan error, 2)
	go func() { errs <- write("a", "b", "one") }()
	go func() { errs <- write("b", "a", "two") }()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("a write failed: %v", err)
		}
	}
	if n := attempts.Load(); n < 3 {
		t.Fatalf("%d attempts: no transaction was a deadlock victim, the test proved nothing", n)
	}
	// Both rows hold the value of the transaction that committed last.
	names := map[string]any{}
	err = s.Read(ctx, func(tx server.ReadTx) error {
		return tx.Scan(tasks, tasks.Columns, server.Filter{Owner: "u"}, func(r *server.Row) error {
			for i, c := range tasks.Columns {
				if c.Name == "name" {
					names[r.ID] = r.Values[i]
				}
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if names["a"] != names["b"] || (names["a"] != "one" && names["a"] != "two") {
		t.Errorf("rows after both writes: %v", names)
	}
}

func waitGroup(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}
