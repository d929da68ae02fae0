package client

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
)

// TestSchedulerNoticesWritesOfAnotherProcess: a change written to the file through
// another connection (another process: a WatermelonDB app, a script) is pushed soon,
// not at the next interval; the sync's own writes start no further sync.
func TestSchedulerNoticesWritesOfAnotherProcess(t *testing.T) {
	db := ldbOpen(t)
	other, err := Open(db.path, db.Schema())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	p := &schedPuller{}
	pushes := atomic.Int32{}
	pusher := &stPusher{}
	push := func(ctx context.Context, req melonsync.PushRequest) (*melonsync.PushResponse, error) {
		pushes.Add(1)
		return pusher.Push(ctx, req)
	}
	r := newReports()
	startScheduler(t, db, SchedulerOptions{Sync: SyncOptions{PullChanges: p.Pull, PushChanges: push},
		Interval: time.Hour, Debounce: 100 * time.Millisecond, FilePoll: 50 * time.Millisecond, NoSyncOnStart: true, OnSync: r.onSync})
	ldbWrite(t, other, func(tx *Tx) error {
		_, err := tx.Create("mock_tasks", map[string]any{"name": "from another process"})
		return err
	})
	rep := r.next(t, "a write by another process")
	if rep.Trigger != TriggerLocal || rep.Err != nil || rep.Log.LocalChangeCount != 1 {
		t.Fatalf("sync after another process's write: %+v (log %+v)", rep, rep.Log)
	}
	r.none(t, "after the sync (its own writes)", 600*time.Millisecond)
	if n := pushes.Load(); n != 1 {
		t.Errorf("%d pushes, want 1", n)
	}
	// Again: each write of the other process is noticed.
	ldbWrite(t, other, func(tx *Tx) error {
		_, err := tx.Create("mock_tasks", map[string]any{"name": "again"})
		return err
	})
	if rep := r.next(t, "a second write"); rep.Log.LocalChangeCount != 1 {
		t.Fatalf("second sync: %+v", rep.Log)
	}
	r.none(t, "after the second sync", 600*time.Millisecond)
}

// TestSchedulerIgnoresEventOfOwnPush: a live update announcing the scheduler's own
// push (as a server sharing the store with the one that took the push sends it)
// starts no sync; an update for someone else's change does.
func TestSchedulerIgnoresEventOfOwnPush(t *testing.T) {
	db := ldbOpen(t)
	p := &schedPuller{}
	pusher := &stPusher{}
	events := make(chan int64, 4)
	push := func(ctx context.Context, req melonsync.PushRequest) (*melonsync.PushResponse, error) {
		resp, err := pusher.Push(ctx, req)
		if err == nil {
			if resp == nil {
				resp = &melonsync.PushResponse{OK: true}
			}
			resp.Timestamp = 5000
			events <- 5000 // the server announces the push
		}
		return resp, err
	}
	listen := func(ctx context.Context, changed func(int64)) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case ts := <-events:
				changed(ts)
			}
		}
	}
	r := newReports()
	startScheduler(t, db, SchedulerOptions{Sync: SyncOptions{PullChanges: p.Pull, PushChanges: push}, Listen: listen,
		Interval: time.Hour, Debounce: 50 * time.Millisecond, NoSyncOnStart: true, OnSync: r.onSync})
	ldbWrite(t, db, func(tx *Tx) error {
		_, err := tx.Create("mock_tasks", map[string]any{"name": "t"})
		return err
	})
	if rep := r.next(t, "local change"); rep.Trigger != TriggerLocal {
		t.Fatalf("first sync: %+v", rep)
	}
	r.none(t, "after the event of its own push", 600*time.Millisecond)
	events <- 6000 // another device's change
	if rep := r.next(t, "someone else's change"); rep.Trigger != TriggerRemote {
		t.Fatalf("sync for another change: %+v", rep)
	}
}
