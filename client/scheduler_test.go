package client

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
)

// schedPuller answers pulls with an increasing timestamp, optionally failing the
// first calls, and records how many run at once.
type schedPuller struct {
	calls, running, maxRunning atomic.Int32
	failFirst                  int32
	failWith                   func() error
	delay                      time.Duration
}

func (p *schedPuller) Pull(ctx context.Context, _ PullArgs) (*PullResult, error) {
	n := p.calls.Add(1)
	r := p.running.Add(1)
	defer p.running.Add(-1)
	for {
		m := p.maxRunning.Load()
		if r <= m || p.maxRunning.CompareAndSwap(m, r) {
			break
		}
	}
	if p.delay > 0 {
		select {
		case <-time.After(p.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if n <= p.failFirst {
		return nil, p.failWith()
	}
	return &PullResult{Changes: stChangeSet(nil), Timestamp: int64(100 + n)}, nil
}

// reports collects a scheduler's SyncReports.
type reports struct {
	ch chan SyncReport
}

func newReports() *reports { return &reports{ch: make(chan SyncReport, 64)} }

func (r *reports) onSync(rep SyncReport) { r.ch <- rep }

func (r *reports) next(t *testing.T, what string) SyncReport {
	t.Helper()
	select {
	case rep := <-r.ch:
		return rep
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no sync within 5s", what)
	}
	return SyncReport{}
}

func (r *reports) none(t *testing.T, what string, d time.Duration) {
	t.Helper()
	select {
	case rep := <-r.ch:
		t.Fatalf("%s: unexpected sync %+v", what, rep)
	case <-time.After(d):
	}
}

func startScheduler(t *testing.T, db *DB, opts SchedulerOptions) *Scheduler {
	t.Helper()
	s := NewScheduler(db, opts)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
	})
	return s
}

func TestSchedulerSyncsAtStartAndEveryInterval(t *testing.T) {
	db := ldbOpen(t)
	p := &schedPuller{}
	r := newReports()
	startScheduler(t, db, SchedulerOptions{Sync: SyncOptions{PullChanges: p.Pull}, Interval: 30 * time.Millisecond, Debounce: -1, OnSync: r.onSync})
	if rep := r.next(t, "start"); rep.Trigger != TriggerStart || rep.Err != nil || rep.Log == nil || rep.Log.Phase != PhaseDone {
		t.Fatalf("first sync: %+v", rep)
	}
	for i := 0; i < 3; i++ {
		if rep := r.next(t, "interval"); rep.Trigger != TriggerInterval || rep.Err != nil {
			t.Fatalf("sync %d: %+v", i, rep)
		}
	}
	if lpa := stLastPulledAt(t, db); lpa == nil || *lpa < 104 {
		t.Errorf("lastPulledAt %v after 4 syncs", lpa)
	}
}

func TestSchedulerDebouncesLocalChanges(t *testing.T) {
	db := ldbOpen(t)
	p := &schedPuller{}
	pushes := atomic.Int32{}
	pusher := &stPusher{}
	push := func(ctx context.Context, req melonsync.PushRequest) (*melonsync.PushResponse, error) {
		pushes.Add(1)
		return pusher.Push(ctx, req)
	}
	r := newReports()
	s := startScheduler(t, db, SchedulerOptions{Sync: SyncOptions{PullChanges: p.Pull, PushChanges: push},
		Interval: time.Hour, Debounce: 250 * time.Millisecond, NoSyncOnStart: true, OnSync: r.onSync})
	// Three writes in quick succession: one sync, after the last one.
	for i := 0; i < 3; i++ {
		ldbWrite(t, db, func(tx *Tx) error {
			_, err := tx.Create("mock_tasks", map[string]any{"name": "t"})
			return err
		})
		time.Sleep(15 * time.Millisecond)
	}
	rep := r.next(t, "local changes")
	if rep.Trigger != TriggerLocal || rep.Err != nil || rep.Log.LocalChangeCount != 3 {
		t.Fatalf("sync after local changes: %+v (log %+v)", rep, rep.Log)
	}
	r.none(t, "after the debounced sync", 400*time.Millisecond)
	if n := pushes.Load(); n != 1 {
		t.Errorf("%d pushes, want 1", n)
	}
	stExpectNoLocalChanges(t, db)
	if st := s.Status(); st.UnsyncedChanges || st.LastSuccess.IsZero() || st.ConsecutiveFailures != 0 {
		t.Errorf("status after the sync: %+v", st)
	}
}

func TestSchedulerBacksOffAfterNetworkErrors(t *testing.T) {
	db := ldbOpen(t)
	p := &schedPuller{failFirst: 3, failWith: func() error { return NetworkError(context.Background(), "pull", errors.New("connection refused")) }}
	r := newReports()
	s := startScheduler(t, db, SchedulerOptions{Sync: SyncOptions{PullChanges: p.Pull}, Interval: time.Hour, Debounce: -1,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, OnSync: r.onSync})
	var times []time.Time
	for i := 0; i < 4; i++ {
		rep := r.next(t, "retry")
		times = append(times, rep.Started)
		if i < 3 {
			if !errors.Is(rep.Err, ErrNetwork) {
				t.Fatalf("sync %d: %v", i, rep.Err)
			}
			if got := s.Status().ConsecutiveFailures; got < i+1 {
				t.Errorf("after failure %d: ConsecutiveFailures %d", i+1, got)
			}
		} else if rep.Err != nil || rep.Trigger != TriggerRetry {
			t.Fatalf("sync after the failures: %+v", rep)
		}
	}
	for i := 1; i < len(times); i++ {
		gap := times[i].Sub(times[i-1])
		// Backoff d is MinBackoff·2^(n-1) capped at MaxBackoff, of which up to half is
		// dropped: at least 10 ms, at most 40 ms (plus the sync itself).
		if gap < 10*time.Millisecond || gap > time.Second {
			t.Errorf("retry %d came after %s", i, gap)
		}
	}
	if st := s.Status(); st.ConsecutiveFailures != 0 || st.LastError != nil {
		t.Errorf("status after recovering: %+v", st)
	}
	r.none(t, "after recovering (next sync in an hour)", 100*time.Millisecond)
}

func TestSchedulerDoesNotRetryOtherErrors(t *testing.T) {
	db := ldbOpen(t)
	p := &schedPuller{failFirst: 100, failWith: func() error { return &SyncError{Kind: KindServer, Op: "pull", Status: 500, Message: "boom"} }}
	r := newReports()
	s := startScheduler(t, db, SchedulerOptions{Sync: SyncOptions{PullChanges: p.Pull}, Interval: time.Hour, Debounce: -1,
		MinBackoff: time.Millisecond, OnSync: r.onSync})
	if rep := r.next(t, "start"); !errors.Is(rep.Err, ErrServer) {
		t.Fatalf("first sync: %v", rep.Err)
	}
	r.none(t, "a server error waits for the interval", 150*time.Millisecond)
	st := s.Status()
	if st.LastError == nil || st.ConsecutiveFailures != 1 || time.Until(st.NextSync) < 50*time.Minute {
		t.Errorf("status: %+v", st)
	}
}

func TestSchedulerNeverRunsTwoSyncsAtOnce(t *testing.T) {
	db := ldbOpen(t)
	p := &schedPuller{delay: 20 * time.Millisecond}
	r := newReports()
	s := startScheduler(t, db, SchedulerOptions{Sync: SyncOptions{PullChanges: p.Pull, PushChanges: (&stPusher{}).Push},
		Interval: 5 * time.Millisecond, Debounce: time.Millisecond, OnSync: r.onSync})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.SyncNow(ctx); err != nil {
				t.Errorf("SyncNow: %v", err)
			}
		}()
		ldbWrite(t, db, func(tx *Tx) error { _, err := tx.Create("mock_tasks", map[string]any{"name": "x"}); return err })
		s.Trigger()
	}
	wg.Wait()
	if m := p.maxRunning.Load(); m != 1 {
		t.Fatalf("%d syncs ran at once", m)
	}
	// Demands waiting together are answered by one sync: fewer syncs than demands.
	if n := p.calls.Load(); n < 2 {
		t.Errorf("only %d syncs", n)
	}
}

func TestSchedulerStop(t *testing.T) {
	db := ldbOpen(t)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	pull := func(ctx context.Context, _ PullArgs) (*PullResult, error) {
		started <- struct{}{}
		select {
		case <-release:
			return &PullResult{Changes: stChangeSet(nil), Timestamp: 5}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	// Stop lets a sync in progress finish.
	s := NewScheduler(db, SchedulerOptions{Sync: SyncOptions{PullChanges: pull}, Interval: time.Hour, Debounce: -1})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("a second Start succeeded")
	}
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background()) }()
	select {
	case <-stopped:
		t.Fatal("Stop returned while a sync was running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if lpa := stLastPulledAt(t, db); lpa == nil || *lpa != 5 {
		t.Errorf("the sync in progress did not finish: lastPulledAt %v", lpa)
	}
	if st := s.Status(); st.Running || st.InProgress {
		t.Errorf("status after Stop: %+v", st)
	}
	if err := s.SyncNow(context.Background()); !errors.Is(err, ErrSchedulerStopped) {
		t.Errorf("SyncNow after Stop: %v", err)
	}

	// Stop with a context that ends cancels the sync in progress.
	db2 := ldbOpen(t)
	block := func(ctx context.Context, _ PullArgs) (*PullResult, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	s2 := NewScheduler(db2, SchedulerOptions{Sync: SyncOptions{PullChanges: block}, Interval: time.Hour, Debounce: -1})
	if err := s2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := s2.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop with an ending context: %v", err)
	}
	if lpa := stLastPulledAt(t, db2); lpa != nil {
		t.Errorf("a cancelled sync saved lastPulledAt %d", *lpa)
	}

	// Cancelling Start's context stops the scheduler too.
	db3 := ldbOpen(t)
	ctx3, cancel3 := context.WithCancel(context.Background())
	s3 := NewScheduler(db3, SchedulerOptions{Sync: SyncOptions{PullChanges: (&schedPuller{}).Pull}, Interval: time.Hour, Debounce: -1})
	if err := s3.Start(ctx3); err != nil {
		t.Fatal(err)
	}
	cancel3()
	deadline := time.Now().Add(5 * time.Second)
	for s3.Status().Running {
		if time.Now().After(deadline) {
			t.Fatal("the scheduler still runs after its context ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s3.Stop(context.Background()); err != nil {
		t.Errorf("Stop after the context ended: %v", err)
	}
}

func TestSchedulerNeedsPull(t *testing.T) {
	s := NewScheduler(ldbOpen(t), SchedulerOptions{})
	if err := s.Start(context.Background()); !errors.Is(err, ErrProgrammer) {
		t.Fatalf("Start without PullChanges: %v", err)
	}
}
