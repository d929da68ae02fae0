package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/melonsync/melonsync"
)

// Scheduler defaults.
const (
	DefaultSyncInterval = 5 * time.Minute
	DefaultDebounce     = 2 * time.Second
	DefaultMinBackoff   = time.Second
	DefaultMaxBackoff   = 5 * time.Minute
)

// Sync triggers, as reported in SyncReport.Trigger.
const (
	TriggerStart    = "start"
	TriggerInterval = "interval"
	TriggerLocal    = "local changes"
	TriggerDemand   = "on demand"
	TriggerRetry    = "retry"
	TriggerRemote   = "server changes"
)

// SchedulerOptions configures a Scheduler. Sync.PullChanges is required.
type SchedulerOptions struct {
	// Sync is the template of every sync. Its Log is replaced by a new log of Logger
	// for each sync; UnsafeTurbo is set per sync when AutoTurbo is on.
	Sync SyncOptions
	// Interval between periodic syncs (default DefaultSyncInterval; negative: none).
	Interval time.Duration
	// Debounce is how long after the last local change a sync starts (default
	// DefaultDebounce; negative: local changes do not trigger syncs).
	Debounce time.Duration
	// NoSyncOnStart skips the sync at start.
	NoSyncOnStart bool
	// MinBackoff and MaxBackoff bound the exponential backoff (with jitter) after
	// retryable failures: network errors and conflicts (defaults DefaultMinBackoff and
	// DefaultMaxBackoff). Other failures wait for the next interval.
	MinBackoff, MaxBackoff time.Duration
	// Logger keeps the logs of the last syncs (default NewSyncLogger(10)).
	Logger *SyncLogger
	// AutoTurbo streams the first sync of an empty database (see TurboEligible).
	// Sync.PullChanges must then honour PullArgs.Turbo (the HTTP transport does).
	AutoTurbo bool
	// OnSync is called after each sync, from the scheduler's goroutine.
	OnSync func(SyncReport)
	// Tables whose changes trigger a sync (default: every table of the schema).
	Tables []string
	// FilePoll is how often the scheduler checks whether another process (a
	// WatermelonDB app, another client, a script) wrote the database file, so that
	// its changes are pushed like this process's own (default DefaultFilePoll;
	// negative: not checked). A write that leaves nothing to push (a sync's own)
	// starts no sync.
	FilePoll time.Duration
	// Listen, when set, follows the server's live updates for as long as the
	// scheduler runs (the HTTP transport's Client.Listen does): it calls changed with
	// the server's timestamp whenever the user's data may have changed, and returns
	// when its connection ends. A timestamp newer than the last pull starts a sync.
	// Listen is called again after it returns, with backoff after failures.
	Listen func(ctx context.Context, changed func(timestamp int64)) error
}

// SyncReport describes one finished sync of a Scheduler.
type SyncReport struct {
	Trigger  string
	Started  time.Time
	Duration time.Duration
	// Log is a censored copy of the sync's log.
	Log *SyncLog
	Err error
}

// Status is what a Scheduler knows about syncing, for display.
type Status struct {
	// Running tells whether the scheduler is started.
	Running bool
	// InProgress tells whether a sync is running now.
	InProgress bool
	// LastSuccess is when the last successful sync finished (zero: none yet).
	LastSuccess time.Time
	// LastAttempt is when the last sync finished, successful or not.
	LastAttempt time.Time
	// LastError is the error of the last sync, nil when it succeeded.
	LastError error
	// ConsecutiveFailures counts failed syncs since the last success.
	ConsecutiveFailures int
	// LastPulledAt is the server timestamp of the last pull (nil: never synced).
	LastPulledAt *int64
	// UnsyncedChanges tells whether local changes wait to be pushed.
	UnsyncedChanges bool
	// NextSync is when the next sync is planned (zero: none planned).
	NextSync time.Time
}

// Scheduler runs Synchronize in the background as the sync guide recommends: at start,
// every Interval, soon after local changes (debounced), and on demand; with
// exponential backoff and jitter after network failures; never two syncs at once.
type Scheduler struct {
	db   *DB
	opts SchedulerOptions

	mu      sync.Mutex
	status  Status
	subs    map[int]func(Status)
	nextSub int
	started bool
	stopped bool
	cancel  context.CancelFunc // cancels the loop and the sync in progress
	stopReq chan struct{}      // asks the loop to finish after the sync in progress
	done    chan struct{}

	demands  chan chan error
	local    chan struct{}
	remote   chan struct{}
	remoteTS atomic.Int64 // the newest timestamp the server's live updates announced
	pushedTS atomic.Int64 // the timestamp the server answered this scheduler's last push with
	rand     func() float64
}

// NewScheduler returns a scheduler for db. Call Start to run it.
func NewScheduler(db *DB, opts SchedulerOptions) *Scheduler {
	if opts.Interval == 0 {
		opts.Interval = DefaultSyncInterval
	}
	if opts.Debounce == 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.FilePoll == 0 {
		opts.FilePoll = DefaultFilePoll
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	if opts.Logger == nil {
		opts.Logger = NewSyncLogger(10)
	}
	return &Scheduler{
		db: db, opts: opts, subs: map[int]func(Status){},
		demands: make(chan chan error), local: make(chan struct{}, 1), remote: make(chan struct{}, 1),
		stopReq: make(chan struct{}), done: make(chan struct{}),
		rand: rand.Float64,
	}
}

// Logger returns the scheduler's sync logger.
func (s *Scheduler) Logger() *SyncLogger { return s.opts.Logger }

// ErrSchedulerStopped is returned by SyncNow when the scheduler is not running.
var ErrSchedulerStopped = errors.New("sync scheduler is not running")

// Start runs the scheduler in the background until Stop is called or ctx ends. It
// fails if the scheduler was started before or Sync.PullChanges is missing.
func (s *Scheduler) Start(ctx context.Context) error {
	if s.opts.Sync.PullChanges == nil {
		return programmerError("scheduler: Sync.PullChanges is required")
	}
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("sync scheduler: already started")
	}
	s.started = true
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.status.Running = true
	s.mu.Unlock()

	tables := s.opts.Tables
	if tables == nil {
		for _, t := range s.db.Schema().Tables {
			tables = append(tables, t.Name)
		}
	}
	var unsubscribe func()
	if s.opts.Debounce > 0 {
		unsubscribe = s.db.Subscribe(tables, func(ev ChangeEvent) {
			if !ev.HasLocalChanges() {
				return // written by a sync: nothing to push
			}
			select {
			case s.local <- struct{}{}:
			default:
			}
		})
	}
	s.refresh(ctx)
	watching := make(chan struct{})
	if s.opts.Debounce > 0 && s.opts.FilePoll > 0 {
		// Writes by other processes reach the debounced path too; it syncs only
		// when something waits to be pushed.
		go func() {
			defer close(watching)
			s.db.WatchFile(ctx, s.opts.FilePoll, func() {
				select {
				case s.local <- struct{}{}:
				default:
				}
			})
		}()
	} else {
		close(watching)
	}
	listening := make(chan struct{})
	if s.opts.Listen != nil {
		go func() {
			defer close(listening)
			s.listen(ctx)
		}()
	} else {
		close(listening)
	}
	go func() {
		defer close(s.done)
		defer func() { <-listening; <-watching }()
		if unsubscribe != nil {
			defer unsubscribe()
		}
		s.loop(ctx)
		cancel() // ends the listener
		s.mu.Lock()
		s.status.Running, s.status.InProgress, s.status.NextSync = false, false, time.Time{}
		s.mu.Unlock()
		s.publish()
	}()
	return nil
}

// Stop ends the scheduler: it lets the sync in progress finish, or cancels it when ctx
// ends first (a cancelled sync leaves a state the next one repairs), and returns once
// the scheduler's goroutine has exited. It returns ctx's error if it had to cancel.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return nil
	}
	if !s.stopped {
		s.stopped = true
		close(s.stopReq)
	}
	cancel := s.cancel
	s.mu.Unlock()
	select {
	case <-s.done:
		cancel()
		return nil
	case <-ctx.Done():
		cancel()
		<-s.done
		return ctx.Err()
	}
}

// SyncNow asks for a sync now (skipping any backoff) and waits for its result. If a
// sync is in progress, a new one runs after it, so that changes made meanwhile are
// included.
func (s *Scheduler) SyncNow(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case s.demands <- reply:
	case <-s.done:
		return ErrSchedulerStopped
	case <-s.stopReq:
		return ErrSchedulerStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Trigger asks for a sync soon without waiting for it.
func (s *Scheduler) Trigger() {
	go func() {
		reply := make(chan error, 1)
		select {
		case s.demands <- reply:
		case <-s.done:
		case <-s.stopReq:
		}
	}()
}

// Status returns the current status.
func (s *Scheduler) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.LastPulledAt = copyPtr(st.LastPulledAt)
	return st
}

// Subscribe calls fn with the new status whenever it changes, from the scheduler's
// goroutine (keep fn short). It returns a function that ends the subscription.
func (s *Scheduler) Subscribe(fn func(Status)) (unsubscribe func()) {
	s.mu.Lock()
	id := s.nextSub
	s.nextSub++
	s.subs[id] = fn
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
	}
}

func (s *Scheduler) publish() {
	s.mu.Lock()
	st := s.status
	st.LastPulledAt = copyPtr(st.LastPulledAt)
	fns := make([]func(Status), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(st)
	}
}

func (s *Scheduler) setStatus(fn func(st *Status)) {
	s.mu.Lock()
	fn(&s.status)
	s.mu.Unlock()
	s.publish()
}

// refresh reads lastPulledAt and whether local changes wait.
func (s *Scheduler) refresh(ctx context.Context) {
	lpa, err1 := LastPulledAt(ctx, s.db)
	unsynced, err2 := s.db.HasUnsyncedChanges(ctx)
	s.setStatus(func(st *Status) {
		if err1 == nil {
			st.LastPulledAt = lpa
		}
		if err2 == nil {
			st.UnsyncedChanges = unsynced
		}
	})
}

// backoff returns the wait after n consecutive retryable failures: MinBackoff·2^(n-1),
// at most MaxBackoff, of which a random part (up to half) is dropped.
func (s *Scheduler) backoff(n int) time.Duration {
	d := s.opts.MinBackoff
	for i := 1; i < n && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	if d > s.opts.MaxBackoff {
		d = s.opts.MaxBackoff
	}
	return d/2 + time.Duration(s.rand()*float64(d/2))
}

func (s *Scheduler) loop(ctx context.Context) {
	var next time.Time // zero: nothing planned
	var nextTrigger string
	plan := func(at time.Time, trigger string) {
		next, nextTrigger = at, trigger
		s.setStatus(func(st *Status) { st.NextSync = at })
	}
	if !s.opts.NoSyncOnStart {
		plan(time.Now(), TriggerStart)
	} else if s.opts.Interval > 0 {
		plan(time.Now().Add(s.opts.Interval), TriggerInterval)
	}
	var backoffUntil time.Time
	var debounce *time.Timer
	debounced := make(chan struct{}, 1)
	defer func() {
		if debounce != nil {
			debounce.Stop()
		}
	}()

	for {
		var timerC <-chan time.Time
		var timer *time.Timer
		if !next.IsZero() {
			timer = time.NewTimer(time.Until(next))
			timerC = timer.C
		}
		var waiters []chan error
		trigger := ""
		select {
		case <-ctx.Done():
			return
		case <-s.stopReq:
			return
		case reply := <-s.demands:
			waiters = append(waiters, reply)
			trigger = TriggerDemand
		case <-s.local:
			if debounce == nil {
				debounce = time.AfterFunc(s.opts.Debounce, func() {
					select {
					case debounced <- struct{}{}:
					default:
					}
				})
			} else {
				debounce.Reset(s.opts.Debounce)
			}
			continue
		case <-debounced:
			unsynced, err := s.db.HasUnsyncedChanges(ctx)
			if err != nil || !unsynced {
				continue
			}
			s.setStatus(func(st *Status) { st.UnsyncedChanges = true })
			if now := time.Now(); now.Before(backoffUntil) {
				if next.IsZero() || backoffUntil.Before(next) {
					plan(backoffUntil, TriggerLocal)
				}
				continue
			}
			trigger = TriggerLocal
		case <-s.remote:
			if s.covered(s.remoteTS.Load()) {
				continue // a sync since the event pulled it, or it was our own push
			}
			if now := time.Now(); now.Before(backoffUntil) {
				if next.IsZero() || backoffUntil.Before(next) {
					plan(backoffUntil, TriggerRemote)
				}
				continue
			}
			trigger = TriggerRemote
		case <-timerC:
			trigger = nextTrigger
		}
		if timer != nil {
			timer.Stop()
		}
		if trigger == "" {
			continue
		}
		// Gather every demand already waiting: one sync answers them all.
		for more := true; more; {
			select {
			case reply := <-s.demands:
				waiters = append(waiters, reply)
			default:
				more = false
			}
		}

		err := s.runOnce(ctx, trigger)
		for _, w := range waiters {
			w <- err
		}
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		s.mu.Lock()
		failures := s.status.ConsecutiveFailures
		s.mu.Unlock()
		switch {
		case err == nil:
			backoffUntil = time.Time{}
			if s.opts.Interval > 0 {
				plan(now.Add(s.opts.Interval), TriggerInterval)
			} else {
				plan(time.Time{}, "")
			}
		case IsRetryable(err) || errors.Is(err, ErrConcurrentSync):
			backoffUntil = now.Add(s.backoff(failures))
			plan(backoffUntil, TriggerRetry)
		default:
			backoffUntil = time.Time{}
			if s.opts.Interval > 0 {
				plan(now.Add(s.opts.Interval), TriggerInterval)
			} else {
				plan(time.Time{}, "")
			}
		}
	}
}

// pulledSince tells whether the last pull is at or after server timestamp ts.
func (s *Scheduler) pulledSince(ts int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.LastPulledAt != nil && ts <= *s.status.LastPulledAt
}

// covered tells whether a live update for server timestamp ts needs no sync: a pull
// since got it, or it announces this scheduler's own last push (versions are one per
// transaction, so ts is exactly that push's; a store shared by several servers may
// announce it from another process, which cannot tell the device).
func (s *Scheduler) covered(ts int64) bool {
	return s.pulledSince(ts) || ts == s.pushedTS.Load()
}

// listen runs opts.Listen until ctx ends, again after each return: after the
// minimum backoff when the stream had worked for a while (or ended cleanly), after a
// growing one when it keeps failing.
func (s *Scheduler) listen(ctx context.Context) {
	changed := func(ts int64) {
		for {
			cur := s.remoteTS.Load()
			if ts <= cur || s.remoteTS.CompareAndSwap(cur, ts) {
				break
			}
		}
		if s.covered(ts) {
			return // already pulled, or our own push
		}
		select {
		case s.remote <- struct{}{}:
		default:
		}
	}
	failures := 0
	for ctx.Err() == nil {
		start := time.Now()
		err := s.opts.Listen(ctx, changed)
		if ctx.Err() != nil {
			return
		}
		if err == nil || time.Since(start) > time.Minute {
			failures = 0
		}
		failures++
		t := time.NewTimer(s.backoff(failures))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (s *Scheduler) runOnce(ctx context.Context, trigger string) error {
	opts := s.opts.Sync
	if push := opts.PushChanges; push != nil {
		opts.PushChanges = func(ctx context.Context, req melonsync.PushRequest) (*melonsync.PushResponse, error) {
			resp, err := push(ctx, req)
			if err == nil && resp != nil && resp.Timestamp > 0 {
				s.pushedTS.Store(resp.Timestamp)
			}
			return resp, err
		}
	}
	log := s.opts.Logger.NewLog()
	opts.Log = log
	if s.opts.AutoTurbo {
		ok, err := TurboEligible(ctx, s.db)
		if err == nil {
			opts.UnsafeTurbo = ok
		}
	}
	s.setStatus(func(st *Status) { st.InProgress = true; st.NextSync = time.Time{} })
	start := time.Now()
	err := Synchronize(ctx, s.db, opts)
	s.refresh(context.WithoutCancel(ctx))
	s.setStatus(func(st *Status) {
		st.InProgress = false
		st.LastAttempt = time.Now()
		st.LastError = err
		if err == nil {
			st.LastSuccess = st.LastAttempt
			st.ConsecutiveFailures = 0
		} else {
			st.ConsecutiveFailures++
		}
	})
	if s.opts.OnSync != nil {
		s.opts.OnSync(SyncReport{Trigger: trigger, Started: start, Duration: time.Since(start), Log: log.Censored(), Err: err})
	}
	return err
}
