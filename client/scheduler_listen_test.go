package client

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestSchedulerListen: a live-update timestamp newer than the last pull starts a sync
// (trigger "server changes"), an older one does not, a listener that returns is
// called again, and Stop ends it.
func TestSchedulerListen(t *testing.T) {
	db := ldbOpen(t)
	var serverTS atomic.Int64
	serverTS.Store(100)
	puller := &stPuller{fn: func(context.Context, PullArgs) (*PullResult, error) {
		return &PullResult{Changes: stChangeSet(nil), Timestamp: serverTS.Load()}, nil
	}}
	events := make(chan int64)
	var listens, listening atomic.Int32
	listenDone := make(chan struct{}, 8)
	reports := make(chan SyncReport, 16)
	s := NewScheduler(db, SchedulerOptions{
		Sync:       SyncOptions{PullChanges: puller.Pull, PushChanges: (&stPusher{}).Push},
		Interval:   time.Hour,
		Debounce:   -1,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		OnSync: func(r SyncReport) { reports <- r },
		Listen: func(ctx context.Context, changed func(int64)) error {
			listens.Add(1)
			listening.Add(1)
			defer func() { listening.Add(-1); listenDone <- struct{}{} }()
			for {
				select {
				case <-ctx.Done():
					return nil
				case ts := <-events:
					if ts < 0 {
						return errors.New("connection lost")
					}
					changed(ts)
				}
			}
		},
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	report := func(what string) SyncReport {
		t.Helper()
		select {
		case r := <-reports:
			return r
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no sync", what)
		}
		return SyncReport{}
	}
	if r := report("start"); r.Trigger != TriggerStart || r.Err != nil {
		t.Fatalf("first sync: %+v", r)
	}
	send := func(ts int64) {
		t.Helper()
		select {
		case events <- ts:
		case <-time.After(5 * time.Second):
			t.Fatal("the listener is not running")
		}
	}
	send(100) // already pulled
	select {
	case r := <-reports:
		t.Fatalf("a sync for an old timestamp: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	serverTS.Store(200)
	send(200)
	if r := report("remote change"); r.Trigger != TriggerRemote || r.Err != nil {
		t.Fatalf("sync after a remote change: %+v", r)
	}
	if lpa := stLastPulledAt(t, db); lpa == nil || *lpa != 200 {
		t.Errorf("lastPulledAt %v", lpa)
	}
	// The connection drops: the scheduler listens again.
	send(-1)
	<-listenDone
	serverTS.Store(300)
	send(300)
	if r := report("after reconnect"); r.Trigger != TriggerRemote {
		t.Fatalf("sync after reconnect: %+v", r)
	}
	if n := listens.Load(); n != 2 {
		t.Errorf("Listen called %d times, want 2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := listening.Load(); n != 0 {
		t.Errorf("%d listener(s) still running after Stop", n)
	}
}
