package http_test

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"

	mhttp "github.com/melonsync/melonsync/http"
)

// faultyStore is a store whose reads meet fault once after rows have been scanned
// (when armed), as a database that goes away in the middle of a large pull: its
// error is the scan's (and a fault that panics panics there).
type faultyStore struct {
	server.Store
	armed atomic.Bool
	after int64
	fault func() error
}

var errInjected = errors.New("injected scan failure")

// failingStore fails its reads with errInjected.
func failingStore(s server.Store) *faultyStore {
	return &faultyStore{Store: s, fault: func() error { return errInjected }}
}

// panickingStore panics in its reads.
func panickingStore(s server.Store) *faultyStore {
	return &faultyStore{Store: s, fault: func() error { panic("injected panic in a pull's read") }}
}

func (s *faultyStore) Read(ctx context.Context, fn func(server.ReadTx) error) error {
	return s.Store.Read(ctx, func(tx server.ReadTx) error {
		if !s.armed.Load() {
			return fn(tx)
		}
		return fn(&faultyTx{ReadTx: tx, left: s.after, fault: s.fault})
	})
}

type faultyTx struct {
	server.ReadTx
	left  int64
	fault func() error
}

func (tx *faultyTx) Scan(t *schema.Table, cols []schema.Column, f server.Filter, fn func(*server.Row) error) error {
	return tx.ReadTx.Scan(t, cols, f, func(r *server.Row) error {
		if tx.left--; tx.left < 0 {
			return tx.fault()
		}
		return fn(r)
	})
}

// A pull whose store fails after the answer has started streaming (Options.StreamPulls)
// must not reach the client as a complete 200: the connection is broken, so the body
// ends in an error, for gzipped and identity answers alike. A spooled pull (the
// default) that fails within its first 256 KiB of JSON has sent nothing yet: it
// answers a clean 500 (a later failure: TestSpooledPullFailingLateBreaksTheBody).
func TestPullFailingMidStreamBreaksTheBody(t *testing.T) {
	base, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	store := failingStore(base)
	h := storetest.NewHarness(t, store)
	srv := testutil.NewServer(t, h.Svc, mhttp.Options{StreamPulls: true})
	e := &env{t: t, srv: srv.Server, auth: srv.Auth, store: store}
	spooled := testutil.NewServer(t, h.Svc, mhttp.Options{Auth: srv.Auth})

	// 4,000 projects of ~300 bytes: about 1.2 MB of JSON. Names differ, so that the
	// gzipped answer is large too.
	const n, batch = 4000, 500
	for i := 0; i < n; i += batch {
		var recs []string
		for j := i; j < i+batch; j++ {
			recs = append(recs, fmt.Sprintf(`{"id":"p%05d","name":"%s"}`, j, pseudoText(j, 280)))
		}
		h.MustPush("alice", "d1", 0, `{"projects":{"created":[`+strings.Join(recs, ",")+`]}}`)
	}
	// Fail after ~2,000 rows (~600 KB): well after the answer started streaming.
	store.after = 2000

	t.Run("spooled", func(t *testing.T) {
		store.after = 500 // ~150 KB: before the answer starts to be sent
		defer func() { store.after = 2000 }()
		store.armed.Store(true)
		defer store.armed.Store(false)
		se := &env{t: t, srv: spooled.Server, auth: srv.Auth, store: store}
		r := se.do("POST", "/api/sync/pull", se.as("alice"), []byte(`{"lastPulledAt":null}`))
		if r.status != 500 || errorCode(t, r.body) != "internal" {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	for _, enc := range []string{"identity", "gzip"} {
		t.Run(enc, func(t *testing.T) {
			store.armed.Store(false)
			full, fullErr := pullRaw(e, enc)
			if fullErr != nil {
				t.Fatalf("healthy pull: %v", fullErr)
			}
			if enc == "gzip" {
				if _, err := gunzipAll(full); err != nil {
					t.Fatalf("healthy gzip pull does not decompress: %v", err)
				}
			}
			store.armed.Store(true)
			defer store.armed.Store(false)
			got, err := pullRaw(e, enc)
			if err == nil {
				t.Fatalf("a pull that failed mid-stream read as a clean body (%d of %d bytes)", len(got), len(full))
			}
			if len(got) >= len(full) {
				t.Errorf("broken pull delivered %d bytes, the whole answer is %d", len(got), len(full))
			}
			if len(got) == 0 {
				t.Errorf("nothing was streamed before the failure: the test does not exercise a mid-stream failure")
			}
		})
	}
}

// pullRaw pulls everything as alice and returns the raw body as sent (not
// decompressed) and the error that ended reading it.
func pullRaw(e *env, acceptEncoding string) ([]byte, error) {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.srv.URL+"/api/sync/pull", strings.NewReader(`{"lastPulledAt":null}`))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range e.as("alice") {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept-Encoding", acceptEncoding)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		e.t.Fatalf("pull: status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Encoding"); (acceptEncoding == "gzip") != (got == "gzip") {
		e.t.Fatalf("Accept-Encoding %s answered with Content-Encoding %q", acceptEncoding, got)
	}
	return io.ReadAll(resp.Body)
}

func gunzipAll(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(strings.NewReader(string(b)))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// pseudoText returns n letters that differ from seed to seed.
func pseudoText(seed, n int) string {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = 'a' + byte(x%26)
	}
	return string(b)
}
