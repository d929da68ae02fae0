package client_test

// End-to-end: Go clients syncing with the real server (SQLite store) over HTTP on
// 127.0.0.1, directly and through a proxy that loses requests and answers.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/melonsync/melonsync/client"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/transport"
)

type e2eServer struct {
	URL    string
	auth   *mhttp.Auth
	schema *schema.Schema
}

func newE2EServer(t testing.TB) *e2eServer {
	t.Helper()
	sch := testutil.TodoSchema(t)
	srv := testutil.NewStoreServer(t, testutil.SQLiteStore(t, t.TempDir()), sch, mhttp.Options{})
	return &e2eServer{URL: srv.URL, auth: srv.Auth, schema: sch}
}

func (s *e2eServer) token(t testing.TB, user string) string {
	tok, err := s.auth.Mint(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// e2eClient is one device: a local database and its transport.
type e2eClient struct {
	name string
	db   *client.DB
	hc   *transport.Client
}

func newE2EClient(t testing.TB, s *e2eServer, name, user, url string) *e2eClient {
	t.Helper()
	db, err := client.Open(filepath.Join(t.TempDir(), name+".db"), storetest.TodoSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	device, err := client.DeviceID(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if url == "" {
		url = s.URL
	}
	hc, err := transport.NewClient(url, transport.StaticToken(s.token(t, user)), device, transport.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return &e2eClient{name: name, db: db, hc: hc}
}

func (c *e2eClient) sync(ctx context.Context) error {
	opts := c.hc.Options()
	opts.MigrationsEnabledAtVersion = 1
	turbo, err := client.TurboEligible(ctx, c.db)
	if err != nil {
		return err
	}
	opts.UnsafeTurbo = turbo
	return client.Synchronize(ctx, c.db, opts)
}

func (c *e2eClient) mustSync(t testing.TB) {
	t.Helper()
	if err := c.sync(context.Background()); err != nil {
		t.Fatalf("%s: sync: %v", c.name, err)
	}
}

func (c *e2eClient) write(t testing.TB, fn func(tx *client.Tx) error) {
	t.Helper()
	if err := c.db.Write(context.Background(), fn); err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
}

// state is every record of every table, without _status and _changed.
type state map[string]map[string]map[string]any

func (c *e2eClient) state(t testing.TB) state {
	t.Helper()
	out := state{}
	err := c.db.Read(context.Background(), func(tx *client.Tx) error {
		for _, tbl := range c.db.Schema().Tables {
			recs, err := tx.Query(tbl.Name, client.Query{})
			if err != nil {
				return err
			}
			m := map[string]map[string]any{}
			for _, r := range recs {
				r := map[string]any(r)
				delete(r, "_status")
				delete(r, "_changed")
				m[r["id"].(string)] = r
			}
			out[tbl.Name] = m
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// serverState is what a brand-new device of user pulls.
func (s *e2eServer) state(t testing.TB, user string) state {
	t.Helper()
	hc, err := transport.NewClient(s.URL, transport.StaticToken(s.token(t, user)), "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := hc.Pull(context.Background(), client.PullArgs{SchemaVersion: s.schema.Version})
	if err != nil {
		t.Fatal(err)
	}
	out := state{}
	for _, tbl := range s.schema.Tables {
		m := map[string]map[string]any{}
		if tc := res.Changes[tbl.Name]; tc != nil {
			for _, r := range append(tc.Created, tc.Updated...) {
				m[r["id"].(string)] = r
			}
		}
		out[tbl.Name] = m
	}
	return out
}

func expectConverged(t *testing.T, s *e2eServer, user string, clients ...*e2eClient) {
	t.Helper()
	want := s.state(t, user)
	for _, c := range clients {
		if diff := cmp.Diff(want, c.state(t)); diff != "" {
			t.Errorf("%s differs from the server (-server +client):\n%s", c.name, diff)
		}
		if has, err := c.db.HasUnsyncedChanges(context.Background()); err != nil || has {
			t.Errorf("%s has unsynced changes after the final syncs (%v)", c.name, err)
		}
	}
}

func create(table string, values map[string]any) func(tx *client.Tx) error {
	return func(tx *client.Tx) error { _, err := tx.Create(table, values); return err }
}

func TestE2ETwoClientsInterleavedOfflineEdits(t *testing.T) {
	s := newE2EServer(t)
	a := newE2EClient(t, s, "a", "alice", "")
	b := newE2EClient(t, s, "b", "alice", "")

	a.write(t, create("projects", map[string]any{"id": "p1", "name": "Home", "position": 1.0}))
	a.write(t, create("tasks", map[string]any{"id": "t1", "project_id": "p1", "name": "Buy milk"}))
	a.write(t, create("tasks", map[string]any{"id": "t2", "project_id": "p1", "name": "Call mum"}))
	a.mustSync(t)
	b.mustSync(t)
	if got := b.state(t)["tasks"]["t1"]["name"]; got != "Buy milk" {
		t.Fatalf("b got %v", got)
	}

	// Both offline: different columns of t1, a deletion, creations on both sides.
	a.write(t, func(tx *client.Tx) error { return tx.Update("tasks", "t1", map[string]any{"name": "Buy oat milk"}) })
	b.write(t, func(tx *client.Tx) error { return tx.Update("tasks", "t1", map[string]any{"is_done": true}) })
	b.write(t, func(tx *client.Tx) error { return tx.MarkAsDeleted("tasks", "t2") })
	a.write(t, func(tx *client.Tx) error { return tx.Update("tasks", "t2", map[string]any{"position": 5.0}) })
	a.write(t, create("tasks", map[string]any{"id": "t3", "project_id": "p1", "name": "from a"}))
	b.write(t, create("comments", map[string]any{"id": "c1", "task_id": "t1", "body": "from b"}))
	// Same column on both sides: the later push wins everywhere.
	a.write(t, func(tx *client.Tx) error { return tx.Update("projects", "p1", map[string]any{"name": "Home (a)"}) })
	b.write(t, func(tx *client.Tx) error { return tx.Update("projects", "p1", map[string]any{"name": "Home (b)"}) })

	b.mustSync(t)
	a.mustSync(t)
	b.mustSync(t)
	expectConverged(t, s, "alice", a, b)
	st := a.state(t)
	if st["tasks"]["t1"]["name"] != "Buy oat milk" || st["tasks"]["t1"]["is_done"] != true {
		t.Errorf("t1 = %v, want both columns' edits", st["tasks"]["t1"])
	}
	if _, ok := st["tasks"]["t2"]; ok {
		t.Errorf("t2 still exists: %v", st["tasks"]["t2"])
	}
	if st["projects"]["p1"]["name"] != "Home (a)" {
		t.Errorf("p1 name %v, want the later push (a)", st["projects"]["p1"]["name"])
	}
	if st["tasks"]["t3"] == nil || st["comments"]["c1"] == nil {
		t.Errorf("a creation was lost: %v %v", st["tasks"]["t3"], st["comments"]["c1"])
	}
}

func TestE2EThreeClientsRandomInterleavings(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			s := newE2EServer(t)
			clients := []*e2eClient{
				newE2EClient(t, s, "a", "alice", ""),
				newE2EClient(t, s, "b", "alice", ""),
				newE2EClient(t, s, "c", "alice", ""),
			}
			rnd := rand.New(rand.NewPCG(seed, 99))
			for step := 0; step < 60; step++ {
				c := clients[rnd.IntN(len(clients))]
				randomEdit(t, rnd, c, step)
				if rnd.IntN(4) == 0 {
					c.mustSync(t)
				}
			}
			for round := 0; round < 2; round++ {
				for _, c := range clients {
					c.mustSync(t)
				}
			}
			expectConverged(t, s, "alice", clients...)
		})
	}
}

// randomEdit makes one random local change: create, update or delete a task.
func randomEdit(t testing.TB, rnd *rand.Rand, c *e2eClient, step int) {
	c.write(t, func(tx *client.Tx) error {
		tasks, err := tx.Query("tasks", client.Query{})
		if err != nil {
			return err
		}
		switch k := rnd.IntN(10); {
		case k < 4 || len(tasks) == 0:
			_, err := tx.Create("tasks", map[string]any{"name": fmt.Sprintf("%s-%d", c.name, step), "position": float64(step)})
			return err
		case k < 8:
			id := tasks[rnd.IntN(len(tasks))]["id"].(string)
			col := []string{"name", "position", "is_done", "description"}[rnd.IntN(4)]
			var v any
			switch col {
			case "name", "description":
				v = fmt.Sprintf("%s@%d", c.name, step)
			case "position":
				v = float64(step)
			default:
				v = rnd.IntN(2) == 0
			}
			return tx.Update("tasks", id, map[string]any{col: v})
		default:
			return tx.MarkAsDeleted("tasks", tasks[rnd.IntN(len(tasks))]["id"].(string))
		}
	})
}

// faultProxy forwards to the server and loses chosen requests: before they reach the
// server, or after the server answered (and committed).
type faultProxy struct {
	target string
	mu     sync.Mutex
	plan   map[int]string // request number → "before" or "after"
	n      int
	rnd    *rand.Rand
	rate   float64 // random faults when plan is nil
	log    []string
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.n++
	fault := p.plan[p.n]
	if p.plan == nil && p.rnd != nil && p.rnd.Float64() < p.rate {
		fault = []string{"before", "after"}[p.rnd.IntN(2)]
	}
	p.log = append(p.log, fmt.Sprintf("%d %s %s", p.n, r.URL.Path, fault))
	p.mu.Unlock()
	drop := func() {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	if fault == "before" {
		drop()
		return
	}
	body, _ := io.ReadAll(r.Body)
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		drop()
		return
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil || fault == "after" {
		drop() // the server has done its work; the client never hears of it
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(answer)
}

func newFaultProxy(t testing.TB, target string) (*faultProxy, string) {
	p := &faultProxy{target: target}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv.URL
}

// Every fault point of one sync: the sync fails as a network error, no local change is
// lost, and the next sync repairs everything.
func TestE2EFaultsAtEveryPoint(t *testing.T) {
	points := []struct {
		name    string
		request int // 1: pull, 2: push
		fault   string
	}{
		{"pull lost before the server", 1, "before"},
		{"pull answer lost", 1, "after"},
		{"push lost before the server", 2, "before"},
		{"push answer lost after the server committed", 2, "after"},
	}
	for _, pt := range points {
		t.Run(pt.name, func(t *testing.T) {
			s := newE2EServer(t)
			proxy, url := newFaultProxy(t, s.URL)
			a := newE2EClient(t, s, "a", "alice", url)
			other := newE2EClient(t, s, "other", "alice", "")
			// Shared starting point.
			other.write(t, create("projects", map[string]any{"id": "p1", "name": "shared"}))
			other.write(t, create("tasks", map[string]any{"id": "t1", "name": "shared task"}))
			other.mustSync(t)
			a.mustSync(t)
			// Local changes of every kind on a, a remote change from other.
			a.write(t, create("tasks", map[string]any{"id": "t2", "name": "new on a"}))
			a.write(t, func(tx *client.Tx) error { return tx.Update("projects", "p1", map[string]any{"name": "renamed on a"}) })
			a.write(t, func(tx *client.Tx) error { return tx.MarkAsDeleted("tasks", "t1") })
			other.write(t, create("comments", map[string]any{"id": "c1", "body": "from other"}))
			other.mustSync(t)
			before := a.state(t)

			proxy.mu.Lock()
			proxy.plan, proxy.n = map[int]string{pt.request: pt.fault}, 0
			proxy.mu.Unlock()
			err := a.sync(context.Background())
			if !errors.Is(err, client.ErrNetwork) {
				t.Fatalf("sync through the fault: %v (proxy %v)", err, proxy.log)
			}
			has, _ := a.db.HasUnsyncedChanges(context.Background())
			if !has {
				t.Fatal("local changes were marked as synced although the push answer was lost")
			}
			after := a.state(t)
			for _, ref := range [][2]string{{"tasks", "t2"}, {"projects", "p1"}} {
				if !cmp.Equal(before[ref[0]][ref[1]], after[ref[0]][ref[1]]) {
					t.Errorf("%s#%s changed by the failed sync: %v → %v", ref[0], ref[1], before[ref[0]][ref[1]], after[ref[0]][ref[1]])
				}
			}

			a.mustSync(t) // the proxy no longer loses anything
			other.mustSync(t)
			expectConverged(t, s, "alice", a, other)
			st := s.state(t, "alice")
			if st["tasks"]["t2"]["name"] != "new on a" || st["projects"]["p1"]["name"] != "renamed on a" || st["tasks"]["t1"] != nil || st["comments"]["c1"] == nil {
				t.Errorf("server state after repair: %v", st)
			}
		})
	}
}

// Many rounds of random faults with three clients editing their own records: at the
// end, after the network heals, the server holds exactly every client's last local
// version of its records: no local change is ever lost.
func TestE2ERandomFaultsNeverLoseLocalChanges(t *testing.T) {
	s := newE2EServer(t)
	proxy, url := newFaultProxy(t, s.URL)
	proxy.rnd, proxy.rate = rand.New(rand.NewPCG(7, 7)), 0.35
	clients := []*e2eClient{
		newE2EClient(t, s, "a", "alice", url),
		newE2EClient(t, s, "b", "alice", url),
		newE2EClient(t, s, "c", "alice", url),
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	// model: what each client last wrote to its own tasks (nil: deleted).
	model := map[string]map[string]any{}
	failures := 0
	for step := 0; step < 90; step++ {
		c := clients[rnd.IntN(len(clients))]
		own := []string{}
		for id, v := range model {
			if strings.HasPrefix(id, c.name+"-") && v != nil {
				own = append(own, id)
			}
		}
		sort.Strings(own)
		switch k := rnd.IntN(10); {
		case k < 4 || len(own) == 0:
			id := fmt.Sprintf("%s-%d", c.name, step)
			c.write(t, create("tasks", map[string]any{"id": id, "name": id, "position": float64(step)}))
			model[id] = map[string]any{"name": id, "position": float64(step)}
		case k < 8:
			id := own[rnd.IntN(len(own))]
			name := fmt.Sprintf("%s@%d", id, step)
			c.write(t, func(tx *client.Tx) error { return tx.Update("tasks", id, map[string]any{"name": name}) })
			model[id]["name"] = name
		default:
			id := own[rnd.IntN(len(own))]
			c.write(t, func(tx *client.Tx) error { return tx.MarkAsDeleted("tasks", id) })
			model[id] = nil
		}
		if rnd.IntN(3) == 0 {
			if err := c.sync(context.Background()); err != nil {
				if !errors.Is(err, client.ErrNetwork) {
					t.Fatalf("step %d: %s: %v", step, c.name, err)
				}
				failures++
			}
		}
	}
	proxy.mu.Lock()
	proxy.rate = 0
	proxy.mu.Unlock()
	for round := 0; round < 2; round++ {
		for _, c := range clients {
			c.mustSync(t)
		}
	}
	if failures == 0 {
		t.Fatal("the proxy injected no failure; the test proves nothing")
	}
	expectConverged(t, s, "alice", clients...)
	got := s.state(t, "alice")["tasks"]
	for id, want := range model {
		r := got[id]
		switch {
		case want == nil && r != nil:
			t.Errorf("%s was deleted locally but exists on the server: %v", id, r)
		case want != nil && r == nil:
			t.Errorf("%s was lost", id)
		case want != nil && (r["name"] != want["name"] || r["position"] != want["position"]):
			t.Errorf("%s = %v, want %v", id, r, want)
		}
	}
	if len(got) != countLive(model) {
		t.Errorf("server has %d tasks, model %d", len(got), countLive(model))
	}
	t.Logf("%d failed syncs out of the random ones; proxy saw %d requests", failures, proxy.n)
}

func countLive(m map[string]map[string]any) int {
	n := 0
	for _, v := range m {
		if v != nil {
			n++
		}
	}
	return n
}

// The first sync of a new device streams the whole data set (turbo) through HTTP.
func TestE2ETurboFirstSync(t *testing.T) {
	s := newE2EServer(t)
	a := newE2EClient(t, s, "a", "alice", "")
	const n = 3000
	a.write(t, func(tx *client.Tx) error {
		for i := 0; i < n; i++ {
			if _, err := tx.Create("tasks", map[string]any{"id": fmt.Sprintf("t%05d", i), "name": fmt.Sprint("task ", i), "position": float64(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	a.mustSync(t)
	b := newE2EClient(t, s, "b", "alice", "")
	log := &client.SyncLog{}
	opts := b.hc.Options()
	opts.UnsafeTurbo = true
	opts.Log = log
	if err := client.Synchronize(context.Background(), b.db, opts); err != nil {
		t.Fatal(err)
	}
	if !log.Turbo || log.RemoteChangeCount != n {
		t.Errorf("turbo %v, %d records", log.Turbo, log.RemoteChangeCount)
	}
	expectConverged(t, s, "alice", a, b)
	// Incremental syncs follow.
	b.write(t, func(tx *client.Tx) error { return tx.Update("tasks", "t00042", map[string]any{"name": "changed on b"}) })
	b.mustSync(t)
	a.mustSync(t)
	if got := a.state(t)["tasks"]["t00042"]["name"]; got != "changed on b" {
		t.Errorf("a sees %v", got)
	}
}

// Records belong to their user: another user's device neither sees nor can change them.
func TestE2EUsersAreSeparate(t *testing.T) {
	s := newE2EServer(t)
	a := newE2EClient(t, s, "a", "alice", "")
	m := newE2EClient(t, s, "m", "mallory", "")
	a.write(t, create("tasks", map[string]any{"id": "secret", "name": "alice's"}))
	a.mustSync(t)
	m.mustSync(t)
	if len(m.state(t)["tasks"]) != 0 {
		t.Fatalf("mallory sees %v", m.state(t)["tasks"])
	}
	// Mallory pushes a record with alice's id: it is rejected and kept locally.
	m.write(t, create("tasks", map[string]any{"id": "secret", "name": "mallory's"}))
	log := &client.SyncLog{}
	opts := m.hc.Options()
	opts.Log = log
	if err := client.Synchronize(context.Background(), m.db, opts); err != nil {
		t.Fatal(err)
	}
	if ids := log.RejectedIDs["tasks"]; len(ids) != 1 || ids[0] != "secret" {
		t.Errorf("rejected ids %v", log.RejectedIDs)
	}
	if has, _ := m.db.HasUnsyncedChanges(context.Background()); !has {
		t.Error("the rejected record was marked as synced")
	}
	if got := s.state(t, "alice")["tasks"]["secret"]["name"]; got != "alice's" {
		t.Errorf("alice's record is now %v", got)
	}
}
