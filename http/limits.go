package http

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/melonsync/melonsync"
)

// Limits bounds how many requests of each kind run at once, per user and in all, so
// that a slow or hostile client ties up only its own requests. A request over its
// user's bound is refused at once with 429 too_many_requests; one over the global
// bound waits up to Wait for a slot, then gets 503 unavailable. Both carry
// Retry-After. Zero fields take the defaults of DefaultLimits; a negative field turns
// that bound off.
type Limits struct {
	// PullsPerUser and Pulls bound pulls running at once (reading the store, or
	// sending an answer already read).
	PullsPerUser, Pulls int
	// PushesPerUser and Pushes bound pushes running at once (from reading the body
	// to the answer).
	PushesPerUser, Pushes int
	// StreamsPerUser and Streams bound open live-update event streams.
	StreamsPerUser, Streams int
	// LargeBodies bounds request bodies over LargeBody bytes (after gunzip) read and
	// decoded at once, which bounds the memory pushes take whatever their number.
	LargeBodies int
	// LargeBody is the size from which a body counts as large.
	LargeBody int64
	// Wait is how long a request waits for a global slot (or a large-body slot)
	// before it is refused with 503.
	Wait time.Duration
}

// DefaultLimits are the bounds used for fields left zero. Why these numbers: a user
// runs one sync at a time per device, so 4 pulls and 4 pushes at once cover a few
// devices retrying; 8 event streams cover a few devices and browser tabs. The global
// bounds keep memory and store connections in check on a small machine (a pull reads
// into a spool, so 32 pulls at once hold at most 32 spools), and 4096 streams leave
// most of a typical 20k-descriptor limit to everything else.
var DefaultLimits = Limits{
	PullsPerUser: 4, Pulls: 32,
	PushesPerUser: 4, Pushes: 32,
	StreamsPerUser: 8, Streams: 4096,
	LargeBodies: 2, LargeBody: 1 << 20,
	Wait: 10 * time.Second,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	pick := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	pick(&l.PullsPerUser, d.PullsPerUser)
	pick(&l.Pulls, d.Pulls)
	pick(&l.PushesPerUser, d.PushesPerUser)
	pick(&l.Pushes, d.Pushes)
	pick(&l.StreamsPerUser, d.StreamsPerUser)
	pick(&l.Streams, d.Streams)
	pick(&l.LargeBodies, d.LargeBodies)
	if l.LargeBody == 0 {
		l.LargeBody = d.LargeBody
	}
	if l.Wait <= 0 {
		l.Wait = d.Wait
	}
	return l
}

// gate bounds one kind of request: at most perUser at once for one user and at
// most len(slots) at once in all.
type gate struct {
	kind    string // "pulls", "pushes", "event streams": for messages
	perUser int    // ≤ 0: no per-user bound
	slots   chan struct{}
	wait    time.Duration

	mu    sync.Mutex
	users map[string]int
}

func newGate(kind string, perUser, global int, wait time.Duration) *gate {
	g := &gate{kind: kind, perUser: perUser, wait: wait, users: map[string]int{}}
	if global > 0 {
		g.slots = make(chan struct{}, global)
	}
	return g
}

// enter takes a slot for user and a global one, or returns a 429 (user over its
// bound) or 503 (no global slot within the wait) error. The returned func gives both
// back.
func (g *gate) enter(ctx context.Context, user string) (func(), error) {
	leave, err := g.user(user)
	if err != nil {
		return nil, err
	}
	release, err := g.global(ctx)
	if err != nil {
		leave()
		return nil, err
	}
	return func() { release(); leave() }, nil
}

// user takes one of user's slots, or returns a 429 error.
func (g *gate) user(user string) (func(), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perUser > 0 && g.users[user] >= g.perUser {
		return nil, &melonsync.Error{Code: melonsync.ETooMany,
			Message: fmt.Sprintf("too many %s at once for this user (the limit is %d); try again later", g.kind, g.perUser),
			Details: map[string]any{"limit": g.perUser, "retryAfter": 1}}
	}
	g.users[user]++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			if g.users[user]--; g.users[user] <= 0 {
				delete(g.users, user)
			}
			g.mu.Unlock()
		})
	}, nil
}

// global takes one of the global slots, or returns a 503 error after the wait.
func (g *gate) global(ctx context.Context) (func(), error) {
	if g.slots == nil {
		return func() {}, nil
	}
	if err := take(ctx, g.slots, g.wait, g.kind); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { <-g.slots }) }, nil
}

// take puts a token into slots, waiting up to wait.
func take(ctx context.Context, slots chan struct{}, wait time.Duration, kind string) error {
	select {
	case slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return &melonsync.Error{Code: melonsync.EUnavailable,
			Message: "the server is busy with other " + kind + "; try again later",
			Details: map[string]any{"retryAfter": 2}}
	}
}

// gates holds a Handler's bounds.
type gates struct {
	pulls, pushes, streams *gate
	large                  chan struct{} // nil: large bodies are not bounded
	largeSize              int64
	wait                   time.Duration
}

func newGates(l Limits) *gates {
	l = l.withDefaults()
	g := &gates{
		pulls:     newGate("pulls", l.PullsPerUser, l.Pulls, l.Wait),
		pushes:    newGate("pushes", l.PushesPerUser, l.Pushes, l.Wait),
		streams:   newGate("event streams", l.StreamsPerUser, l.Streams, 0), // an FD each: no queue
		largeSize: l.LargeBody,
		wait:      l.Wait,
	}
	if l.LargeBodies > 0 {
		g.large = make(chan struct{}, l.LargeBodies)
	}
	return g
}
