package client

import (
	"context"
	"errors"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/melonsync/melonsync"
)

// Change tracking, mirrored from WatermelonDB's Model tests ("Sync status fields") and
// RawRecord's sanitizedRaw.

func TestCreateSetsCreatedStatusAndDefaults(t *testing.T) {
	db := ldbOpen(t)
	var rec Record
	ldbWrite(t, db, func(tx *Tx) (err error) {
		rec, err = tx.Create("mock_tasks", map[string]any{"name": "Initial name"})
		return err
	})
	id, _ := rec["id"].(string)
	if !regexp.MustCompile(`^[0-9a-zA-Z]{16}$`).MatchString(id) {
		t.Errorf("generated id %q is not 16 WatermelonDB id characters", id)
	}
	want := Record{
		"id": id, "_status": "created", "_changed": "",
		"name": "Initial name", "position": 0.0, "is_completed": false,
		"description": nil, "project_id": "", "project_section_id": nil,
	}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("Create returned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, ldbGetRaw(t, db, "mock_tasks", id)); diff != "" {
		t.Errorf("stored record (-want +got):\n%s", diff)
	}
}

func TestCreateSanitizesValues(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		_, err := tx.Create("mock_tasks", map[string]any{
			"id":           "t1",
			"name":         42,     // wrong type → ""
			"position":     int(7), // Go ints are numbers
			"is_completed": 1,      // 1/0 accepted for booleans
			"description":  false,  // wrong type, optional → nil
			"project_id":   nil,    // nil in a required string → ""
		})
		return err
	})
	want := Record{"id": "t1", "_status": "created", "_changed": "", "name": "", "position": 7.0,
		"is_completed": true, "description": nil, "project_id": "", "project_section_id": nil}
	if diff := cmp.Diff(want, ldbGetRaw(t, db, "mock_tasks", "t1")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestCreateRejectsBadInput(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error { _, err := tx.Create("mock_projects", map[string]any{"id": "p1"}); return err })
	cases := []struct {
		name   string
		table  string
		values map[string]any
		want   error
	}{
		{"unknown table", "nope", nil, ErrInvalid},
		{"unknown column", "mock_projects", map[string]any{"nmae": "x"}, ErrInvalid},
		{"_status given", "mock_projects", map[string]any{"_status": "synced"}, ErrInvalid},
		{"_changed given", "mock_projects", map[string]any{"_changed": ""}, ErrInvalid},
		{"bad id", "mock_projects", map[string]any{"id": "a b"}, ErrInvalid},
		{"id too long", "mock_projects", map[string]any{"id": string(make([]byte, 65))}, ErrInvalid},
		{"numeric id", "mock_projects", map[string]any{"id": 12}, ErrInvalid},
		{"existing id", "mock_projects", map[string]any{"id": "p1"}, ErrExists},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := db.Write(context.Background(), func(tx *Tx) error {
				_, err := tx.Create(c.table, c.values)
				return err
			})
			if !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
	if n := ldbCountAll(t, db, "mock_projects"); n != 1 {
		t.Errorf("%d projects, want 1", n)
	}
}

func TestUpdateTracksChangedColumns(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		if _, err := tx.Create("mock_tasks", map[string]any{"id": "created", "name": "a"}); err != nil {
			return err
		}
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "synced", "name": "a"})
		return nil
	})
	update := func(id string, v map[string]any) {
		t.Helper()
		ldbWrite(t, db, func(tx *Tx) error { return tx.Update("mock_tasks", id, v) })
	}

	// created record: stays created, _changed accumulates (as of WatermelonDB v23)
	update("created", map[string]any{"position": 3, "name": "b"})
	update("created", map[string]any{"name": "c", "description": "d"})
	ldbExpectMatches(t, db, "mock_tasks", "created", map[string]any{
		"_status": "created", "_changed": "name,position,description", "name": "c", "position": 3.0, "description": "d"})

	// synced record: becomes updated
	update("synced", map[string]any{"name": "New name"})
	ldbExpectMatches(t, db, "mock_tasks", "synced", map[string]any{"_status": "updated", "_changed": "name", "name": "New name"})
	// updated record: accumulates, no duplicates
	update("synced", map[string]any{"is_completed": true})
	update("synced", map[string]any{"name": "New name 2"})
	ldbExpectMatches(t, db, "mock_tasks", "synced", map[string]any{"_status": "updated", "_changed": "name,is_completed", "name": "New name 2", "is_completed": true})
}

func TestUpdateWithEqualSanitizedValueDoesNotMark(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "t"})
		return nil
	})
	var events []ChangeEvent
	done := make(chan struct{}, 8)
	unsub := db.Subscribe(nil, func(e ChangeEvent) { events = append(events, e); done <- struct{}{} })
	defer unsub()
	// all of these sanitize to the current values ("" / 0 / false / nil)
	ldbWrite(t, db, func(tx *Tx) error {
		return tx.Update("mock_tasks", "t", map[string]any{"name": nil, "position": "NaN", "is_completed": 0, "description": 5})
	})
	ldbExpectMatches(t, db, "mock_tasks", "t", map[string]any{"_status": "synced", "_changed": ""})
	ldbWrite(t, db, func(tx *Tx) error {
		return tx.Update("mock_tasks", "t", map[string]any{"name": nil, "project_id": "x"})
	})
	ldbExpectMatches(t, db, "mock_tasks", "t", map[string]any{"_status": "updated", "_changed": "project_id", "project_id": "x"})
	<-done
	if len(events) != 1 {
		t.Errorf("%d change events, want 1 (a no-op update notifies nobody)", len(events))
	}
}

func TestUpdateErrors(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "t"})
		ldbInsert(t, tx, "mock_tasks", map[string]any{"id": "gone"})
		return tx.MarkAsDeleted("mock_tasks", "gone")
	})
	cases := []struct {
		name   string
		id     string
		values map[string]any
		want   error
	}{
		{"missing", "nope", map[string]any{"name": "x"}, ErrNotFound},
		{"deleted", "gone", map[string]any{"name": "x"}, ErrDeleted},
		{"unknown column", "t", map[string]any{"bogus": 1}, ErrInvalid},
		{"reserved", "t", map[string]any{"_status": "synced"}, ErrInvalid},
		{"other id", "t", map[string]any{"id": "u"}, ErrInvalid},
	}
	for _, c := range cases {
		err := db.Write(context.Background(), func(tx *Tx) error { return tx.Update("mock_tasks", c.id, c.values) })
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestMarkAsDeletedInEveryStatus(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		ldbInsert(t, tx, "mock_projects", map[string]any{"id": "synced"})
		ldbInsert(t, tx, "mock_projects", map[string]any{"id": "updated"})
		_, err := tx.Create("mock_projects", map[string]any{"id": "created"})
		if err != nil {
			return err
		}
		return tx.Update("mock_projects", "updated", map[string]any{"name": "x"})
	})
	ldbWrite(t, db, func(tx *Tx) error {
		for _, id := range []string{"synced", "updated", "created"} {
			if err := tx.MarkAsDeleted("mock_projects", id); err != nil {
				return err
			}
		}
		return tx.MarkAsDeleted("mock_projects", "created") // again: no-op
	})
	// WatermelonDB marks every record as deleted, even a never-pushed created one: the
	// deletion is pushed (the server ignores unknown ids), which stays correct when a
	// push of the creation is in flight.
	ldbExpectMatches(t, db, "mock_projects", "synced", map[string]any{"_status": "deleted"})
	ldbExpectMatches(t, db, "mock_projects", "updated", map[string]any{"_status": "deleted", "_changed": "name", "name": "x"})
	ldbExpectMatches(t, db, "mock_projects", "created", map[string]any{"_status": "deleted"})
	if n := ldbCountAll(t, db, "mock_projects"); n != 0 {
		t.Errorf("queries see %d deleted records", n)
	}
	err := db.Write(context.Background(), func(tx *Tx) error { return tx.MarkAsDeleted("mock_projects", "nope") })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("mark missing: %v", err)
	}
}

func TestDestroyPermanently(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		ldbInsert(t, tx, "mock_projects", map[string]any{"id": "a"})
		ldbInsert(t, tx, "mock_projects", map[string]any{"id": "b"})
		return tx.MarkAsDeleted("mock_projects", "b")
	})
	ldbWrite(t, db, func(tx *Tx) error {
		return errors.Join(tx.DestroyPermanently("mock_projects", "a"), tx.DestroyPermanently("mock_projects", "b"))
	})
	ldbExpectMissing(t, db, "mock_projects", "a")
	ldbExpectMissing(t, db, "mock_projects", "b")
	err := db.Write(context.Background(), func(tx *Tx) error { return tx.DestroyPermanently("mock_projects", "a") })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("destroy missing: %v", err)
	}
	if ok, _ := db.HasUnsyncedChanges(context.Background()); ok {
		t.Error("destroying permanently left something to sync")
	}
}

func TestWriteIsAllOrNothing(t *testing.T) {
	db := ldbOpen(t)
	boom := errors.New("boom")
	err := db.Write(context.Background(), func(tx *Tx) error {
		if _, err := tx.Create("mock_projects", map[string]any{"id": "a"}); err != nil {
			return err
		}
		if err := tx.SetLocal("k", "v"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write returned %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic was swallowed")
			}
		}()
		db.Write(context.Background(), func(tx *Tx) error {
			tx.Create("mock_projects", map[string]any{"id": "b"})
			panic("oops")
		})
	}()
	ldbExpectMissing(t, db, "mock_projects", "a")
	ldbExpectMissing(t, db, "mock_projects", "b")
	if _, ok, _ := db.GetLocal(context.Background(), "k"); ok {
		t.Error("local storage write survived a rollback")
	}
	// the database is still usable after a panic
	ldbWrite(t, db, func(tx *Tx) error { _, err := tx.Create("mock_projects", map[string]any{"id": "c"}); return err })
	ldbExpectMatches(t, db, "mock_projects", "c", map[string]any{"_status": "created"})
}

func TestReadTxRefusesWritesAndDoneTxRefusesAll(t *testing.T) {
	db := ldbOpen(t)
	var kept *Tx
	err := db.Read(context.Background(), func(tx *Tx) error {
		kept = tx
		if _, err := tx.Create("mock_projects", nil); !errors.Is(err, ErrReadOnly) {
			t.Errorf("Create in Read: %v", err)
		}
		if err := tx.SetLocal("a", "b"); !errors.Is(err, ErrReadOnly) {
			t.Errorf("SetLocal in Read: %v", err)
		}
		if err := tx.ApplyRemoteChanges(nil, ApplyOptions{}); !errors.Is(err, ErrReadOnly) {
			t.Errorf("ApplyRemoteChanges in Read: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kept.Find("mock_projects", "x"); !errors.Is(err, ErrTxDone) {
		t.Errorf("Find after Read returned: %v", err)
	}
	ldbWrite(t, db, func(tx *Tx) error { kept = tx; return nil })
	if _, err := kept.Create("mock_projects", nil); !errors.Is(err, ErrTxDone) {
		t.Errorf("Create after Write returned: %v", err)
	}
}

func TestFindReturnsDeletedRecords(t *testing.T) {
	db := ldbOpen(t)
	ldbWrite(t, db, func(tx *Tx) error {
		ldbInsert(t, tx, "mock_projects", map[string]any{"id": "p", "name": "n"})
		return tx.MarkAsDeleted("mock_projects", "p")
	})
	ldbExpectMatches(t, db, "mock_projects", "p", map[string]any{"_status": "deleted", "name": "n"})
	if r := ldbGetRaw(t, db, "mock_projects", "nope"); r != nil {
		t.Errorf("found %v", r)
	}
}

func TestNewIDAndValidID(t *testing.T) {
	seen := map[string]bool{}
	re := regexp.MustCompile(`^[0-9a-zA-Z]{16}$`)
	for i := 0; i < 2000; i++ {
		id := NewID()
		if !re.MatchString(id) || !melonsync.ValidID(id) {
			t.Fatalf("bad id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
	for id, ok := range map[string]bool{"a": true, "A-b_c.9": true, "": false, "a/b": false, "é": false, "a b": false,
		"0123456789012345678901234567890123456789012345678901234567890123": true, "01234567890123456789012345678901234567890123456789012345678901234": false} {
		if melonsync.ValidID(id) != ok {
			t.Errorf("melonsync.ValidID(%q) = %v", id, !ok)
		}
	}
}
