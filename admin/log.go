package admin

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of LogOptions.
const (
	DefaultLogMaxEntries = 100_000
	DefaultLogMaxAge     = 7 * 24 * time.Hour
	DefaultFlushEvery    = 250 * time.Millisecond
	DefaultBufferSize    = 10_000
)

// LogOptions bounds and tunes a Log.
type LogOptions struct {
	// MaxEntries is how many entries the store keeps (default DefaultLogMaxEntries).
	MaxEntries int
	// MaxAge is how long entries are kept (default DefaultLogMaxAge; negative: no
	// age bound).
	MaxAge time.Duration
	// FlushEvery is how often buffered entries are written (default
	// DefaultFlushEvery).
	FlushEvery time.Duration
	// BufferSize is how many entries wait in memory at most; more are dropped and
	// counted (default DefaultBufferSize).
	BufferSize int
	// Logger receives flush failures (default: discard).
	Logger *slog.Logger
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// Log is the sync log's writer. Record only appends to a memory buffer; a background
// loop (Run) writes the buffer to the store in one transaction per flush, outside
// every sync transaction, and trims the store to its bounds.
//
// What a crash loses: the entries still buffered (at most FlushEvery's worth, or a
// batch whose write failed). That is acceptable because the log is diagnostics
// only — no sync decision reads it, and the synced data and its versions are written
// by the push transaction itself. See DESIGN.md in this folder.
type Log struct {
	store Store
	opts  LogOptions

	mu      sync.Mutex
	buf     []Entry
	kick    chan struct{}
	dropped atomic.Int64
	written atomic.Int64

	flushMu sync.Mutex // one flush at a time
	started atomic.Bool
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

// NewLog returns a Log writing to store. Call Run (or Start) to write in the
// background and Close to flush and stop.
func NewLog(store Store, opts LogOptions) *Log {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultLogMaxEntries
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = DefaultLogMaxAge
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = DefaultFlushEvery
	}
	if opts.BufferSize <= 0 {
		opts.BufferSize = DefaultBufferSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Log{store: store, opts: opts, kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
}

// Options returns the log's options, defaults filled in.
func (l *Log) Options() LogOptions { return l.opts }

// Record queues e for writing. It never blocks: when the buffer is full, e is
// dropped and counted (Dropped).
func (l *Log) Record(e Entry) {
	e.Conflicts = capIDs(e.Conflicts)
	e.Rejected = capIDs(e.Rejected)
	l.mu.Lock()
	if len(l.buf) >= l.opts.BufferSize {
		l.mu.Unlock()
		l.dropped.Add(1)
		return
	}
	l.buf = append(l.buf, e)
	full := len(l.buf) >= l.opts.BufferSize/2
	l.mu.Unlock()
	if full {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// Dropped returns how many entries were dropped (buffer full, or a failed write).
func (l *Log) Dropped() int64 { return l.dropped.Load() }

// Written returns how many entries were written to the store.
func (l *Log) Written() int64 { return l.written.Load() }

// Pending returns how many entries wait in memory.
func (l *Log) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buf)
}

// Start runs the background loop until Close.
func (l *Log) Start() { go l.Run() }

// Run writes buffered entries every FlushEvery (sooner when the buffer is half
// full) and trims the store, until Close.
func (l *Log) Run() {
	if !l.started.CompareAndSwap(false, true) {
		return
	}
	defer close(l.stopped)
	t := time.NewTicker(l.opts.FlushEvery)
	defer t.Stop()
	lastAgeTrim := time.Time{}
	for {
		select {
		case <-l.done:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			l.Flush(ctx)
			cancel()
			return
		case <-t.C:
		case <-l.kick:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		n, err := l.flush(ctx)
		if err != nil {
			l.opts.Logger.Warn("sync log: writing entries failed; they are dropped", "entries", n, "err", err.Error())
		}
		// The count bound is kept by every write; the age bound once a minute.
		if time.Since(lastAgeTrim) > time.Minute {
			lastAgeTrim = time.Now()
			if _, err := l.store.TrimLog(ctx, l.opts.MaxEntries, l.ageBound()); err != nil {
				l.opts.Logger.Warn("sync log: trimming failed", "err", err.Error())
			}
		}
		cancel()
	}
}

func (l *Log) ageBound() int64 {
	if l.opts.MaxAge < 0 {
		return 0
	}
	return l.opts.Now().Add(-l.opts.MaxAge).UnixMilli()
}

// Flush writes what is buffered now and trims the store to its bounds.
func (l *Log) Flush(ctx context.Context) error {
	if _, err := l.flush(ctx); err != nil {
		return err
	}
	_, err := l.store.TrimLog(ctx, l.opts.MaxEntries, l.ageBound())
	return err
}

// flush writes the buffer in one transaction; on failure its entries are dropped
// (counted) rather than retried forever. It returns how many it tried.
func (l *Log) flush(ctx context.Context) (int, error) {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	batch := l.buf
	l.buf = nil
	l.mu.Unlock()
	if len(batch) == 0 {
		return 0, nil
	}
	if err := l.store.AppendLog(ctx, batch, Summarize(batch), l.opts.MaxEntries); err != nil {
		l.dropped.Add(int64(len(batch)))
		return len(batch), err
	}
	l.written.Add(int64(len(batch)))
	return len(batch), nil
}

// Close flushes what is buffered and stops the background loop (if it runs).
func (l *Log) Close() {
	l.once.Do(func() { close(l.done) })
	if !l.started.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l.Flush(ctx)
		return
	}
	select {
	case <-l.stopped:
	case <-time.After(15 * time.Second):
	}
}

// Summarize folds a batch of entries, in the order they were recorded, into one
// Activity per device.
func Summarize(batch []Entry) []Activity {
	type key struct{ u, d string }
	idx := map[key]int{}
	var out []Activity
	for i := range batch {
		e := &batch[i]
		k := key{e.User, e.Device}
		j, ok := idx[k]
		if !ok {
			j = len(out)
			idx[k] = j
			out = append(out, Activity{User: e.User, Device: e.Device, First: e.At})
		}
		a := &out[j]
		a.First = min(a.First, e.At)
		a.Last = max(a.Last, e.At)
		a.LastStatus, a.LastCode = e.Status, e.Code
		a.Rejected += e.NRejected
		ok2 := e.Status >= 200 && e.Status < 300
		switch e.Kind {
		case KindPull:
			a.Pulls++
			if ok2 && e.At >= a.LastPull {
				a.LastPull, a.LastPulledAt, a.LastTimestamp, a.SchemaVersion = e.At, e.LastPulledAt, e.Timestamp, e.SchemaVersion
			}
		case KindPush:
			a.Pushes++
			switch {
			case ok2:
				a.LastPush = max(a.LastPush, e.At)
				a.Conflicts, a.ResetConflicts = 0, true
			case e.Status == 409:
				a.Conflicts++
			}
		}
	}
	return out
}

// capIDs returns m, or a copy of m holding at most MaxIDsPerEntry ids across its
// tables (m itself, often a response's map, is never changed).
func capIDs(m map[string][]string) map[string][]string {
	n := 0
	for _, ids := range m {
		n += len(ids)
	}
	if n <= MaxIDsPerEntry {
		return m
	}
	out := make(map[string][]string, len(m))
	left := MaxIDsPerEntry
	for t, ids := range m {
		if left == 0 {
			break
		}
		k := min(len(ids), left)
		out[t] = ids[:k:k]
		left -= k
	}
	return out
}
