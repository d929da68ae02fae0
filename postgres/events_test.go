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
