package server

import (
	"context"
	"sync"

	"github.com/melonsync/melonsync/schema"
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

// PublishAll tells every listener about version v (a public table changed) by
// device.
func (f *Feed) PublishAll(v int64, device string) {
	f.mu.Lock()
	users := make([]string, 0, len(f.subs))
	for u := range f.subs {
		users = append(users, u)
	}
	f.mu.Unlock()
	for _, u := range users {
		f.Publish(u, v, device)
	}
}

// listening reports whether anyone listens at all.
func (f *Feed) listening() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs) > 0
}

// Change says whose data a committed write changed: a user's (User), the members'
// of a group whose rows changed (Table, a group table, and Group), or everyone's
// (Table, a public table, with Group empty).
type Change struct {
	Version int64
	User    string
	Table   string
	Group   string
	// Device pushed the change ("" when unknown, or written outside melonsync); its
	// own streams are not told.
	Device string
	// All says that anyone's data may have changed up to Version: a watcher that
	// was not listening for a while (reconnecting) catches up so.
	All bool
}

// Watcher is implemented by stores that several server processes share: Watch calls
// fn for every write committed by any process (including writes from outside
// melonsync, whose Device is ""), until ctx ends or the watch fails.
type Watcher interface {
	Watch(ctx context.Context, fn func(Change)) error
}

// deliver tells the listeners each change concerns: the user named, every member
// of a group (read from the members table now, after the commit) or everyone.
func (s *Service) deliver(ctx context.Context, changes []Change) {
	groups := map[*schema.Group]map[string]int64{}
	device := "" // the changes of one write, by one device
	if len(changes) > 0 {
		device = changes[0].Device
	}
	for _, ch := range changes {
		switch {
		case ch.All:
			s.feed.PublishAll(ch.Version, "")
		case ch.User != "":
			s.feed.Publish(ch.User, ch.Version, ch.Device)
		case ch.Table != "":
			t := s.schema.Table(ch.Table)
			if t == nil {
				continue
			}
			switch t.Rule.Kind {
			case schema.Public:
				s.feed.PublishAll(ch.Version, ch.Device)
			case schema.GroupRule:
				if ch.Group == "" {
					continue
				}
				g := t.Rule.Group
				if groups[g] == nil {
					groups[g] = map[string]int64{}
				}
				groups[g][ch.Group] = max(groups[g][ch.Group], ch.Version)
			}
		}
	}
	if len(groups) == 0 || !s.feed.listening() {
		return
	}
	type poke struct {
		user   string
		v      int64
		device string
	}
	var pokes []poke
	err := s.store.Read(ctx, func(tx ReadTx) error {
		pokes = pokes[:0]
		for g, ids := range groups {
			list := make([]string, 0, len(ids))
			for id := range ids {
				list = append(list, id)
			}
			err := tx.Scan(g.Members, nil, Filter{Groups: list}, func(r *Row) error {
				if r.User != "" {
					pokes = append(pokes, poke{r.User, ids[r.Group], device})
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return // listeners still poll; nothing is lost but promptness
	}
	for _, p := range pokes {
		s.feed.Publish(p.user, p.v, p.device)
	}
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
	return w.Watch(ctx, func(ch Change) { s.deliver(ctx, []Change{ch}) })
}
