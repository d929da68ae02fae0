package postgres_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/internal/testutil/faultproxy"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server/storetest"
)

// TestNetworkFaults puts a TCP proxy between the store and PostgreSQL and, while
// clients of two users push and pull, adds latency, cuts every connection, cuts
// answers mid-way, refuses connections and swallows everything for a while. Every
// acknowledged push must be in the store at the end, every failed one wholly or not
// at all, and no pull may skip anything; the server answers 503 (never 500, never a
// hang) while PostgreSQL cannot be reached, says so on /healthz, and recovers by
// itself.
func TestNetworkFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("a load of some 25 s")
	}
	dsn := testDSN(t)
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		t.Skip("MELONSYNC_TEST_POSTGRES is not a postgres:// URL with a host")
	}
	upstream := u.Host
	if u.Port() == "" {
		upstream = net.JoinHostPort(u.Hostname(), "5432")
	}
	proxy, err := faultproxy.New(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	u.Host = proxy.Addr()
	store, err := postgres.Open(context.Background(), u.String(), postgres.WithSchema(newSchemaName(t)),
		postgres.WithStatementTimeout(3*time.Second), postgres.WithReadTimeout(3*time.Second), postgres.WithAcquireTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	h := storetest.NewHarness(t, store)
	srv := testutil.NewServer(t, h.Svc, mhttp.Options{})
	tokens := map[string]string{"alice": srv.Token(t, "alice"), "bob": srv.Token(t, "bob")}
	load := newSyncLoad(t, srv.URL, tokens, 3, 2)

	phase := func(name string, d time.Duration, fault func(), during func()) {
		t.Logf("%s for %v", name, d)
		before, st := load.acks(), proxy.Stats()
		fault()
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			if during != nil {
				during()
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := proxy.Reset(); err != nil {
			t.Fatal(err)
		}
		after := proxy.Stats()
		t.Logf("  %d pushes acknowledged, %d connections cut; %s", load.acks()-before, after.Cut-st.Cut, load.Summary())
	}
	phase("no fault", time.Second, func() {}, nil)
	phase("40 ms latency each way", 2*time.Second, func() { proxy.SetLatency(40 * time.Millisecond) }, nil)
	phase("every connection cut every 300 ms", 3*time.Second, func() {}, func() {
		proxy.CutAll()
		time.Sleep(200 * time.Millisecond)
	})
	phase("connections cut after 3 kB from PostgreSQL", 2*time.Second, func() { proxy.CutAfter(faultproxy.Down, 3000) }, nil)
	phase("connections cut after 2 kB to PostgreSQL", 2*time.Second, func() { proxy.CutAfter(faultproxy.Up, 2000) }, nil)
	if err := load.waitRecovered(15*time.Second, 6); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	phase("PostgreSQL down (connections cut and refused)", 3*time.Second, func() {
		proxy.Refuse()
		proxy.CutAll()
	}, nil)
	checkHealthReported(t, load, down)
	if err := load.waitRecovered(15*time.Second, 6); err != nil {
		t.Fatal(err)
	}
	hole := time.Now()
	const holeFor = 10 * time.Second
	phase("a black hole", holeFor, func() { proxy.Blackhole() }, nil)
	checkHealthReported(t, load, hole)
	// Requests sent into the hole are answered 503 within the bounds (the acquire
	// timeout plus the statement or read timeout), not left hanging until it heals.
	for _, route := range []string{"push", "pull"} {
		n := 0
		for _, a := range load.answered(route, hole, hole.Add(holeFor)) {
			if a.status == http.StatusServiceUnavailable {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no %s was answered 503 during a %v black hole", route, holeFor)
		}
	}
	if err := load.waitRecovered(15*time.Second, 6); err != nil {
		t.Fatal(err)
	}
	load.Check(h) // stops the clients: every request has its answer now
	const bound = 2*time.Second + 3*time.Second + 1500*time.Millisecond
	for _, route := range []string{"push", "pull"} {
		for _, a := range load.answered(route, hole, time.Now()) {
			if d := a.end.Sub(a.start); d > bound && a.start.Before(hole.Add(holeFor)) {
				t.Errorf("a %s sent into the black hole took %v (status %d), more than %v", route, d.Round(time.Millisecond), a.status, bound)
			}
		}
	}
	t.Logf("%d requests: %s", load.requests.Load(), load.Summary())
}

// checkHealthReported checks that /healthz answered 503 at some point since t, and
// never anything but 200 or 503.
func checkHealthReported(t *testing.T, load *syncLoad, since time.Time) {
	t.Helper()
	seen := false
	for _, st := range load.healthSince(since) {
		switch st {
		case http.StatusServiceUnavailable:
			seen = true
		case http.StatusOK:
		default:
			t.Errorf("/healthz answered %d", st)
		}
	}
	if !seen {
		t.Errorf("/healthz never answered 503 while PostgreSQL could not be reached: %v", load.healthSince(since))
	}
}
