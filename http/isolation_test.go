package http_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

// eachStore runs fn on a fresh SQLite store and, when MELONSYNC_TEST_POSTGRES is
// set, on a fresh PostgreSQL schema.
func eachStore(t *testing.T, fn func(t *testing.T, store server.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		store, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		fn(t, store)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := os.Getenv("MELONSYNC_TEST_POSTGRES")
		if dsn == "" {
			t.Skip("MELONSYNC_TEST_POSTGRES is not set")
		}
		b := make([]byte, 6)
		rand.Read(b)
		name := "melon_test_" + hex.EncodeToString(b)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if conn, err := pgx.Connect(ctx, dsn); err == nil {
				conn.Exec(ctx, `DROP SCHEMA IF EXISTS "`+name+`" CASCADE`)
				conn.Close(ctx)
			}
		})
		store, err := postgres.Open(context.Background(), dsn, postgres.WithSchema(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		fn(t, store)
	})
}

// fillUser pushes n tasks of about 200 bytes each for user.
func fillUser(t *testing.T, h *storetest.Harness, user string, n int) {
	t.Helper()
	pad := strings.Repeat("x", 120)
	for start := 0; start < n; start += 5000 {
		var recs []string
		for i := start; i < min(start+5000, n); i++ {
			recs = append(recs, fmt.Sprintf(`{"id":"%s%d","project_id":"p1","name":"Task %d %s","is_done":false,"position":%d}`, user, i, i, pad, i))
		}
		h.MustPush(user, "", 0, `{"tasks":{"created":[`+strings.Join(recs, ",")+`],"updated":[],"deleted":[]}}`)
	}
}

// slowPull sends a first-sync pull on a raw connection and never reads the answer.
func slowPull(t *testing.T, addr, token string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 10) // take as little of the answer as the kernel lets us
	}
	body := `{"lastPulledAt":null}`
	fmt.Fprintf(c, "POST /api/sync/pull HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", token, len(body), body)
	return c
}

// timedPull is one first-sync pull of user over a normal client, with its time.
func timedPull(ctx context.Context, url, token string) (time.Duration, int, error) {
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/api/sync/pull", strings.NewReader(`{"lastPulledAt":null}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return time.Since(start), 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return time.Since(start), resp.StatusCode, err
}

// TestSlowReadersDoNotStallOthers: mallory opens a dozen first-sync pulls of a large
// data set and reads none of them; alice's pulls and pushes still answer within a
// small bound of their time without the attack. The same attack with pulls
// streamed from the read transaction and no bounds (the old way) stalls alice, which
// shows the test can fail.
func TestSlowReadersDoNotStallOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a large data set")
	}
	eachStore(t, func(t *testing.T, store server.Store) {
		h := storetest.NewHarness(t, store)
		fillUser(t, h, "mallory", 100_000) // ~20 MB of JSON per pull, beyond socket buffers
		fillUser(t, h, "alice", 200)
		auth, err := mhttp.NewAuth(secret)
		if err != nil {
			t.Fatal(err)
		}
		mint := func(u string) string { tok, _ := auth.Mint(u, time.Hour); return tok }

		attack := func(t *testing.T, opts mhttp.Options, patience time.Duration) (base, worst time.Duration, failed int, statuses map[string]int) {
			opts.Auth = auth
			srv := httptest.NewServer(mhttp.NewHandler(h.Svc, opts))
			defer srv.Close()
			alice := mint("alice")
			for i := 0; i < 3; i++ { // the bound's baseline: alice's pull alone
				d, code, err := timedPull(context.Background(), srv.URL, alice)
				if err != nil || code != 200 {
					t.Fatalf("baseline pull: %v %d", err, code)
				}
				if i == 0 || d > base {
					base = d
				}
			}
			addr := strings.TrimPrefix(srv.URL, "http://")
			var conns []net.Conn
			statuses = map[string]int{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for i := 0; i < 12; i++ {
				c := slowPull(t, addr, mint("mallory"))
				conns = append(conns, c)
				wg.Add(1)
				go func() { // peek at the status line only, never the body
					defer wg.Done()
					c.SetReadDeadline(time.Now().Add(3 * time.Second))
					line, _ := bufio.NewReaderSize(c, 16).ReadString('\n')
					mu.Lock()
					statuses[strings.TrimSpace(line)]++
					mu.Unlock()
				}()
			}
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			wg.Wait()
			time.Sleep(500 * time.Millisecond) // let the accepted pulls fill their sockets
			for i := 0; i < 3; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), patience)
				d, code, err := timedPull(ctx, srv.URL, alice)
				cancel()
				if err != nil || code != 200 {
					failed++
					continue
				}
				worst = max(worst, d)
			}
			ctx, cancel := context.WithTimeout(context.Background(), patience)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/api/sync/push", strings.NewReader(`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"alice-during","name":"x"}]}}}`))
			req.Header.Set("Authorization", "Bearer "+alice)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				failed++
			}
			if resp != nil {
				resp.Body.Close()
			}
			return base, worst, failed, statuses
		}

		t.Run("bounded", func(t *testing.T) {
			base, worst, failed, statuses := attack(t, mhttp.Options{}, 5*time.Second)
			t.Logf("alice's pull: %v alone, at worst %v during the attack; mallory's pulls: %v", base, worst, statuses)
			if failed > 0 {
				t.Fatalf("%d of alice's requests failed or timed out during the attack", failed)
			}
			if worst > base+2*time.Second {
				t.Errorf("alice's pull took %v during the attack, %v alone", worst, base)
			}
			if statuses["HTTP/1.1 429 Too Many Requests"] != 12-mhttp.DefaultLimits.PullsPerUser {
				t.Errorf("mallory's pulls: %v; want %d refused with 429", statuses, 12-mhttp.DefaultLimits.PullsPerUser)
			}
		})
		t.Run("unbounded streaming stalls", func(t *testing.T) {
			unbounded := mhttp.Limits{PullsPerUser: -1, Pulls: -1, PushesPerUser: -1, Pushes: -1}
			_, _, failed, _ := attack(t, mhttp.Options{StreamPulls: true, Limits: unbounded}, 1500*time.Millisecond)
			if failed == 0 {
				t.Errorf("the old way did not stall alice: the attack is too weak to test anything")
			}
		})
	})
}

// TestLimitsRefuseBeyondTheirBounds: event streams over the user's bound get 429,
// over the global bound 503, both with Retry-After, the error JSON and the
// connection closed; a large body waits for a large-body slot and gets 503 when none
// frees up, while small pushes go on.
func TestLimitsRefuseBeyondTheirBounds(t *testing.T) {
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h := storetest.NewHarness(t, store)
	auth, _ := mhttp.NewAuth(secret)
	limits := mhttp.Limits{StreamsPerUser: 2, Streams: 3, LargeBodies: 1, LargeBody: 4 << 10, Wait: 300 * time.Millisecond}
	srv := httptest.NewServer(mhttp.NewHandler(h.Svc, mhttp.Options{Auth: auth, Limits: limits}))
	defer srv.Close()
	mint := func(u string) string { tok, _ := auth.Mint(u, time.Hour); return tok }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := func(user string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/sync/events", nil)
		req.Header.Set("Authorization", "Bearer "+mint(user))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	refused := func(resp *http.Response, status int, code string) {
		t.Helper()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != status || resp.Header.Get("Retry-After") == "" || !resp.Close {
			t.Fatalf("status %d, Retry-After %q, close %v: %s", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close, b)
		}
		if got := errorCode(t, b); got != code {
			t.Fatalf("code %q, want %q", got, code)
		}
	}
	for i := 0; i < 2; i++ {
		if r := stream("alice"); r.StatusCode != 200 {
			t.Fatalf("alice's stream %d: %d", i, r.StatusCode)
		}
	}
	refused(stream("alice"), 429, "too_many_requests")
	if r := stream("bob"); r.StatusCode != 200 {
		t.Fatalf("bob's stream: %d", r.StatusCode)
	}
	refused(stream("carol"), 503, "unavailable")

	// A large push that sends half its body and stalls holds the one large slot.
	big := `{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"big","name":"` + strings.Repeat("y", 16<<10) + `"}]}}}`
	pr, pw := io.Pipe()
	done := make(chan int)
	go func() {
		req, _ := http.NewRequest("POST", srv.URL+"/api/sync/push", pr)
		req.Header.Set("Authorization", "Bearer "+mint("alice"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	pw.Write([]byte(big[:8<<10]))
	time.Sleep(200 * time.Millisecond)
	defer pw.Close()
	push := func(user, body string) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL+"/api/sync/push", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+mint(user))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if r := push("bob", `{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"small","name":"s"}]}}}`); r.StatusCode != 200 {
		t.Fatalf("a small push while a large one is read: %d", r.StatusCode)
	}
	refused(push("bob", strings.Replace(big, `"big"`, `"big2"`, 1)), 503, "unavailable")
	pw.Write([]byte(big[8<<10:]))
	pw.Close()
	if code := <-done; code != 200 {
		t.Fatalf("the large push: %d", code)
	}
}

// TestNULInStrings: U+0000 in a pushed string is stored as U+FFFD on both stores (the
// push succeeds and pulls back the same value everywhere); a token whose user id holds
// U+0000 is refused with 401, never a 500.
func TestNULInStrings(t *testing.T) {
	eachStore(t, func(t *testing.T, store server.Store) {
		h := storetest.NewHarness(t, store)
		auth, _ := mhttp.NewAuth(secret)
		srv := httptest.NewServer(mhttp.NewHandler(h.Svc, mhttp.Options{Auth: auth}))
		defer srv.Close()
		e := &env{t: t, srv: srv, auth: auth, store: store}
		r := e.do("POST", "/api/sync/push", e.as("alice"), []byte(`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"p1","name":"a\u0000b"}]}}}`))
		if r.status != 200 {
			t.Fatalf("push with U+0000: %d %s", r.status, r.body)
		}
		r = e.do("POST", "/api/sync/pull", e.as("alice"), []byte(`{"lastPulledAt":null}`))
		if r.status != 200 || !strings.Contains(string(r.body), `"name":"a`+"\uFFFD"+`b"`) {
			t.Fatalf("pull: %d %s", r.status, r.body)
		}
		tok := signed(jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "eve\x00", "exp": time.Now().Add(time.Hour).Unix()})
		for _, ep := range endpoints {
			if strings.Contains(ep.path, "events") {
				continue // a stream that opened would never end: checked below
			}
			var body []byte
			if ep.body != "" {
				body = []byte(ep.body)
			}
			r := e.do(ep.method, ep.path, map[string]string{"Authorization": "Bearer " + tok}, body)
			if r.status != 401 {
				t.Errorf("%s %s with a U+0000 user id: %d %s", ep.method, ep.path, r.status, r.body)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/sync/events", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 401 {
			t.Errorf("event stream with a U+0000 user id: %v %v", err, resp)
		}
		if resp != nil {
			resp.Body.Close()
		}
	})
}

// TestAbortedPullIsNotAnError: a client that hangs up in the middle of a large pull
// leaves no ERROR line (nor a panic) in the server's log, spooled or streamed.
func TestAbortedPullIsNotAnError(t *testing.T) {
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h := storetest.NewHarness(t, store)
	fillUser(t, h, "alice", 30_000)
	auth, _ := mhttp.NewAuth(secret)
	for _, stream := range []bool{false, true} {
		var logs syncBuffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		srv := httptest.NewServer(mhttp.NewHandler(h.Svc, mhttp.Options{Auth: auth, Logger: log, StreamPulls: stream}))
		tok, _ := auth.Mint("alice", time.Hour)
		for i := 0; i < 3; i++ {
			c := slowPull(t, strings.TrimPrefix(srv.URL, "http://"), tok)
			buf := make([]byte, 4<<10)
			io.ReadFull(c, buf) // the answer has started
			c.Close()
		}
		time.Sleep(300 * time.Millisecond)
		srv.Close()
		if out := logs.String(); strings.Contains(out, "level=ERROR") || strings.Contains(out, "panic") {
			t.Errorf("streamed %v: the log has errors for pulls the client aborted:\n%s", stream, out)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMarkRestored: after "melonsync restored" (MarkRestored), a device whose
// lastPulledAt came from the lost history gets a replacement even after others wrote
// (without the mark its pull is incremental: the bug); the pull after that
// replacement is incremental again.
func TestMarkRestored(t *testing.T) {
	eachStore(t, func(t *testing.T, store server.Store) {
		h := storetest.NewHarness(t, store)
		h.MustPush("alice", "d1", 0, `{"projects":{"created":[{"id":"kept","name":"x"}]}}`)
		t1 := h.PullFrom("alice", "d1", 0).Timestamp
		h.MustPush("bob", "b1", 0, `{"projects":{"created":[{"id":"b-before","name":"x"}]}}`)
		if s := h.PullFrom("alice", "d1", t1).Strategy; s != "" {
			t.Fatalf("before the mark: strategy %q", s)
		}
		m := store.(interface {
			MarkRestored(context.Context, time.Duration) (int64, error)
		})
		clock, err := m.MarkRestored(context.Background(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if clock < time.Now().Add(50*time.Second).UnixMilli() {
			t.Errorf("clock %d is not past now + margin", clock)
		}
		h.MustPush("bob", "b1", clock, `{"projects":{"created":[{"id":"b-after","name":"x"}]}}`)
		r := h.PullFrom("alice", "d1", t1)
		if r.Strategy != melonsync.StrategyReplacement {
			t.Fatalf("a device from before the restore pulled without replacement: %+v", r)
		}
		if r2 := h.PullFrom("alice", "d1", r.Timestamp); r2.Strategy != "" {
			t.Errorf("the pull after the replacement: strategy %q", r2.Strategy)
		}
	})
}
