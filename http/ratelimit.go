package http

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/melonsync/melonsync"
)

// RateOptions sets the request rates a RateLimiter allows. A zero rate turns that
// limit off.
type RateOptions struct {
	// PerUser is the sustained requests per second of one user (all devices), with
	// bursts of up to UserBurst requests.
	PerUser   float64
	UserBurst int
	// PerDevice is the same for one device of one user (requests without
	// X-Melon-Device count as one device).
	PerDevice   float64
	DeviceBurst int
	// Idle is how long a user's or device's limiter is kept unused (default 10 min).
	Idle time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// On reports whether any limit is set.
func (o RateOptions) On() bool { return o.PerUser > 0 || o.PerDevice > 0 }

// RateLimiter is middleware that limits the sync routes' requests per user and per
// device (golang.org/x/time/rate token buckets). A request over a limit gets 429
// too_many_requests with Retry-After; unauthenticated requests pass through to be refused
// by the handler.
type RateLimiter struct {
	next http.Handler
	auth *Auth
	opts RateOptions

	mu        sync.Mutex
	users     map[string]*limiter
	devices   map[deviceKey]*limiter
	lastSweep time.Time
}

type limiter struct {
	lim  *rate.Limiter
	used time.Time
}

type deviceKey struct{ user, device string }

// NewRateLimiter wraps next with the limits of opts; auth tells users apart.
func NewRateLimiter(next http.Handler, auth *Auth, opts RateOptions) *RateLimiter {
	if opts.Idle <= 0 {
		opts.Idle = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.UserBurst = max(opts.UserBurst, 1)
	opts.DeviceBurst = max(opts.DeviceBurst, 1)
	// A limiter forgotten before it refilled would hand out a fresh burst.
	for _, refill := range []float64{float64(opts.UserBurst) / opts.PerUser, float64(opts.DeviceBurst) / opts.PerDevice} {
		if d := time.Duration(refill * float64(time.Second)); refill > 0 && !math.IsInf(refill, 0) && d > opts.Idle {
			opts.Idle = d
		}
	}
	return &RateLimiter{next: next, auth: auth, opts: opts, users: map[string]*limiter{}, devices: map[deviceKey]*limiter{}}
}

// Close closes the wrapped handler when it has a Close (event streams end).
func (l *RateLimiter) Close() {
	if c, ok := l.next.(interface{ Close() }); ok {
		c.Close()
	}
}

// limited routes: the sync protocol's (not /healthz, /metrics or /admin/).
func limited(path string) bool {
	switch path {
	case "/api/sync/pull", "/api/sync/push", "/sync", "/api/sync/events":
		return true
	}
	return false
}

// ServeHTTP implements http.Handler.
func (l *RateLimiter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !limited(r.URL.Path) || r.Method == http.MethodOptions {
		l.next.ServeHTTP(w, r)
		return
	}
	user, err := l.auth.Verify(r.Header.Get("Authorization"))
	if err != nil {
		l.next.ServeHTTP(w, r)
		return
	}
	if wait, scope := l.reserve(user, r.Header.Get(melonsync.HeaderDevice)); wait > 0 {
		secs := int64(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		writeJSON(w, r, http.StatusTooManyRequests, map[string]any{"error": wireError{
			Code:    melonsync.ETooMany,
			Message: "too many requests for this " + scope + "; retry in " + strconv.FormatInt(secs, 10) + " s",
			Details: map[string]any{"scope": scope, "retryAfter": secs},
		}})
		return
	}
	l.next.ServeHTTP(w, r)
}

// reserve takes one token from the device's and the user's buckets, or none: it
// returns how long to wait and which limit refused ("device" or "user").
func (l *RateLimiter) reserve(user, device string) (time.Duration, string) {
	now := l.opts.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	var dev *rate.Reservation
	if l.opts.PerDevice > 0 {
		d := get(l.devices, deviceKey{user, device}, now, l.opts.PerDevice, l.opts.DeviceBurst)
		dev = d.ReserveN(now, 1)
		if wait := dev.DelayFrom(now); wait > 0 {
			dev.CancelAt(now)
			return wait, "device"
		}
	}
	if l.opts.PerUser > 0 {
		u := get(l.users, user, now, l.opts.PerUser, l.opts.UserBurst)
		res := u.ReserveN(now, 1)
		if wait := res.DelayFrom(now); wait > 0 {
			res.CancelAt(now)
			if dev != nil {
				dev.CancelAt(now)
			}
			return wait, "user"
		}
	}
	return 0, ""
}

func get[K comparable](m map[K]*limiter, k K, now time.Time, r float64, burst int) *rate.Limiter {
	e := m[k]
	if e == nil {
		e = &limiter{lim: rate.NewLimiter(rate.Limit(r), burst)}
		m[k] = e
	}
	e.used = now
	return e.lim
}

// sweep forgets limiters unused for opts.Idle (they are full again by then anyway,
// as long as Idle ≥ burst / rate).
func (l *RateLimiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Minute {
		return
	}
	l.lastSweep = now
	for k, e := range l.users {
		if now.Sub(e.used) > l.opts.Idle {
			delete(l.users, k)
		}
	}
	for k, e := range l.devices {
		if now.Sub(e.used) > l.opts.Idle {
			delete(l.devices, k)
		}
	}
}
