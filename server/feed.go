package server

import (
	"context"
	"sync"
)

// Feed tells listeners that a user's data changed: after every committed push, the
// user, the version written and the device that pushed. A listener sees at least the
// latest version since it last looked (intermediate ones may be folded together); it
// then pulls.
//
// Each listener gets a version once: a change announced twice (by the process that
// took the push, then again by the store's cross-process notifications) or late (a
// version not newer than one it was already told of, which its pull covers because
// versions commit in order) is dropped. A listener does not get the changes its own
// device pushed; those do not count as told, so an older change of another device that
// arrives after them is still announced.
type Feed struct {
	mu   sync.Mutex
	subs map[string]map[*subscription]struct{}
}

type subscription struct {
	device string
	told   int64 // the newest version handed to ch (under Feed.mu)
	ch     chan int64
}

// Subscribe returns a channel that receives versions of changes to user's data made by
// other devices than device ("" receives every change), and a function that ends the
// subscription.
func (f *Feed) Subscribe(user, device string) (<-chan int64, func()) {
	s := &subscription{device: device, ch: make(chan int64, 1)}
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[string]map[*subscription]struct{}{}
	}
	if f.subs[user] == nil {
		f.subs[user] = map[*subscription]struct{}{}
	}
	f.subs[user][s] = struct{}{}
	f.mu.Unlock()
	return s.ch, func() {
		f.mu.Lock()
		delete(f.subs[user], s)
		if len(f.subs[user]) == 0 {
			delete(f.subs, user)
		}
		f.mu.Unlock()
	}
}

// Skip tells the subscription behind ch that it knows every version up to v (for
// example the clock it read after subscribing), so that they are not sent again.
func (f *Feed) Skip(user string, ch <-chan int64, v int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs[user] {
		if s.ch != ch {
			continue
		}
		s.told = max(s.told, v)
		select { // a pending version up to v is covered now
		case old := <-s.ch:
			if old > v {
				s.ch <- old
			}
		default:
		}
	}
}

// Publish tells user's listeners about version v, written by device ("" when
// unknown). It never blocks.
func (f *Feed) Publish(user string, v int64, device string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs[user] {
		if v <= s.told || (device != "" && device == s.device) {
			continue
		}
		s.told = v
		select {
		case <-s.ch: // replace a pending older version with this one
		default:
		}
		s.ch <- v
	}
}

// Watcher is implemented by stores that several server processes share: Watch calls
// fn for every write committed by any process (including writes from outside
// melonsync, whose device is ""), until ctx ends or the watch fails.
type Watcher interface {
	Watch(ctx context.Context, fn func(user string, version int64, device string)) error
}

// Feed returns the service's change feed.
func (s *Service) Feed() *Feed { return &s.feed }

// Clock returns the store's current version.
func (s *Service) Clock(ctx context.Context) (int64, error) {
	var c int64
	err := s.store.Read(ctx, func(tx ReadTx) error {
		var err error
		c, err = tx.Clock()
		return err
	})
	return c, err
}

// WatchStore forwards the store's cross-process change notifications to the feed,
// when the store is a Watcher; otherwise it returns at once. It returns when ctx ends
// or the watch fails.
func (s *Service) WatchStore(ctx context.Context) error {
	w, ok := s.store.(Watcher)
	if !ok {
		return nil
	}
	return w.Watch(ctx, s.feed.Publish)
}
