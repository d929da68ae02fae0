package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

// onSmallDisk runs fn on each store kept on a small file system of its own (a
// tmpfs; skipped where none can be mounted): SQLite's file, and a PostgreSQL
// tablespace holding the test schema's tables.
func onSmallDisk(t *testing.T, fn func(t *testing.T, store server.Store, dir string)) {
	t.Run("sqlite", func(t *testing.T) {
		dir := testutil.SmallDisk(t, 4<<20)
		store, err := sqlite.Open(dir + "/s.db")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		fn(t, store, dir)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := testutil.PostgresDSN(t)
		dir := testutil.SmallDisk(t, 8<<20)
		_, tsDSN := testutil.PostgresTablespace(t, dsn, dir)
		name, _ := testutil.PostgresSchema(t, tsDSN, "melon_test_full")
		store, err := postgres.Open(context.Background(), tsDSN, postgres.WithSchema(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		fn(t, store, dir)
	})
}

// tasks returns the JSON changes creating n projects of about 1 KB each, ids prefix-i.
func projects(prefix string, n int) string {
	var b strings.Builder
	b.WriteString(`{"projects":{"created":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"%s-%d","name":"%s"}`, prefix, i, strings.Repeat(fmt.Sprintf("%x", i), 1000/len(fmt.Sprintf("%x", i))))
	}
	b.WriteString(`]}}`)
	return b.String()
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func call(t *testing.T, method, url, token, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON", method, url, resp.StatusCode, raw)
	}
	return a
}

func errCode(a answer) string {
	e, _ := a.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// TestFullDiskAnswers507: with the store's disk really full, a push answers 507
// storage_full with Retry-After and writes nothing; /healthz says 503 degraded,
// storage full; once space is freed, the next write succeeds and clears it, and
// so does the probe /healthz runs while no write comes.
func TestFullDiskAnswers507(t *testing.T) {
	onSmallDisk(t, func(t *testing.T, store server.Store, dir string) {
		h := storetest.NewHarness(t, store)
		srv := testutil.NewServer(t, h.Svc, mhttp.Options{})
		alice := srv.Token(t, "alice")
		push := func(prefix string, n int) answer {
			return call(t, "POST", srv.URL+"/api/sync/push", alice, `{"lastPulledAt":0,"changes":`+projects(prefix, n)+`}`)
		}
		health := func() answer { return call(t, "GET", srv.URL+"/healthz", "", "") }
		if a := push("before", 10); a.status != 200 {
			t.Fatalf("push before the disk is full: %d %v", a.status, a.body)
		}

		free := testutil.FillDisk(t, dir)
		a := push("lost", 2000) // ~2 MB: more than any slack left
		if a.status != http.StatusInsufficientStorage || errCode(a) != "storage_full" || a.header.Get("Retry-After") == "" {
			t.Fatalf("push on a full disk: %d %v (Retry-After %q); want 507 storage_full with Retry-After", a.status, a.body, a.header.Get("Retry-After"))
		}
		if hz := health(); hz.status != 503 || hz.body["status"] != "degraded" || hz.body["storage"] != "full" {
			t.Fatalf("/healthz on a full disk: %d %v", hz.status, hz.body)
		}
		p := call(t, "POST", srv.URL+"/api/sync/pull", alice, `{"lastPulledAt":null}`)
		if p.status != 200 {
			t.Fatalf("pull on a full disk: %d %v", p.status, p.body)
		}
		created := p.body["changes"].(map[string]any)["projects"].(map[string]any)["created"].([]any)
		if len(created) != 10 {
			t.Fatalf("after the refused push the store holds %d projects; want the 10 from before (nothing half-applied)", len(created))
		}

		free()
		if a := push("after", 10); a.status != 200 {
			t.Fatalf("push once space is back: %d %v", a.status, a.body)
		}
		if hz := health(); hz.status != 200 || hz.body["status"] != "ok" {
			t.Fatalf("/healthz after a write succeeded again: %d %v", hz.status, hz.body)
		}

		// No write comes: the probe of /healthz finds the space.
		free = testutil.FillDisk(t, dir)
		if a := push("lost2", 2000); a.status != http.StatusInsufficientStorage {
			t.Fatalf("second push on a full disk: %d %v", a.status, a.body)
		}
		health() // probes (still full), so the next probe is probeEvery away
		free()
		if hz := health(); hz.status != 503 {
			t.Fatalf("/healthz between probes: %d %v; want still degraded", hz.status, hz.body)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			hz := health()
			if hz.status == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/healthz still %d %v long after space was freed", hz.status, hz.body)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
}

// TestFullSpoolAnswers507: a pull whose answer spills to a temporary file on a full
// disk answers 507 storage_full (not 500) and /healthz reports the spool full; once
// space is freed, the next pull is whole and clears it.
func TestFullSpoolAnswers507(t *testing.T) {
	dir := testutil.SmallDisk(t, 1<<20)
	h := storetest.NewHarness(t, testutil.SQLiteStore(t, t.TempDir()))
	h.MustPush("alice", "d1", 0, projects("p", 200))                                  // ~200 KB of answer
	srv := testutil.NewServer(t, h.Svc, mhttp.Options{SpoolDir: dir, SpoolMemory: 1}) // every answer goes to a file
	alice := srv.Token(t, "alice")
	pull := func() answer { return call(t, "POST", srv.URL+"/api/sync/pull", alice, `{"lastPulledAt":null}`) }

	free := testutil.FillDisk(t, dir)
	a := pull()
	if a.status != http.StatusInsufficientStorage || errCode(a) != "storage_full" || a.header.Get("Retry-After") == "" {
		t.Fatalf("pull with a full spool: %d %s; want 507 storage_full with Retry-After", a.status, errCode(a))
	}
	hz := call(t, "GET", srv.URL+"/healthz", "", "")
	if full, _ := hz.body["full"].(map[string]any); hz.status != 503 || full["spool"] == nil {
		t.Fatalf("/healthz with a full spool: %d %v", hz.status, hz.body)
	}
	free()
	a = pull()
	if a.status != 200 || len(a.body["changes"].(map[string]any)["projects"].(map[string]any)["created"].([]any)) != 200 {
		t.Fatalf("pull once space is back: %d", a.status)
	}
	if hz := call(t, "GET", srv.URL+"/healthz", "", ""); hz.status != 200 {
		t.Fatalf("/healthz after a spooled pull succeeded: %d %v", hz.status, hz.body)
	}
}
