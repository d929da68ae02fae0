package transport_test

// Tests of the client transport. Helper names start with "ct".

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/client"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/transport"
)

// ctServer runs the real server (SQLite store, todo schema) on 127.0.0.1.
func ctServer(t *testing.T) (url string, auth *mhttp.Auth) {
	t.Helper()
	srv := testutil.NewStoreServer(t, testutil.SQLiteStore(t, t.TempDir()), testutil.TodoSchema(t), mhttp.Options{})
	return srv.URL, srv.Auth
}

func ctToken(t *testing.T, auth *mhttp.Auth, user string) string {
	t.Helper()
	tok, err := auth.Mint(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func ctClient(t *testing.T, url string, tokens transport.TokenSource, device string, opts ...transport.ClientOption) *transport.Client {
	t.Helper()
	c, err := transport.NewClient(url, tokens, device, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientPushPullAgainstServer(t *testing.T) {
	url, auth := ctServer(t)
	c := ctClient(t, url, transport.StaticToken(ctToken(t, auth, "alice")), "dev-a")
	ctx := context.Background()
	first, err := c.Pull(ctx, client.PullArgs{SchemaVersion: 3})
	if err != nil {
		t.Fatal(err)
	}
	if first.Timestamp <= 0 {
		t.Fatalf("timestamp %d", first.Timestamp)
	}
	resp, err := c.Push(ctx, melonsync.PushRequest{LastPulledAt: first.Timestamp, Changes: melonsync.Changes{
		"tasks": {Created: []melonsync.RawRecord{{"id": "t1", "name": "Buy milk", "_status": "created", "_changed": ""}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.OK || resp.Timestamp < first.Timestamp {
		t.Fatalf("push answer %+v", resp)
	}
	// Another device of the same user sees it as created.
	other := ctClient(t, url, transport.StaticToken(ctToken(t, auth, "alice")), "dev-b")
	got, err := other.Pull(ctx, client.PullArgs{LastPulledAt: &first.Timestamp, SchemaVersion: 3})
	if err != nil {
		t.Fatal(err)
	}
	if tc := got.Changes["tasks"]; tc == nil || len(tc.Created) != 1 || tc.Created[0]["name"] != "Buy milk" {
		t.Fatalf("pulled %+v", got.Changes["tasks"])
	}
	// The pushing device sees its own creation as updated (SPEC §3 pull rule 4).
	mine, err := c.Pull(ctx, client.PullArgs{LastPulledAt: &first.Timestamp, SchemaVersion: 3})
	if err != nil {
		t.Fatal(err)
	}
	if tc := mine.Changes["tasks"]; tc == nil || len(tc.Updated) != 1 || len(tc.Created) != 0 {
		t.Fatalf("own pull %+v", mine.Changes["tasks"])
	}
	// A stale push is a conflict with the ids.
	_, err = other.Push(ctx, melonsync.PushRequest{LastPulledAt: first.Timestamp, Changes: melonsync.Changes{
		"tasks": {Updated: []melonsync.RawRecord{{"id": "t1", "name": "stale"}}},
	}})
	var se *client.SyncError
	if !errors.Is(err, client.ErrConflict) || !errors.As(err, &se) || se.Status != 409 || len(se.Conflicts["tasks"]) != 1 || se.Conflicts["tasks"][0] != "t1" {
		t.Fatalf("stale push: %v", err)
	}
	var me *melonsync.Error
	if !errors.As(err, &me) || me.Code != melonsync.EConflict {
		t.Errorf("the server's error is not in the chain: %v", err)
	}
	// Turbo: the raw body streams.
	res, err := other.Pull(ctx, client.PullArgs{SchemaVersion: 3, Turbo: true})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || !bytes.Contains(raw, []byte(`"Buy milk"`)) || res.Changes != nil {
		t.Fatalf("turbo body %q, %v", raw, err)
	}
}

func TestClientAuthErrorsAgainstServer(t *testing.T) {
	url, auth := ctServer(t)
	ctx := context.Background()
	_, err := ctClient(t, url, transport.StaticToken("not-a-token"), "").Pull(ctx, client.PullArgs{})
	if !errors.Is(err, client.ErrAuth) || client.ErrorCode(err) != "SYNC_ERROR_AUTH" {
		t.Fatalf("bad token: %v", err)
	}
	_, err = ctClient(t, url, nil, "").Pull(ctx, client.PullArgs{})
	if !errors.Is(err, client.ErrAuth) {
		t.Fatalf("no token: %v", err)
	}
	// A refreshing source gets asked again once and the request is retried.
	var asked []bool
	good := ctToken(t, auth, "bob")
	src := transport.TokenFunc(func(_ context.Context, refresh bool) (string, error) {
		asked = append(asked, refresh)
		if refresh {
			return good, nil
		}
		return "expired", nil
	})
	if _, err := ctClient(t, url, src, "").Pull(ctx, client.PullArgs{}); err != nil {
		t.Fatalf("with refresh: %v", err)
	}
	if fmt.Sprint(asked) != "[false true]" {
		t.Errorf("token source asked %v", asked)
	}
}

// ctFake serves canned answers and records requests.
type ctFake struct {
	mu       sync.Mutex
	requests []*http.Request
	bodies   [][]byte
	handler  func(w http.ResponseWriter, r *http.Request, body []byte)
}

func (f *ctFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, r)
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	f.handler(w, r, body)
}

func ctFakeServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, body []byte)) (*ctFake, string) {
	f := &ctFake{handler: h}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func TestClientMapsErrorAnswers(t *testing.T) {
	cases := []struct {
		status int
		body   string
		want   error
	}{
		{401, `{"error":{"code":"unauthorized","message":"token expired"}}`, client.ErrAuth},
		{403, `{"error":{"code":"forbidden","message":"no"}}`, client.ErrAuth},
		{409, `{"error":{"code":"conflict","message":"x","details":{"conflicts":{"tasks":["a","b"]}}}}`, client.ErrConflict},
		{400, `{"error":{"code":"invalid_request","message":"unknown table"}}`, client.ErrInvalidData},
		{413, `{"error":{"code":"payload_too_large","message":"too big"}}`, client.ErrInvalidData},
		{500, `{"error":{"code":"internal","message":"internal error"}}`, client.ErrServer},
		{503, `{"error":{"code":"unavailable","message":"later"}}`, client.ErrNetwork},
		{502, `<html>bad gateway</html>`, client.ErrNetwork},
		{404, `<html>not here</html>`, client.ErrServer},
		{429, ``, client.ErrNetwork},
	}
	for _, tc := range cases {
		_, url := ctFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
		})
		c := ctClient(t, url, transport.StaticToken("tok"), "dev")
		for _, op := range []string{"pull", "push"} {
			var err error
			if op == "pull" {
				_, err = c.Pull(context.Background(), client.PullArgs{})
			} else {
				_, err = c.Push(context.Background(), melonsync.PushRequest{Changes: melonsync.Changes{}})
			}
			var se *client.SyncError
			if !errors.Is(err, tc.want) || !errors.As(err, &se) || se.Status != tc.status || se.Op != op {
				t.Errorf("%s %d %s: %v (want %v)", op, tc.status, tc.body, err, tc.want)
				continue
			}
			if tc.status == 409 && len(se.Conflicts["tasks"]) != 2 {
				t.Errorf("conflicts %v", se.Conflicts)
			}
			if strings.HasPrefix(tc.body, "{") && se.ServerCode == "" {
				t.Errorf("%d: server code missing", tc.status)
			}
		}
	}
}

func TestClientMalformedAnswers(t *testing.T) {
	_, url := ctFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		io.WriteString(w, `<html>hello</html>`)
	})
	c := ctClient(t, url, nil, "")
	if _, err := c.Pull(context.Background(), client.PullArgs{}); !errors.Is(err, client.ErrInvalidData) {
		t.Errorf("pull: %v", err)
	}
	if _, err := c.Push(context.Background(), melonsync.PushRequest{}); !errors.Is(err, client.ErrServer) {
		t.Errorf("push: %v", err)
	}
}

func TestClientNetworkFailures(t *testing.T) {
	ctx := context.Background()
	// Nothing listens.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, err := ctClient(t, "http://"+addr, nil, "").Pull(ctx, client.PullArgs{})
	if !errors.Is(err, client.ErrNetwork) || client.ErrorCode(err) != "SYNC_ERROR_NETWORK" {
		t.Errorf("refused: %v", err)
	}

	// The connection drops in the middle of the answer.
	_, url := ctFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, `{"changes": {"tasks": {"created": [{"id": "a"`)
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	})
	c := ctClient(t, url, nil, "")
	if _, err := c.Pull(ctx, client.PullArgs{}); !errors.Is(err, client.ErrNetwork) {
		t.Errorf("dropped mid-answer: %v", err)
	}
	res, err := c.Pull(ctx, client.PullArgs{Turbo: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(res.Body)
	res.Body.Close()
	if !errors.Is(err, client.ErrNetwork) {
		t.Errorf("dropped mid-stream: %v", err)
	}

	// No answer in time.
	block := make(chan struct{})
	defer close(block)
	_, slow := ctFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	start := time.Now()
	_, err = ctClient(t, slow, nil, "", transport.WithTimeout(100*time.Millisecond)).Push(ctx, melonsync.PushRequest{})
	if !errors.Is(err, client.ErrNetwork) || !strings.Contains(err.Error(), "no answer within") || time.Since(start) > 2*time.Second {
		t.Errorf("timeout: %v after %v", err, time.Since(start))
	}

	// The answer stalls half way.
	_, stall := ctFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		io.WriteString(w, `{"changes": {`)
		w.(http.Flusher).Flush()
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	_, err = ctClient(t, stall, nil, "", transport.WithIdleTimeout(100*time.Millisecond)).Pull(ctx, client.PullArgs{})
	if !errors.Is(err, client.ErrNetwork) {
		t.Errorf("stalled answer: %v", err)
	}

	// A cancelled context is a cancellation, not a network error.
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err = ctClient(t, slow, nil, "").Pull(cctx, client.PullArgs{})
	if !errors.Is(err, context.Canceled) || errors.Is(err, client.ErrNetwork) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestClientHeadersAndGzip(t *testing.T) {
	var gzipAnswers atomic.Bool
	f, url := ctFakeServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		answer := `{"changes": {"tasks": {"created": [{"id": "t1", "name": "` + strings.Repeat("x", 2000) + `"}], "updated": [], "deleted": []}}, "timestamp": 42, "note": 1}`
		if strings.HasSuffix(r.URL.Path, "/push") {
			answer = `{"ok": true, "timestamp": 43, "experimentalRejectedIds": {"tasks": ["bad"]}}`
		}
		if gzipAnswers.Load() && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			io.WriteString(zw, answer)
			zw.Close()
			return
		}
		io.WriteString(w, answer)
	})
	var bytesSeen atomic.Int64
	c := ctClient(t, url+"/", transport.StaticToken("tok"), "dev-1", transport.WithGzipThreshold(100), transport.WithDownloadProgress(func(n int64) { bytesSeen.Store(n) }))
	ctx := context.Background()
	lpa := int64(7)
	for _, gz := range []bool{false, true} {
		gzipAnswers.Store(gz)
		res, err := c.Pull(ctx, client.PullArgs{LastPulledAt: &lpa, SchemaVersion: 3, SendCreatedAsUpdated: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Timestamp != 42 || len(res.Changes["tasks"].Created) != 1 || string(res.Extra["note"]) != "1" {
			t.Errorf("gzip %v: pulled %+v", gz, res)
		}
	}
	if bytesSeen.Load() == 0 || c.BytesReceived() != bytesSeen.Load() {
		t.Errorf("download progress %d, received %d", bytesSeen.Load(), c.BytesReceived())
	}
	small, err := c.Push(ctx, melonsync.PushRequest{LastPulledAt: 42, Changes: melonsync.Changes{"tasks": {}}})
	if err != nil || small.RejectedIDs["tasks"][0] != "bad" {
		t.Fatalf("push %+v %v", small, err)
	}
	big := melonsync.Changes{"tasks": {Created: []melonsync.RawRecord{{"id": "t2", "name": strings.Repeat("y", 500)}}}}
	if _, err := c.Push(ctx, melonsync.PushRequest{LastPulledAt: 42, Changes: big}); err != nil {
		t.Fatal(err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) != 4 {
		t.Fatalf("%d requests", len(f.requests))
	}
	pull := f.requests[0]
	if pull.URL.Path != "/api/sync/pull" || pull.Method != "POST" || pull.Header.Get("Authorization") != "Bearer tok" ||
		pull.Header.Get(melonsync.HeaderDevice) != "dev-1" || pull.Header.Get(melonsync.HeaderCreatedAsUpdated) != "true" ||
		pull.Header.Get("Accept-Encoding") != "gzip" || pull.Header.Get("Content-Type") != "application/json" {
		t.Errorf("pull request %s %s %v", pull.Method, pull.URL.Path, pull.Header)
	}
	var pr map[string]any
	if err := json.Unmarshal(f.bodies[0], &pr); err != nil || pr["lastPulledAt"] != 7.0 || pr["schemaVersion"] != 3.0 || pr["migration"] != nil {
		t.Errorf("pull body %s", f.bodies[0])
	}
	smallPush, bigPush := f.requests[2], f.requests[3]
	if smallPush.URL.Path != "/api/sync/push" || smallPush.Header.Get("Content-Encoding") != "" {
		t.Errorf("small push %s %v", smallPush.URL.Path, smallPush.Header)
	}
	if !bytes.Contains(f.bodies[2], []byte(`"tasks":{"created":[],"updated":[],"deleted":[]}`)) {
		t.Errorf("empty lists are not sent as []: %s", f.bodies[2])
	}
	if bigPush.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("big push not gzipped: %v", bigPush.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(f.bodies[3]))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !bytes.Contains(plain, []byte(`"lastPulledAt":42`)) || !bytes.Contains(plain, []byte(strings.Repeat("y", 500))) {
		t.Errorf("gunzipped push %s", plain)
	}
}

func TestNewClientChecksURL(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://"} {
		if _, err := transport.NewClient(u, nil, ""); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
