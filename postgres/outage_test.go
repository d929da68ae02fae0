package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server/storetest"
)

// TestTerminateConnections kills the server's PostgreSQL connections
// (pg_terminate_backend) again and again while clients push and pull: requests in
// the way get 503 (never 500), the server recovers by itself, and every push it
// acknowledged is there at the end.
func TestTerminateConnections(t *testing.T) {
	app := fmt.Sprintf("melonsync_outage_%d", time.Now().UnixNano())
	outage(t, app, func(ctx context.Context, stop <-chan struct{}) int {
		conn, err := pgx.Connect(ctx, testDSN(t))
		if err != nil {
			t.Error(err)
			return 0
		}
		defer conn.Close(context.Background())
		killed := 0
		for {
			select {
			case <-stop:
				return killed
			case <-time.After(200 * time.Millisecond):
			}
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n); err != nil {
				t.Error(err)
				return killed
			}
			killed += n
		}
	})
}

// TestRestartPostgres restarts PostgreSQL itself mid-run with the shell command in
// $MELONSYNC_TEST_POSTGRES_RESTART (for example
// "pg_ctlcluster --skip-systemctl-redirect 15 main restart"); skipped when unset,
// since it disturbs everything else using that server.
func TestRestartPostgres(t *testing.T) {
	command := os.Getenv("MELONSYNC_TEST_POSTGRES_RESTART")
	if command == "" {
		t.Skip("MELONSYNC_TEST_POSTGRES_RESTART is not set")
	}
	app := fmt.Sprintf("melonsync_restart_%d", time.Now().UnixNano())
	outage(t, app, func(ctx context.Context, stop <-chan struct{}) int {
		time.Sleep(time.Second)
		out, err := exec.CommandContext(ctx, "sh", "-c", command).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", command, err, out)
		}
		<-stop
		return 1
	})
}

// outage serves the todo schema from a store whose connections carry application_name
// app, runs pushers and a puller for a few seconds while disrupt runs, then checks
// recovery and that nothing acknowledged was lost.
func outage(t *testing.T, app string, disrupt func(ctx context.Context, stop <-chan struct{}) int) {
	u, err := url.Parse(testDSN(t))
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Skip("MELONSYNC_TEST_POSTGRES is not a postgres:// URL")
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	name := newSchemaName(t)
	store, err := postgres.Open(context.Background(), u.String(), postgres.WithSchema(name), postgres.WithStatementTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	h := storetest.NewHarness(t, store)
	srv := testutil.NewServer(t, h.Svc, mhttp.Options{})
	auth := srv.Auth
	tok, _ := auth.Mint("alice", time.Hour)
	hc := &http.Client{Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var (
		mu           sync.Mutex
		acknowledged []string
		unavailable  atomic.Int64
		retried      atomic.Int64
		cut          atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const pushers = 4
	for p := 0; p < pushers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			cl := &syncClient{base: srv.URL, token: tok, device: fmt.Sprintf("dev%d", p), hc: hc}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("r%d_%d", p, i)
				ch := melonsync.Changes{"tasks": {Created: []melonsync.RawRecord{{"id": id, "name": "x"}}, Updated: []melonsync.RawRecord{}, Deleted: []string{}}}
				// Retry the same push until it is acknowledged, as a client does. A
				// push whose answer was lost may have committed: the retry from the
				// same device is then not a conflict.
				for attempt := 0; ; attempt++ {
					_, st, err := cl.push(ctx, 0, ch)
					if err == nil {
						break
					}
					if st != http.StatusServiceUnavailable || attempt > 200 || ctx.Err() != nil {
						t.Errorf("push %s: status %d: %v", id, st, err)
						return
					}
					unavailable.Add(1)
					if attempt > 0 {
						retried.Add(1)
					}
					time.Sleep(50 * time.Millisecond)
				}
				mu.Lock()
				acknowledged = append(acknowledged, id)
				mu.Unlock()
			}
		}(p)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl := &syncClient{base: srv.URL, token: tok, device: "reader", hc: hc}
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, st, err := cl.pull(ctx, 0)
			switch {
			case err == nil:
			case st == http.StatusServiceUnavailable:
				unavailable.Add(1)
			case st == http.StatusOK && errors.Is(err, io.ErrUnexpectedEOF):
				// The answer streams: a connection killed mid-answer cuts it off,
				// and the client sees a broken body, never a short valid one.
				cut.Add(1)
			default:
				t.Errorf("pull: status %d: %v", st, err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	disrupted := make(chan int, 1)
	stopDisrupt := make(chan struct{})
	go func() { disrupted <- disrupt(ctx, stopDisrupt) }()
	time.Sleep(6 * time.Second)
	close(stopDisrupt)
	kills := <-disrupted
	// Let the pushers run on undisturbed for a moment: the server must recover.
	mu.Lock()
	before := len(acknowledged)
	mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(acknowledged)
		mu.Unlock()
		if n >= before+2*pushers {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	after := len(acknowledged)
	mu.Unlock()
	if after < before+2*pushers {
		t.Fatalf("the server did not recover: %d pushes acknowledged in 15 s after the outage", after-before)
	}
	if t.Failed() {
		return
	}
	resp, err := hc.Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz after the outage: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Every acknowledged push is there, once.
	r := h.PullFrom("alice", "check", 0)
	have := map[string]bool{}
	for _, id := range storetest.IDs(r.Changes["tasks"].Created) {
		have[id] = true
	}
	lost := 0
	for _, id := range acknowledged {
		if !have[id] {
			lost++
			t.Errorf("acknowledged push of %s is lost", id)
		}
	}
	t.Logf("%d disruptions (connections killed, or restarts); %d pushes acknowledged, %d answers 503 (%d on retries), %d pull answers cut off; lost: %d",
		kills, len(acknowledged), unavailable.Load(), retried.Load(), cut.Load(), lost)
	if kills == 0 {
		t.Errorf("nothing was disrupted")
	}
}
