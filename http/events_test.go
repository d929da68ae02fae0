package http_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

type sse struct {
	events chan string
}

// listen opens the event stream and sends "event data" lines to a channel.
func listen(t *testing.T, ctx context.Context, url string, hdr map[string]string) *sse {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sse{events: make(chan string, 16)}
	go func() {
		defer resp.Body.Close()
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				s.events <- ev + " " + strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return s
}

func (s *sse) next(t *testing.T) string {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if !ok {
			return "closed"
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
		return ""
	}
}

func TestLiveUpdates(t *testing.T) {
	e := newEnv(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	alice := listen(t, ctx, e.srv.URL+"/api/sync/events", e.as("alice"))
	if ev := alice.next(t); !strings.HasPrefix(ev, `ready {"timestamp":`) {
		t.Fatalf("first event %q", ev)
	}
	// EventSource style: the token in the query.
	viaQuery := listen(t, ctx, e.srv.URL+"/api/sync/events?access_token="+e.token("alice"), nil)
	viaQuery.next(t)

	r := e.do("POST", "/api/sync/push", e.as("bob"), []byte(`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"b1"}]}}}`))
	if r.status != 200 {
		t.Fatal(r.status)
	}
	r = e.do("POST", "/api/sync/push", e.as("alice"), []byte(`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a1"}]}}}`))
	if r.status != 200 {
		t.Fatal(r.status)
	}
	var ts int64
	fmt.Sscanf(string(r.body), `{"ok":true,"timestamp":%d}`, &ts)
	want := fmt.Sprintf(`changes {"timestamp":%d}`, ts)
	// Alice's first change event is her own push, not bob's.
	if ev := alice.next(t); ev != want {
		t.Errorf("alice got %q, want %q", ev, want)
	}
	if ev := viaQuery.next(t); ev != want {
		t.Errorf("query-token stream got %q, want %q", ev, want)
	}
	// Without a token: 401.
	if r := e.do("GET", "/api/sync/events", nil, nil); r.status != 401 {
		t.Errorf("no token: %d", r.status)
	}
}
