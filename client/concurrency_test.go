package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/melonsync/melonsync"
)

func ldbWaitEvent(t *testing.T, ch <-chan ChangeEvent) ChangeEvent {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no change event")
	}
	return ChangeEvent{}
}

func ldbNoEvent(t *testing.T, ch <-chan ChangeEvent) {
	t.Helper()
	select {
	case e := <-ch:
		t.Fatalf("unexpected event %+v", e)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestNotifications(t *testing.T) {
	db := ldbOpen(t)
	all := make(chan ChangeEvent, 100)
	tasks := make(chan ChangeEvent, 100)
	defer db.Subscribe(nil, func(e ChangeEvent) { all <- e })()
	unsubTasks := db.Subscribe([]string{"mock_tasks"}, func(e ChangeEvent) { tasks <- e })

	ldbWrite(t, db, func(tx *Tx) error {
		_, err1 := tx.Create("mock_projects", map[string]any{"id": "p"})
		_, err2 := tx.Create("mock_tasks", map[string]any{"id": "t"})
		return errors.Join(err1, err2, tx.Update("mock_tasks", "t", map[string]any{"name": "x"}), tx.MarkAsDeleted("mock_projects", "p"))
	})
	e := ldbWaitEvent(t, all)
	want := []RecordChange{
		{Table: "mock_projects", ID: "p", Type: ChangeCreated},
		{Table: "mock_tasks", ID: "t", Type: ChangeCreated},
		{Table: "mock_tasks", ID: "t", Type: ChangeUpdated},
		{Table: "mock_projects", ID: "p", Type: ChangeDeleted},
	}
	if diff := cmp.Diff(want, e.Changes); diff != "" {
		t.Errorf("all tables (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"mock_projects", "mock_tasks"}, e.Tables()); diff != "" || !e.HasLocalChanges() {
		t.Errorf("Tables %v / HasLocalChanges %v", e.Tables(), e.HasLocalChanges())
	}
	e = ldbWaitEvent(t, tasks)
	if diff := cmp.Diff(want[1:3], e.Changes); diff != "" {
		t.Errorf("tasks only (-want +got):\n%s", diff)
	}

	// only projects: the tasks subscriber hears nothing
	ldbWrite(t, db, func(tx *Tx) error { return tx.DestroyPermanently("mock_projects", "p") })
	ldbWaitEvent(t, all)
	ldbNoEvent(t, tasks)

	// a rolled back transaction and local storage notify nobody
	db.Write(context.Background(), func(tx *Tx) error {
		tx.Create("mock_tasks", nil)
		return errors.New("no")
	})
	ldbWrite(t, db, func(tx *Tx) error { return tx.SetLocal("a", "b") })
	ldbNoEvent(t, all)

	// sync changes are flagged
	ldbWrite(t, db, func(tx *Tx) error {
		return tx.ApplyRemoteChanges(melonsync.Changes{"mock_tasks": {Created: []melonsync.RawRecord{{"id": "r"}}, Deleted: []string{"t"}}}, ApplyOptions{})
	})
	e = ldbWaitEvent(t, tasks)
	want = []RecordChange{{Table: "mock_tasks", ID: "r", Type: ChangeCreated, FromSync: true}, {Table: "mock_tasks", ID: "t", Type: ChangeDeleted, FromSync: true}}
	if diff := cmp.Diff(want, e.Changes); diff != "" || e.HasLocalChanges() {
		t.Errorf("sync event (-want +got):\n%s", diff)
	}
	ldbWaitEvent(t, all)

	unsubTasks()
	unsubTasks() // twice is fine
	ldbWrite(t, db, func(tx *Tx) error { _, err := tx.Create("mock_tasks", nil); return err })
	ldbWaitEvent(t, all)
	ldbNoEvent(t, tasks)
}

func TestNotificationsComeAfterCommitInOrder(t *testing.T) {
	db := ldbOpen(t)
	const n = 50
	var got []string
	var mu sync.Mutex
	done := make(chan struct{})
	var bad atomic.Value
	defer db.Subscribe([]string{"mock_projects"}, func(e ChangeEvent) {
		id := e.Changes[0].ID
		// the change is visible to readers when we hear of it; and we may write
		err := db.Read(context.Background(), func(tx *Tx) error { _, err := tx.Find("mock_projects", id); return err })
		if err != nil {
			bad.Store(err)
		}
		if err := db.Write(context.Background(), func(tx *Tx) error { return tx.SetLocal("seen", id) }); err != nil {
			bad.Store(err)
		}
		mu.Lock()
		got = append(got, id)
		if len(got) == n {
			close(done)
		}
		mu.Unlock()
	})()
	var want []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("p%03d", i)
		want = append(want, id)
		ldbWrite(t, db, func(tx *Tx) error { _, err := tx.Create("mock_projects", map[string]any{"id": id}); return err })
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("events missing")
	}
	if err, _ := bad.Load().(error); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	db := ldbOpen(t)
	ctx := context.Background()
	const writers, writes = 8, 25
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 100)
	// readers: every write creates a project and a task together, so any snapshot has
	// as many of each
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := db.Read(ctx, func(tx *Tx) error {
					p, err := tx.Count("mock_projects", Query{})
					if err != nil {
						return err
					}
					time.Sleep(100 * time.Microsecond)
					k, err := tx.Count("mock_tasks", Query{})
					if err != nil {
						return err
					}
					if p != k {
						return fmt.Errorf("inconsistent snapshot: %d projects, %d tasks", p, k)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var ww sync.WaitGroup
	for w := 0; w < writers; w++ {
		ww.Add(1)
		go func(w int) {
			defer ww.Done()
			for i := 0; i < writes; i++ {
				err := db.Write(ctx, func(tx *Tx) error {
					p, err := tx.Create("mock_projects", nil)
					if err != nil {
						return err
					}
					_, err = tx.Create("mock_tasks", map[string]any{"project_id": p["id"]})
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	ww.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := ldbCountAll(t, db, "mock_projects", "mock_tasks"); n != 2*writers*writes {
		t.Errorf("%d records, want %d", n, 2*writers*writes)
	}
}

func TestReadsAreNotBlockedByAWrite(t *testing.T) {
	db := ldbOpen(t)
	ctx := context.Background()
	ldbWrite(t, db, func(tx *Tx) error { _, err := tx.Create("mock_projects", map[string]any{"id": "old"}); return err })
	inside := make(chan struct{})
	release := make(chan struct{})
	writeDone := make(chan error)
	go func() {
		writeDone <- db.Write(ctx, func(tx *Tx) error {
			if _, err := tx.Create("mock_projects", map[string]any{"id": "new"}); err != nil {
				return err
			}
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	readDone := make(chan error)
	go func() {
		readDone <- db.Read(ctx, func(tx *Tx) error {
			n, err := tx.Count("mock_projects", Query{})
			if err == nil && n != 1 {
				err = fmt.Errorf("reader sees %d projects (uncommitted data)", n)
			}
			return err
		})
	}()
	select {
	case err := <-readDone:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Error("read blocked by a write")
	}
	// a second writer waits its turn, or gives up with its context
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := db.Write(short, func(tx *Tx) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second writer: %v", err)
	}
	close(release)
	if err := <-writeDone; err != nil {
		t.Fatal(err)
	}
	if n := ldbCountAll(t, db, "mock_projects"); n != 2 {
		t.Errorf("%d projects", n)
	}
}

func TestCloseIsClean(t *testing.T) {
	db := ldbOpen(t)
	ctx := context.Background()
	inside := make(chan struct{})
	release := make(chan struct{})
	first := make(chan error)
	go func() {
		first <- db.Write(ctx, func(tx *Tx) error {
			close(inside)
			<-release
			_, err := tx.Create("mock_projects", map[string]any{"id": "a"})
			return err
		})
	}()
	<-inside
	waiting := make(chan error)
	go func() { waiting <- db.Write(ctx, func(tx *Tx) error { return nil }) }()
	closed := make(chan error)
	called := make(chan struct{}, 1)
	db.Subscribe(nil, func(ChangeEvent) { called <- struct{}{} })
	time.Sleep(20 * time.Millisecond)
	go func() { closed <- db.Close() }()
	if err := <-waiting; !errors.Is(err, ErrClosed) {
		t.Errorf("waiting writer: %v", err)
	}
	select {
	case <-closed:
		t.Fatal("Close did not wait for the running write")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("running write: %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := db.Write(ctx, func(tx *Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := db.Read(ctx, func(tx *Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if _, err := db.FetchLocalChanges(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("FetchLocalChanges after Close: %v", err)
	}
	// the write that was running when Close came is in the file
	db2, err := Open(db.Path(), ldbMockSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	ldbExpectMatches(t, db2, "mock_projects", "a", map[string]any{"_status": "created"})
}
