package client

import (
	"fmt"
	"testing"
	"time"
)

// TestLargeTransactionsAreSummarized: an event lists up to MaxEventChanges changes one
// by one; a larger transaction is reported per table, type and origin, so that a big
// sync's memory does not grow with its records.
func TestLargeTransactionsAreSummarized(t *testing.T) {
	db := ldbOpen(t)
	events := make(chan ChangeEvent, 4)
	unsubscribe := db.Subscribe(nil, func(e ChangeEvent) { events <- e })
	defer unsubscribe()
	next := func() ChangeEvent {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return ChangeEvent{}
	}

	ldbWrite(t, db, func(tx *Tx) error {
		for i := 0; i < 3; i++ {
			if _, err := tx.Create("mock_tasks", map[string]any{"name": "x"}); err != nil {
				return err
			}
		}
		return nil
	})
	if e := next(); e.Summarized || len(e.Changes) != 3 || e.Changes[0].ID == "" || !e.HasLocalChanges() {
		t.Fatalf("small transaction: %+v", e)
	}

	ldbWrite(t, db, func(tx *Tx) error {
		for i := 0; i < MaxEventChanges+5; i++ {
			if err := tx.InsertSynced("mock_projects", map[string]any{"id": fmt.Sprintf("p%d", i)}); err != nil {
				return err
			}
		}
		_, err := tx.Create("mock_tasks", map[string]any{"name": "local"})
		return err
	})
	e := next()
	if !e.Summarized || len(e.Changes) != 2 {
		t.Fatalf("large transaction: summarized %v, %d changes: %+v", e.Summarized, len(e.Changes), e.Changes)
	}
	want := []RecordChange{
		{Table: "mock_projects", Type: ChangeCreated, FromSync: true},
		{Table: "mock_tasks", Type: ChangeCreated, FromSync: false},
	}
	for i, c := range e.Changes {
		if c != want[i] {
			t.Errorf("change %d: %+v, want %+v", i, c, want[i])
		}
	}
	if !e.HasLocalChanges() || len(e.Tables()) != 2 {
		t.Errorf("HasLocalChanges %v, tables %v", e.HasLocalChanges(), e.Tables())
	}
}
