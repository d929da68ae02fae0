package transport_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/client"
	"github.com/melonsync/melonsync/transport"
)

// TestClientListen follows the event stream: a timestamp on connect, one after a
// push of the same user, none for another user's push; cancelling returns nil.
func TestClientListen(t *testing.T) {
	url, auth := ctServer(t)
	alice := ctClient(t, url, transport.StaticToken(ctToken(t, auth, "alice")), "phone")
	pusher := ctClient(t, url, transport.StaticToken(ctToken(t, auth, "alice")), "laptop")
	bob := ctClient(t, url, transport.StaticToken(ctToken(t, auth, "bob")), "bob")

	got := make(chan int64, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- alice.Listen(ctx, func(ts int64) { got <- ts }) }()
	next := func(what string) int64 {
		t.Helper()
		select {
		case ts := <-got:
			return ts
		case err := <-done:
			t.Fatalf("%s: Listen returned %v", what, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no event", what)
		}
		return 0
	}
	ready := next("connect")
	if ready <= 0 {
		t.Fatalf("ready timestamp %d", ready)
	}

	push := func(c *transport.Client, id string) int64 {
		t.Helper()
		res, err := c.Push(context.Background(), melonsync.PushRequest{LastPulledAt: ready, Changes: melonsync.Changes{
			"tasks": {Created: []melonsync.RawRecord{{"id": id, "name": id}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Timestamp
	}
	push(bob, "b1")
	ts := push(pusher, "a1")
	if ev := next("alice's push"); ev < ts {
		t.Errorf("event timestamp %d is older than the push's %d", ev, ts)
	}
	select {
	case ev := <-got:
		t.Errorf("an extra event %d (bob's push must not reach alice)", ev)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Listen after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Listen did not return after cancel")
	}
}

func TestClientListenErrors(t *testing.T) {
	url, _ := ctServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	never := func(int64) { t.Error("changed called") }

	err := ctClient(t, url, transport.StaticToken("not-a-token"), "").Listen(ctx, never)
	if !errors.Is(err, client.ErrAuth) {
		t.Errorf("bad token: %v", err)
	}
	// A server without the endpoint, and one that answers something else.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/sync/events" && r.Header.Get("Authorization") == "Bearer html" {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html></html>"))
			return
		}
		http.NotFound(w, r)
	}))
	defer plain.Close()
	if err := ctClient(t, plain.URL, transport.StaticToken("x"), "").Listen(ctx, never); !errors.Is(err, client.ErrServer) {
		t.Errorf("404: %v", err)
	}
	if err := ctClient(t, plain.URL, transport.StaticToken("html"), "").Listen(ctx, never); !errors.Is(err, client.ErrServer) {
		t.Errorf("not an event stream: %v", err)
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	if err := ctClient(t, deadURL, transport.StaticToken("x"), "").Listen(ctx, never); !errors.Is(err, client.ErrNetwork) {
		t.Errorf("no server: %v", err)
	}
}
