package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"

	mhttp "github.com/melonsync/melonsync/http"
)

// pausingStore is a store whose reads stop after pauseAfter rows (when armed) until
// resume is closed, as a slow read of a large pull.
type pausingStore struct {
	server.Store
	armed      atomic.Bool
	pauseAfter int64
	paused     chan struct{} // closed when a read pauses
	resume     chan struct{}
}

func (s *pausingStore) Read(ctx context.Context, fn func(server.ReadTx) error) error {
	return s.Store.Read(ctx, func(tx server.ReadTx) error {
		if !s.armed.Load() {
			return fn(tx)
		}
		return fn(&pausingTx{ReadTx: tx, s: s, left: s.pauseAfter})
	})
}

type pausingTx struct {
	server.ReadTx
	s    *pausingStore
	left int64
}

func (tx *pausingTx) Scan(t *schema.Table, cols []schema.Column, f server.Filter, fn func(*server.Row) error) error {
	return tx.ReadTx.Scan(t, cols, f, func(r *server.Row) error {
		if tx.left--; tx.left == 0 {
			close(tx.s.paused)
			<-tx.s.resume
		}
		return fn(r)
	})
}

// seedProjects pushes n projects of ~300 bytes each for alice (names differ, so
// that gzipped answers are large too).
func seedProjects(h *storetest.Harness, n int) {
	const batch = 500
	for i := 0; i < n; i += batch {
		var recs []string
		for j := i; j < min(i+batch, n); j++ {
			recs = append(recs, fmt.Sprintf(`{"id":"p%05d","name":"%s"}`, j, pseudoText(j, 280)))
		}
		h.MustPush("alice", "d1", 0, `{"projects":{"created":[`+strings.Join(recs, ",")+`]}}`)
	}
}

// A large pull is sent while the store is still read: the client gets the status and
// the first part of the answer while the read is paused half-way, then the whole
// answer once it goes on — gzipped or not, with the spool in memory or in a file.
func TestSpooledPullIsSentWhileRead(t *testing.T) {
	base, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	store := &pausingStore{Store: base}
	h := storetest.NewHarness(t, store)
	const n = 8000 // ~2.4 MB of JSON
	seedProjects(h, n)
	store.pauseAfter = 6000 // ~1.8 MB read: past the point where sending starts
	for _, spoolMem := range []int{0, 64 << 10} {
		srv := testutil.NewServer(t, h.Svc, mhttp.Options{SpoolMemory: spoolMem, SpoolDir: t.TempDir()})
		e := &env{t: t, srv: srv.Server, auth: srv.Auth, store: store}
		for _, enc := range []string{"identity", "gzip"} {
			t.Run(fmt.Sprintf("%s/spool memory %d", enc, spoolMem), func(t *testing.T) {
				store.paused, store.resume = make(chan struct{}), make(chan struct{})
				store.armed.Store(true)
				defer store.armed.Store(false)
				resumed := false
				resume := func() {
					if !resumed {
						resumed = true
						close(store.resume)
					}
				}
				defer resume()
				req, err := http.NewRequest("POST", e.srv.URL+"/api/sync/pull", strings.NewReader(`{"lastPulledAt":null}`))
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range e.as("alice") {
					req.Header.Set(k, v)
				}
				req.Header.Set("Accept-Encoding", enc)
				type answer struct {
					resp *http.Response
					err  error
				}
				got := make(chan answer, 1)
				go func() {
					resp, err := http.DefaultClient.Do(req)
					got <- answer{resp, err}
				}()
				select {
				case <-store.paused:
				case <-time.After(10 * time.Second):
					t.Fatal("the store read never reached the pause")
				}
				var a answer
				select {
				case a = <-got:
				case <-time.After(10 * time.Second):
					t.Fatal("no answer while the store read is paused: the answer waits for the whole read")
				}
				if a.err != nil {
					t.Fatal(a.err)
				}
				defer a.resp.Body.Close()
				if a.resp.StatusCode != 200 || a.resp.Header.Get("Content-Length") != "" {
					t.Fatalf("status %d, Content-Length %q; want a 200 of unknown length", a.resp.StatusCode, a.resp.Header.Get("Content-Length"))
				}
				if ce := a.resp.Header.Get("Content-Encoding"); (enc == "gzip") != (ce == "gzip") {
					t.Fatalf("Accept-Encoding %s answered with Content-Encoding %q", enc, ce)
				}
				first := make([]byte, 16<<10)
				if _, err := io.ReadFull(a.resp.Body, first); err != nil {
					t.Fatalf("reading the first bytes while the store read is paused: %v", err)
				}
				resume()
				rest, err := io.ReadAll(a.resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				body := append(first, rest...)
				if enc == "gzip" {
					if body, err = gunzipAll(body); err != nil {
						t.Fatal(err)
					}
				}
				var ans struct {
					Changes map[string]struct {
						Created []struct {
							ID string `json:"id"`
						} `json:"created"`
					} `json:"changes"`
					Timestamp int64 `json:"timestamp"`
				}
				if err := json.Unmarshal(body, &ans); err != nil {
					t.Fatalf("the answer is not whole JSON: %v", err)
				}
				recs := ans.Changes["projects"].Created
				if len(recs) != n || ans.Timestamp <= 0 || recs[0].ID != "p00000" || recs[n-1].ID != fmt.Sprintf("p%05d", n-1) {
					t.Fatalf("%d projects (timestamp %d), want %d", len(recs), ans.Timestamp, n)
				}
			})
		}
	}
}

// A spooled pull whose store fails once sending has started (past its first 256 KiB
// of JSON) cuts the connection: the client never reads a complete 200. One that fails
// earlier is a clean 500 (TestPullFailingMidStreamBreaksTheBody).
func TestSpooledPullFailingLateBreaksTheBody(t *testing.T) {
	base, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	store := failingStore(base)
	h := storetest.NewHarness(t, store)
	seedProjects(h, 8000)
	store.after = 6000 // ~1.8 MB of JSON
	srv := testutil.NewServer(t, h.Svc, mhttp.Options{})
	e := &env{t: t, srv: srv.Server, auth: srv.Auth, store: store}
	for _, enc := range []string{"identity", "gzip"} {
		t.Run(enc, func(t *testing.T) {
			store.armed.Store(false)
			full, err := pullRaw(e, enc)
			if err != nil {
				t.Fatalf("healthy pull: %v", err)
			}
			store.armed.Store(true)
			defer store.armed.Store(false)
			got, err := pullRaw(e, enc)
			if err == nil {
				t.Fatalf("a pull that failed mid-answer read as a clean body (%d of %d bytes)", len(got), len(full))
			}
			if len(got) == 0 || len(got) >= len(full) {
				t.Errorf("broken pull delivered %d bytes of %d: the test does not exercise a failure after sending started", len(got), len(full))
			}
		})
	}
}

// A panic of a spooled pull's read (on a goroutine of its own) is the handler's: a
// clean 500 before the answer is sent, a cut body after; the server goes on serving.
func TestSpooledPullReadPanics(t *testing.T) {
	base, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	store := panickingStore(base)
	h := storetest.NewHarness(t, store)
	seedProjects(h, 8000)
	srv := testutil.NewServer(t, h.Svc, mhttp.Options{})
	e := &env{t: t, srv: srv.Server, auth: srv.Auth, store: store}
	healthy := func() []byte {
		t.Helper()
		store.armed.Store(false)
		full, err := pullRaw(e, "identity")
		if err != nil {
			t.Fatalf("healthy pull: %v", err)
		}
		return full
	}
	full := healthy()

	store.after = 100 // ~30 KB: nothing sent yet
	store.armed.Store(true)
	r := e.do("POST", "/api/sync/pull", e.as("alice"), []byte(`{"lastPulledAt":null}`))
	if r.status != 500 || errorCode(t, r.body) != "internal" {
		t.Fatalf("early panic: status %d: %s", r.status, r.body)
	}
	healthy()

	store.after = 6000 // ~1.8 MB: sending has started
	store.armed.Store(true)
	got, err := pullRaw(e, "identity")
	if err == nil || len(got) == 0 || len(got) >= len(full) {
		t.Fatalf("late panic: %d of %d bytes, error %v; want a body cut short", len(got), len(full), err)
	}
	healthy()
}
