package client

import (
	"sort"
	"sync"
)

// ChangeType says what happened to a record.
type ChangeType string

// Change types. ChangeDeleted covers both marking as deleted and destroying.
const (
	ChangeCreated ChangeType = "created"
	ChangeUpdated ChangeType = "updated"
	ChangeDeleted ChangeType = "deleted"
)

// RecordChange is one change to one record in a committed transaction.
type RecordChange struct {
	Table string
	ID    string
	Type  ChangeType
	// FromSync is true for changes made by the sync primitives (ApplyRemoteChanges,
	// InsertSynced, MarkAsSynced) rather than by the application; they need no push.
	FromSync bool
}

// ChangeEvent reports the changes of one committed write transaction to the tables a
// subscriber asked for, in the order they were made. Subscribers may share the
// Changes slice: do not modify it.
type ChangeEvent struct {
	Changes []RecordChange
	// Summarized is true when the transaction changed more than MaxEventChanges
	// records: Changes then has one entry per table, type and origin, with an empty
	// ID (read the tables again).
	Summarized bool
}

// Tables returns the names of the tables the event touches, sorted.
func (e ChangeEvent) Tables() []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range e.Changes {
		if !seen[c.Table] {
			seen[c.Table] = true
			out = append(out, c.Table)
		}
	}
	sort.Strings(out)
	return out
}

// HasLocalChanges reports whether the event holds a change made by the application
// (one that a sync should push), as opposed to one made by sync itself.
func (e ChangeEvent) HasLocalChanges() bool {
	for _, c := range e.Changes {
		if !c.FromSync {
			return true
		}
	}
	return false
}

// Subscribe calls fn after every committed write transaction that changed a record of
// one of tables (every table when tables is empty), with those changes. Calls for one
// subscription come one at a time, in commit order, on a goroutine of their own, so fn
// may block or call Read and Write; a slow fn delays only its own later calls (events
// queue up meanwhile). Local storage changes are not reported. The returned function
// ends the subscription: no call starts after it returns. Close ends every
// subscription.
func (db *DB) Subscribe(tables []string, fn func(ChangeEvent)) (unsubscribe func()) {
	s := &subscriber{fn: fn, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	if len(tables) > 0 {
		s.tables = make(map[string]bool, len(tables))
		for _, t := range tables {
			s.tables[t] = true
		}
	}
	if !db.subs.add(s) {
		return func() {}
	}
	go s.run()
	return func() {
		db.subs.remove(s)
		s.end()
	}
}

type subscriber struct {
	tables map[string]bool
	fn     func(ChangeEvent)
	wake   chan struct{}
	stop   chan struct{}

	mu    sync.Mutex // guards queue and ended
	queue []ChangeEvent
	ended bool
}

func (s *subscriber) enqueue(ev ChangeEvent) {
	s.mu.Lock()
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) run() {
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
		for {
			s.mu.Lock()
			if s.ended || len(s.queue) == 0 {
				s.mu.Unlock()
				break
			}
			ev := s.queue[0]
			s.queue[0] = ChangeEvent{}
			s.queue = s.queue[1:]
			s.mu.Unlock()
			s.fn(ev)
		}
	}
}

// end stops the subscription: no call of fn starts after it returns (a call already
// running is not waited for, so end may be called from inside fn).
func (s *subscriber) end() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.queue = nil
	close(s.stop)
	s.mu.Unlock()
}

type subscribers struct {
	mu     sync.Mutex
	list   []*subscriber
	closed bool
}

func (ss *subscribers) add(s *subscriber) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return false
	}
	ss.list = append(ss.list, s)
	return true
}

func (ss *subscribers) remove(s *subscriber) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for i, x := range ss.list {
		if x == s {
			ss.list = append(ss.list[:i:i], ss.list[i+1:]...)
			return
		}
	}
}

func (ss *subscribers) publish(changes []RecordChange, summarized bool) {
	ss.mu.Lock()
	list := ss.list
	ss.mu.Unlock()
	for _, s := range list {
		if s.tables == nil {
			s.enqueue(ChangeEvent{Changes: changes, Summarized: summarized})
			continue
		}
		var mine []RecordChange
		for _, c := range changes {
			if s.tables[c.Table] {
				mine = append(mine, c)
			}
		}
		if len(mine) > 0 {
			s.enqueue(ChangeEvent{Changes: mine, Summarized: summarized})
		}
	}
}

func (ss *subscribers) closeAll() {
	ss.mu.Lock()
	list := ss.list
	ss.list = nil
	ss.closed = true
	ss.mu.Unlock()
	for _, s := range list {
		s.end()
	}
}
