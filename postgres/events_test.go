package postgres_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
)

// TestEventsOnce: with the store's notifications forwarded (as "melonsync serve"
// does), the process that took a push announces it once, not a second time when its
// own NOTIFY comes back; and not to the pushing device, on this process or another.
func TestEventsOnce(t *testing.T) {
	store := openTestStore(t)
	h := storetest.NewHarness(t, store)
	auth, _ := mhttp.NewAuth([]byte("events-test-secret-0123456789"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var urls []string
	// Two server processes sharing the store; pushes go through the first (h.Svc).
	for _, svc := range []*server.Service{h.Svc, server.New(store, h.Schema)} {
		go svc.WatchStore(ctx)
		hd := mhttp.NewHandler(svc, mhttp.Options{Auth: auth})
		srv := httptest.NewServer(hd)
		defer srv.Close()
		defer hd.Close() // ends the streams, or Close waits for them
		urls = append(urls, srv.URL)
	}
	tok, _ := auth.Mint("alice", time.Hour)
	open := func(url, device string) chan string {
		req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/sync/events", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Melon-Device", device)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("events: %v %v", resp, err)
		}
		ch := make(chan string, 16)
		go func() {
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if l := sc.Text(); strings.HasPrefix(l, "data: ") {
					ch <- l
				}
			}
		}()
		<-ch // ready
		return ch
	}
	here := open(urls[0], "laptop")
	there := open(urls[1], "tablet")
	ownHere := open(urls[0], "phone")
	ownThere := open(urls[1], "phone")
	time.Sleep(300 * time.Millisecond) // the watchers LISTEN by now
	var got [2][]string
	for i := range 3 {
		resp := h.MustPush("alice", "phone", 0, `{"projects":{"created":[{"id":"e`+string(rune('0'+i))+`","name":"x"}]}}`)
		want := "data: {\"timestamp\":" + itoa(resp.Timestamp) + "}"
		for j, ch := range []chan string{here, there} {
			select {
			case e := <-ch:
				if e != want {
					t.Errorf("push %d, stream %d: %q, want %q", i, j, e, want)
				}
				got[j] = append(got[j], e)
			case <-time.After(10 * time.Second):
				t.Fatalf("push %d: stream %d got nothing", i, j)
			}
		}
	}
	time.Sleep(time.Second) // room for a second copy of any event
	for j, ch := range []chan string{here, there, ownHere, ownThere} {
		select {
		case e := <-ch:
			t.Errorf("stream %d: an extra event %q (after %v)", j, e, got)
		default:
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestWatchCatchesUpAfterReconnect: a write committed while a process's LISTEN
// connection is gone (terminated here, as a failover or a restart does) still reaches
// that process's listeners once the watch is back, without a later write to carry it.
func TestWatchCatchesUpAfterReconnect(t *testing.T) {
	store := openTestStore(t)
	h := storetest.NewHarness(t, store)
	other := server.New(store, h.Schema) // the process whose listener is cut
	ch, stop := other.Feed().Subscribe("alice", "tablet")
	defer stop()
	clock, err := other.Clock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	other.Feed().Skip("alice", ch, clock)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchErr := make(chan error, 4)
	rewatch := make(chan struct{})
	go func() { // as "melonsync serve" does: watch again after a failure, once told to
		for ctx.Err() == nil {
			watchErr <- other.WatchStore(ctx)
			select {
			case <-rewatch:
			case <-ctx.Done():
			}
		}
	}()
	var inst string
	pool := store.Pool()
	if err := pool.QueryRow(ctx, `SELECT value FROM __melon_meta WHERE key = 'instance'`).Scan(&inst); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for { // the watch is listening
		var n int
		pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'SELECT max(version)%'`, "melonsync watch "+inst).Scan(&n)
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var killed int
	if err := pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, "melonsync watch "+inst).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listeners (%v)", killed, err)
	}
	select {
	case err := <-watchErr:
		if err == nil {
			t.Fatal("the watch ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not notice its connection was terminated")
	}
	// While nobody listens, another device pushes.
	resp := h.MustPush("alice", "phone", 0, `{"projects":{"created":[{"id":"while-down","name":"x"}]}}`)
	select {
	case v := <-ch:
		t.Fatalf("version %d arrived with no watch", v)
	case <-time.After(300 * time.Millisecond):
	}
	close(rewatch)
	select {
	case v := <-ch:
		if v < resp.Timestamp {
			t.Errorf("caught up to %d, the push was %d", v, resp.Timestamp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the push made while the watch was down never reached the listener")
	}
}
