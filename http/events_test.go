package http_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
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

// bearer is an Authorization header with tok, and no device.
func (e *env) bearer(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok}
}

// ticket gets an event-stream ticket with hdr (Authorization, X-Melon-Device).
func (e *env) ticket(hdr map[string]string) string {
	e.t.Helper()
	r := e.do("POST", "/api/sync/events/ticket", hdr, nil)
	var out struct {
		Ticket    string `json:"ticket"`
		ExpiresAt int64  `json:"expiresAt"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &out) != nil || out.Ticket == "" {
		e.t.Fatalf("ticket: %d %s", r.status, r.body)
	}
	if d := time.Until(time.UnixMilli(out.ExpiresAt)); d < 30*time.Second || d > 61*time.Second {
		e.t.Errorf("ticket expires in %v, want about a minute", d)
	}
	return out.Ticket
}

func with(hdr map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for k, v := range hdr {
		out[k] = v
	}
	out[k] = v
	return out
}

// silent fails if s sends an event within d.
func (s *sse) silent(t *testing.T, d time.Duration, what string) {
	t.Helper()
	select {
	case e := <-s.events:
		t.Errorf("%s: unexpected event %q", what, e)
	case <-time.After(d):
	}
}

// TestLiveUpdates: streams opened with the header and with a ticket get each change
// of their user once, never another user's, and not their own device's.
func TestLiveUpdates(t *testing.T) {
	e := newEnv(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	phone := with(e.as("alice"), "X-Melon-Device", "phone")
	laptop := with(e.as("alice"), "X-Melon-Device", "laptop")
	viaHeader := listen(t, ctx, e.srv.URL+"/api/sync/events", phone)
	if ev := viaHeader.next(t); !strings.HasPrefix(ev, `ready {"timestamp":`) {
		t.Fatalf("first event %q", ev)
	}
	// EventSource style: a ticket in the URL, obtained with the header.
	viaTicket := listen(t, ctx, e.srv.URL+"/api/sync/events?ticket="+url.QueryEscape(e.ticket(laptop)), nil)
	viaTicket.next(t)

	push := func(hdr map[string]string, id string) string {
		t.Helper()
		r := e.do("POST", "/api/sync/push", hdr, []byte(`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"`+id+`"}]}}}`))
		if r.status != 200 {
			t.Fatal(r.status, string(r.body))
		}
		var ts int64
		fmt.Sscanf(string(r.body), `{"ok":true,"timestamp":%d}`, &ts)
		return fmt.Sprintf(`changes {"timestamp":%d}`, ts)
	}
	push(e.as("bob"), "b1") // another user: nobody of alice's hears it
	fromPhone := push(phone, "a1")
	if ev := viaTicket.next(t); ev != fromPhone {
		t.Errorf("laptop (ticket) got %q, want %q", ev, fromPhone)
	}
	fromLaptop := push(laptop, "a2")
	// The phone's first event is the laptop's push: neither bob's nor its own.
	if ev := viaHeader.next(t); ev != fromLaptop {
		t.Errorf("phone got %q, want %q", ev, fromLaptop)
	}
	viaTicket.silent(t, 300*time.Millisecond, "laptop after its own push")
	viaHeader.silent(t, 10*time.Millisecond, "phone after one push")
	// A push without a device header reaches both.
	anon := push(e.bearer(e.token("alice")), "a3")
	if a, b := viaHeader.next(t), viaTicket.next(t); a != anon || b != anon {
		t.Errorf("device-less push: phone %q, laptop %q, want %q", a, b, anon)
	}
	viaHeader.silent(t, 200*time.Millisecond, "phone: each change once")
	// Without a token: 401.
	if r := e.do("GET", "/api/sync/events", nil, nil); r.status != 401 {
		t.Errorf("no token: %d", r.status)
	}
}

// TestEventTickets: a ticket opens only the event stream, a token in the URL is
// refused, and the stream ends when the token behind it expires.
func TestEventTickets(t *testing.T) {
	e := newEnv(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tok := e.token("alice")
	ticket := e.ticket(e.as("alice"))
	cases := []struct {
		name, method, path string
		hdr                map[string]string
		want               int
		msg                string
	}{
		{"ticket without a token", "POST", "/api/sync/events/ticket", nil, 401, "missing Authorization"},
		{"ticket with a bad token", "POST", "/api/sync/events/ticket", map[string]string{"Authorization": "Bearer x.y.z"}, 401, "malformed token"},
		{"GET ticket", "GET", "/api/sync/events/ticket", e.as("alice"), 405, ""},
		{"ticket as a bearer token", "POST", "/api/sync/pull", map[string]string{"Authorization": "Bearer " + ticket}, 401, "signature"},
		{"token as a ticket", "GET", "/api/sync/events?ticket=" + tok, nil, 401, "ticket is not valid"},
		{"garbage ticket", "GET", "/api/sync/events?ticket=abc", nil, 401, "ticket is not valid"},
		{"token in the URL", "GET", "/api/sync/events?access_token=" + tok, nil, 401, "not accepted"},
	}
	for _, c := range cases {
		r := e.do(c.method, c.path, c.hdr, []byte(`{"lastPulledAt":null}`))
		if r.status != c.want || !strings.Contains(string(r.body), c.msg) {
			t.Errorf("%s: %d %s, want %d with %q", c.name, r.status, r.body, c.want, c.msg)
		}
		if strings.Contains(string(r.body), tok) || strings.Contains(string(r.body), ticket) {
			t.Errorf("%s: the answer repeats the token", c.name)
		}
	}

	// A token that expires in 2 s: its stream (header or ticket) ends then, and so does
	// its ticket.
	short, err := e.auth.Mint("alice", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	shortTicket := e.do("POST", "/api/sync/events/ticket", e.bearer(short), nil)
	var tk struct{ Ticket string }
	json.Unmarshal(shortTicket.body, &tk)
	start := time.Now()
	streams := []*sse{
		listen(t, ctx, e.srv.URL+"/api/sync/events", e.bearer(short)),
		listen(t, ctx, e.srv.URL+"/api/sync/events?ticket="+tk.Ticket, nil),
	}
	for i, s := range streams {
		s.next(t) // ready
		if ev := s.next(t); ev != "expired {}" {
			t.Errorf("stream %d: %q after the token expired, want expired", i, ev)
		}
		if ev := s.next(t); ev != "closed" {
			t.Errorf("stream %d: %q, want the stream closed", i, ev)
		}
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("streams ended %v after connecting to a token valid for 2 s", d)
	}
	time.Sleep(time.Until(start.Add(3100 * time.Millisecond)))
	if r := e.do("GET", "/api/sync/events?ticket="+tk.Ticket, nil, nil); r.status != 401 || !strings.Contains(string(r.body), "ticket expired") {
		t.Errorf("ticket after its token expired: %d %s", r.status, r.body)
	}
}
