package http_test

import (
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newLimitedEnv(t *testing.T, o mhttp.RateOptions) (*env, *fakeClock) {
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	h := storetest.NewHarness(t, store)
	auth, _ := mhttp.NewAuth(secret)
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	o.Now = clock.Now
	srv := httptest.NewServer(mhttp.NewRateLimiter(mhttp.NewHandler(h.Svc, mhttp.Options{Auth: auth}), auth, o))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, auth: auth, store: store}, clock
}

func TestRateLimitPerDevice(t *testing.T) {
	e, clock := newLimitedEnv(t, mhttp.RateOptions{PerDevice: 2, DeviceBurst: 5})
	pull := func(user, device string) reply {
		hdr := map[string]string{"Authorization": "Bearer " + e.token(user), melonsync.HeaderDevice: device}
		return e.do("POST", "/api/sync/pull", hdr, []byte(`{"lastPulledAt":null}`))
	}
	// A burst of 20 at one instant: the first 5 pass, the rest are refused.
	ok, refused := 0, 0
	for range 20 {
		r := pull("alice", "phone")
		switch r.status {
		case 200:
			ok++
		case 429:
			refused++
			if r.header.Get("Retry-After") != "1" {
				t.Errorf("Retry-After = %q, want 1", r.header.Get("Retry-After"))
			}
			if !strings.Contains(string(r.body), `"code":"too_many_requests"`) || !strings.Contains(string(r.body), `"scope":"device"`) {
				t.Errorf("429 body: %s", r.body)
			}
		default:
			t.Fatalf("status %d %s", r.status, r.body)
		}
	}
	if ok != 5 || refused != 15 {
		t.Errorf("burst of 20: %d passed, %d refused; want 5 and 15", ok, refused)
	}
	// Another device of the same user, and another user, are not affected.
	if r := pull("alice", "laptop"); r.status != 200 {
		t.Errorf("alice's laptop: %d", r.status)
	}
	if r := pull("bob", "phone"); r.status != 200 {
		t.Errorf("bob's phone: %d", r.status)
	}
	// A normal client (one request every 600 ms, under 2/s) is never refused.
	for i := range 50 {
		clock.Add(600 * time.Millisecond)
		if r := pull("carol", "phone"); r.status != 200 {
			t.Fatalf("the steady client's request %d: %d %s", i, r.status, r.body)
		}
	}
	// Once the bucket refilled, the bursting device passes again.
	clock.Add(3 * time.Second)
	if r := pull("alice", "phone"); r.status != 200 {
		t.Errorf("after the refill: %d", r.status)
	}
	// Unauthenticated requests are not counted: they get the handler's 401.
	if r := e.do("POST", "/api/sync/pull", nil, nil); r.status != 401 {
		t.Errorf("no token: %d", r.status)
	}
	if r := e.do("GET", "/healthz", nil, nil); r.status != 200 {
		t.Errorf("healthz: %d", r.status)
	}
}

func TestRateLimitPerUser(t *testing.T) {
	e, clock := newLimitedEnv(t, mhttp.RateOptions{PerUser: 1, UserBurst: 3, PerDevice: 10, DeviceBurst: 10})
	pull := func(device string) int {
		hdr := map[string]string{"Authorization": "Bearer " + e.token("alice"), melonsync.HeaderDevice: device}
		r := e.do("POST", "/api/sync/pull", hdr, []byte(`{"lastPulledAt":null}`))
		if r.status == 429 && (!strings.Contains(string(r.body), `"scope":"user"`) || r.header.Get("Retry-After") == "") {
			t.Errorf("429 body: %s %v", r.body, r.header)
		}
		return r.status
	}
	// Three devices of one user share the user's bucket of 3.
	got := []int{pull("a"), pull("b"), pull("c"), pull("a"), pull("b")}
	if want := []int{200, 200, 200, 429, 429}; !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	clock.Add(time.Second)
	if s := pull("c"); s != 200 {
		t.Errorf("after a second: %d", s)
	}
}
