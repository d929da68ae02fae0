package postgres_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server/storetest"
)

// TestRestartUnderLoad stops and starts a PostgreSQL cluster of the test's own — in
// fast mode, then in immediate mode (a crash: the start recovers from the WAL) —
// while clients of two users push and pull. While it is down the server answers 503
// and /healthz says so; after each start it serves again by itself; at the end every
// acknowledged push is there, every failed one wholly or not at all, and every
// puller holds exactly what the store does.
func TestRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	cluster := testutil.NewPostgresCluster(t)
	store, err := postgres.Open(context.Background(), cluster.DSN, postgres.WithSchema("melon_restart"),
		postgres.WithStatementTimeout(5*time.Second), postgres.WithReadTimeout(5*time.Second), postgres.WithAcquireTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	h := storetest.NewHarness(t, store)
	srv := testutil.NewServer(t, h.Svc, mhttp.Options{})
	tokens := map[string]string{"alice": srv.Token(t, "alice"), "bob": srv.Token(t, "bob")}
	load := newSyncLoad(t, srv.URL, tokens, 3, 2)
	defer func() {
		if t.Failed() {
			t.Logf("PostgreSQL log:\n%s", cluster.Log())
		}
	}()
	time.Sleep(time.Second)
	for _, mode := range []string{"fast", "immediate", "fast", "immediate"} {
		before := load.acks()
		stopped := time.Now()
		if err := cluster.Stop(mode); err != nil {
			t.Fatal(err)
		}
		if !testutil.WaitFor(10*time.Second, func() bool {
			h := load.healthSince(stopped)
			return len(h) > 0 && h[len(h)-1] == http.StatusServiceUnavailable
		}) {
			t.Errorf("/healthz did not answer 503 while PostgreSQL was stopped: %v", load.healthSince(stopped))
		}
		time.Sleep(500 * time.Millisecond) // clients keep trying against a stopped server
		if err := cluster.Start(); err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		if err := load.waitRecovered(20*time.Second, 6); err != nil {
			t.Fatalf("after a %s restart: %v", mode, err)
		}
		t.Logf("%s restart: down %v, serving again %v after the start; %d pushes acknowledged around it; %s",
			mode, started.Sub(stopped).Round(time.Millisecond), time.Since(started).Round(time.Millisecond), load.acks()-before, load.Summary())
		time.Sleep(500 * time.Millisecond)
	}
	load.Check(h)
	t.Logf("%d requests: %s", load.requests.Load(), load.Summary())
}
