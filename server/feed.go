package server

import (
	"context"
	"sync"
)

// Feed tells listeners that a user's data changed: after every committed push, the
// user and the version written. A listener sees at least the latest version since it
// last looked (intermediate ones may be folded together); it then pulls.
type Feed struct {
	mu   sync.Mutex
	subs map[string]map[chan int64]struct{}
}

// Subscribe returns a channel that receives versions of changes to user's data, and a
// function that ends the subscription.
func (f *Feed) Subscribe(user string) (<-chan int64, func()) {
	ch := make(chan int64, 1)
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[string]map[chan int64]struct{}{}
	}
	if f.subs[user] == nil {
		f.subs[user] = map[chan int64]struct{}{}
	}
	f.subs[user][ch] = struct{}{}
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		delete(f.subs[user], ch)
		if len(f.subs[user]) == 0 {
			delete(f.subs, user)
		}
		f.mu.Unlock()
	}
}

// Publish tells user's listeners about version v. It never blocks.
func (f *Feed) Publish(user string, v int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs[user] {
		select {
		case ch <- v:
		default:
			// Full: replace the pending version with the newer one.
			select {
			case old := <-ch:
				if old > v {
					v = old
				}
			default:
			}
			select {
			case ch <- v:
			default:
			}
		}
	}
}

// Watcher is implemented by stores that several server processes share: Watch calls
// fn for every write committed by any process (including writes from outside
// melonsync), until ctx ends or the watch fails.
type Watcher interface {
	Watch(ctx context.Context, fn func(user string, version int64)) error
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
