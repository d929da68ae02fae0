package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/admin"
	"github.com/melonsync/melonsync/admin/admintest"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

const adminToken = "admin-token-0123456789abcdef"

// eachAdminStore runs fn on a fresh SQLite store and, when MELONSYNC_TEST_POSTGRES is
// set, on a fresh PostgreSQL schema.
func eachAdminStore(t *testing.T, fn func(t *testing.T, open func() admintest.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, func() admintest.Store {
			s, err := sqlite.Open(filepath.Join(t.TempDir(), "admin.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := testutil.PostgresDSN(t)
		fn(t, func() admintest.Store {
			name, _ := testutil.PostgresSchema(t, dsn, "melon_test_admin")
			s, err := postgres.Open(context.Background(), dsn, postgres.WithSchema(name))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
}

// adminEnv is a server with the sync log, the device gate and the admin API on.
type adminEnv struct {
	*env
	log   *admin.Log
	store admintest.Store
}

func newAdminEnv(t *testing.T, store admintest.Store, aopts *mhttp.AdminOptions) *adminEnv {
	t.Helper()
	h := storetest.NewHarness(t, store)
	auth, err := mhttp.NewAuth(secret)
	if err != nil {
		t.Fatal(err)
	}
	l := admin.NewLog(store, admin.LogOptions{FlushEvery: time.Hour})
	t.Cleanup(l.Close)
	opts := mhttp.Options{Auth: auth, SyncLog: l, Devices: store}
	if aopts != nil {
		aopts.Store, aopts.Log = store, l
		opts.Admin = aopts
	}
	srv := httptest.NewServer(mhttp.NewHandler(h.Svc, opts))
	t.Cleanup(srv.Close)
	return &adminEnv{env: &env{t: t, srv: srv, auth: auth, store: store}, log: l, store: store}
}

func (e *adminEnv) flush() {
	e.t.Helper()
	if err := e.log.Flush(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// device returns the headers of user's device.
func (e *adminEnv) device(user, device string) map[string]string {
	h := map[string]string{"Authorization": "Bearer " + e.token(user)}
	if device != "" {
		h[melonsync.HeaderDevice] = device
	}
	return h
}

func (e *adminEnv) admin() map[string]string {
	return map[string]string{"Authorization": "Bearer " + adminToken}
}

// pull pulls since and returns the answer (failing the test on a non-200).
func (e *adminEnv) pull(hdr map[string]string, since int64) melonsync.PullResponse {
	e.t.Helper()
	r := e.do("POST", "/api/sync/pull", hdr, fmt.Appendf(nil, `{"lastPulledAt":%d,"schemaVersion":3,"migration":null}`, since))
	if r.status != 200 {
		e.t.Fatalf("pull: %d %s", r.status, r.body)
	}
	var resp melonsync.PullResponse
	if err := json.Unmarshal(r.body, &resp); err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func (e *adminEnv) push(hdr map[string]string, since int64, changes string) reply {
	e.t.Helper()
	return e.do("POST", "/api/sync/push", hdr, fmt.Appendf(nil, `{"lastPulledAt":%d,"changes":%s}`, since, changes))
}

// history makes the activity of two users on three devices: first syncs, pushes, a
// conflict (alice's laptop pushes over a change of her phone) and a rejection (bob
// updates alice's task).
func (e *adminEnv) history() {
	e.t.Helper()
	phone, laptop, tablet := e.device("alice", "phone"), e.device("alice", "laptop"), e.device("bob", "tablet")
	p0 := e.pull(phone, 0)
	if r := e.push(phone, p0.Timestamp, `{"projects":{"created":[{"id":"p1","name":"Home"}],"updated":[],"deleted":[]},"tasks":{"created":[{"id":"t1","name":"Buy milk","project_id":"p1"},{"id":"t2","name":"Call mum","project_id":"p1"}],"updated":[],"deleted":[]}}`); r.status != 200 {
		e.t.Fatalf("push: %d %s", r.status, r.body)
	}
	l0 := e.pull(laptop, 0)
	p1 := e.pull(phone, p0.Timestamp)
	if r := e.push(phone, p1.Timestamp, `{"tasks":{"created":[],"updated":[{"id":"t1","name":"Buy oat milk","project_id":"p1"}],"deleted":[]}}`); r.status != 200 {
		e.t.Fatalf("push: %d %s", r.status, r.body)
	}
	if r := e.push(laptop, l0.Timestamp, `{"tasks":{"created":[],"updated":[{"id":"t1","name":"Buy soy milk","project_id":"p1"}],"deleted":[]}}`); r.status != 409 {
		e.t.Fatalf("the laptop's stale push: %d %s, want 409", r.status, r.body)
	}
	b0 := e.pull(tablet, 0)
	r := e.push(tablet, b0.Timestamp, `{"tasks":{"created":[{"id":"b1","name":"Bob's"}],"updated":[{"id":"t2","name":"mine now"}],"deleted":[]}}`)
	if r.status != 200 || !strings.Contains(string(r.body), `"experimentalRejectedIds":{"tasks":["t2"]}`) {
		e.t.Fatalf("bob's push over alice's task: %d %s", r.status, r.body)
	}
	e.flush()
}

// TestAdminAPI runs every admin route with no credential, a wrong one and a user's
// JWT (all refused, nothing revealed) and with the admin token.
func TestAdminAPI(t *testing.T) {
	eachAdminStore(t, func(t *testing.T, open func() admintest.Store) {
		e := newAdminEnv(t, open(), &mhttp.AdminOptions{Token: adminToken, Dev: true})
		e.history()
		type check func(t *testing.T, body map[string]any, raw string)
		has := func(subs ...string) check {
			return func(t *testing.T, _ map[string]any, raw string) {
				for _, s := range subs {
					if !strings.Contains(raw, s) {
						t.Errorf("answer lacks %s:\n%s", s, raw)
					}
				}
			}
		}
		routes := []struct {
			name, method, path, body string
			status                   int
			check                    check
		}{
			{"overview", "GET", "/admin/api/overview", "", 200, func(t *testing.T, b map[string]any, raw string) {
				if b["users"] != 2.0 || b["devices24h"] != 3.0 {
					t.Errorf("users %v devices24h %v, want 2 and 3", b["users"], b["devices24h"])
				}
				lh := b["lastHour"].(map[string]any)
				if lh["pulls"] != 4.0 || lh["pushes"] != 4.0 || lh["conflicts"] != 1.0 || lh["rejected"] != 1.0 {
					t.Errorf("last hour = %v, want 4 pulls, 4 pushes, 1 conflict, 1 rejected", lh)
				}
				if n := len(b["series"].([]any)); n != 60 {
					t.Errorf("%d buckets, want 60", n)
				}
				has(`{"table":"tasks","live":3,"deleted":0}`, `"syncLog":{"on":true,"entries":8`)(t, b, raw)
			}},
			{"users", "GET", "/admin/api/users", "", 200, has(`"user":"bob"`, `"user":"alice","devices":2`)},
			{"users search", "GET", "/admin/api/users?q=li", "", 200, func(t *testing.T, b map[string]any, raw string) {
				if us := b["users"].([]any); len(us) != 1 || !strings.Contains(raw, `"user":"alice"`) {
					t.Errorf("search li: %s", raw)
				}
			}},
			{"users bad limit", "GET", "/admin/api/users?limit=x", "", 400, has(`"invalid_request"`)},
			{"one user", "GET", "/admin/api/users/alice", "", 200, func(t *testing.T, b map[string]any, raw string) {
				devs := b["devices"].([]any)
				if len(devs) != 2 {
					t.Fatalf("%d devices, want 2", len(devs))
				}
				has(`"device":"laptop"`, `"device":"phone"`, `"conflictsInRow":1`, `"lastStatus":409`,
					`"conflicts":{"tasks":["t1"]}`, `{"table":"tasks","live":2,"deleted":0}`)(t, b, raw)
				if n := len(b["log"].([]any)); n != 6 {
					t.Errorf("alice's log has %d entries, want 6", n)
				}
			}},
			{"unknown user", "GET", "/admin/api/users/nobody", "", 404, has(`"not_found"`)},
			{"log", "GET", "/admin/api/log?limit=3", "", 200, has(`"next":`)},
			{"log of a device", "GET", "/admin/api/log?user=bob&device=tablet", "", 200, has(`"rejected":{"tasks":["t2"]}`, `"nRejected":1`)},
			{"log bad kind", "GET", "/admin/api/log?kind=x", "", 400, has(`"invalid_request"`)},
			{"records", "GET", "/admin/api/tables/tasks/records?owner=alice", "", 200, has(`"id":"t1"`, `"owner":"alice"`, `"name":"Buy oat milk"`, `"version":`)},
			{"records by column", "GET", "/admin/api/tables/tasks/records?column=project_id&value=p1", "", 200, has(`"id":"t2"`)},
			{"records by id", "GET", "/admin/api/tables/tasks/records?id=b1", "", 200, has(`"owner":"bob"`)},
			{"records unknown table", "GET", "/admin/api/tables/nope/records", "", 404, has(`"not_found"`)},
			{"records unknown column", "GET", "/admin/api/tables/tasks/records?column=nope&value=1", "", 400, has(`"invalid_request"`)},
			{"replace user", "POST", "/admin/api/users/carol/replace", "", 200, has(`"ok":true`)},
			{"replace device", "POST", "/admin/api/users/carol/devices/pc/replace", "", 200, has(`"device":"pc"`)},
			{"replace bad device", "POST", "/admin/api/users/carol/devices/a%20b/replace", "", 400, has(`"invalid_request"`)},
			{"revoke", "POST", "/admin/api/users/carol/devices/~/revoke", "", 200, has(`"revoked":true`, `"device":""`)},
			{"restore", "POST", "/admin/api/users/carol/devices/~/restore", "", 200, has(`"revoked":false`)},
			{"mint", "POST", "/admin/api/tokens", `{"user":"dave","ttl":"1h"}`, 200, has(`"token":"`)},
			{"mint bad ttl", "POST", "/admin/api/tokens", `{"user":"dave","ttl":"soon"}`, 400, has(`"invalid_request"`)},
			{"groups without access rules", "GET", "/admin/api/groups", "", 200, has(`"kinds":[]`)},
			{"wrong method", "POST", "/admin/api/overview", "", 405, has(`"method_not_allowed"`)},
			{"unknown route", "GET", "/admin/api/nope", "", 404, has(`"not_found"`)},
		}
		secrets := []string{"alice", "bob", "Buy", "tablet", "laptop", "p1", "dave", "token\":"}
		for _, rt := range routes {
			t.Run(rt.name, func(t *testing.T) {
				for _, bad := range []struct{ name, auth string }{
					{"no credential", ""},
					{"wrong token", "Bearer not-the-admin-token-at-all"},
					{"basic scheme", "Basic " + adminToken},
					{"a user's JWT", "Bearer " + e.token("alice")},
				} {
					hdr := map[string]string{}
					if bad.auth != "" {
						hdr["Authorization"] = bad.auth
					}
					r := e.do(rt.method, rt.path, hdr, []byte(rt.body))
					if r.status != 401 || !strings.Contains(string(r.body), `"code":"unauthorized"`) {
						t.Errorf("%s: %d %s, want 401 unauthorized", bad.name, r.status, r.body)
					}
					for _, s := range secrets {
						if strings.Contains(string(r.body), s) {
							t.Errorf("%s: the refusal reveals %q: %s", bad.name, s, r.body)
						}
					}
				}
				r := e.do(rt.method, rt.path, e.admin(), []byte(rt.body))
				if r.status != rt.status {
					t.Fatalf("with the admin token: %d %s, want %d", r.status, r.body, rt.status)
				}
				if r.header.Get("Cache-Control") != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", r.header.Get("Cache-Control"))
				}
				var body map[string]any
				if err := json.Unmarshal(r.body, &body); err != nil {
					t.Fatalf("answer is not JSON: %s", r.body)
				}
				rt.check(t, body, string(r.body))
			})
		}
	})
}

// TestSyncLogEntries checks what the log holds for two users on three devices.
func TestSyncLogEntries(t *testing.T) {
	eachAdminStore(t, func(t *testing.T, open func() admintest.Store) {
		e := newAdminEnv(t, open(), nil)
		e.history()
		entries, err := e.store.Log(context.Background(), admin.LogQuery{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i := len(entries) - 1; i >= 0; i-- {
			x := entries[i]
			s := fmt.Sprintf("%s/%s %s %d", x.User, x.Device, x.Kind, x.Status)
			if x.NConflicts > 0 {
				s += fmt.Sprintf(" conflicts=%v", x.Conflicts)
			}
			if x.NRejected > 0 {
				s += fmt.Sprintf(" rejected=%v", x.Rejected)
			}
			got = append(got, s)
			if x.At <= 0 || x.DurationMS <= 0 || x.Route == "" {
				t.Errorf("entry %d lacks time, duration or route: %+v", i, x)
			}
			if x.Status == 200 && x.Timestamp <= 0 {
				t.Errorf("successful %s without a timestamp: %+v", x.Kind, x)
			}
		}
		want := []string{
			"alice/phone pull 200",
			"alice/phone push 200",
			"alice/laptop pull 200",
			"alice/phone pull 200",
			"alice/phone push 200",
			"alice/laptop push 409 conflicts=map[tasks:[t1]]",
			"bob/tablet pull 200",
			"bob/tablet push 200 rejected=map[tasks:[t2]]",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// Records per table and kind, and lastPulledAt → timestamp.
		first := entries[len(entries)-1]
		if first.LastPulledAt != 0 || first.SchemaVersion != 3 || len(first.Tables) != 0 {
			t.Errorf("first pull: %+v", first)
		}
		push := entries[len(entries)-2]
		if c := push.Tables["tasks"]; c.Created != 2 || push.Tables["projects"].Created != 1 || push.Timestamp <= push.LastPulledAt {
			t.Errorf("first push: %+v", push)
		}
		laptopPull := entries[len(entries)-3]
		if c := laptopPull.Tables["tasks"]; c.Created != 2 || laptopPull.Timestamp != push.Timestamp {
			t.Errorf("the laptop's first pull: %+v (want 2 tasks created, timestamp %d)", laptopPull, push.Timestamp)
		}
		phonePull := entries[len(entries)-4]
		if c := phonePull.Tables["tasks"]; c.Updated != 2 || phonePull.LastPulledAt == 0 {
			t.Errorf("the phone's second pull: %+v (its own records come back as updated)", phonePull)
		}
	})
}

// TestForceReplacement: after the operator's request, the device's next pull is a
// replacement (everything it may read, experimentalStrategy "replacement"), the one
// after is incremental again, and other devices are not affected.
func TestForceReplacement(t *testing.T) {
	eachAdminStore(t, func(t *testing.T, open func() admintest.Store) {
		e := newAdminEnv(t, open(), &mhttp.AdminOptions{Token: adminToken})
		e.history()
		phone, laptop, tablet := e.device("alice", "phone"), e.device("alice", "laptop"), e.device("bob", "tablet")
		now := e.pull(phone, 0).Timestamp
		if r := e.do("POST", "/admin/api/users/alice/devices/phone/replace", e.admin(), nil); r.status != 200 {
			t.Fatalf("replace: %d %s", r.status, r.body)
		}
		r := e.pull(phone, now)
		if r.Strategy != melonsync.StrategyReplacement || len(r.Changes["tasks"].Updated)+len(r.Changes["tasks"].Created) != 2 {
			t.Fatalf("the phone's pull after the request: strategy %q, tasks %+v; want a replacement with both tasks", r.Strategy, r.Changes["tasks"])
		}
		if again := e.pull(phone, r.Timestamp); again.Strategy != "" {
			t.Errorf("the pull after the replacement is %q, want incremental", again.Strategy)
		}
		if l := e.pull(laptop, now); l.Strategy != "" {
			t.Errorf("the laptop got %q; only the phone was asked", l.Strategy)
		}
		e.flush()
		u := e.do("GET", "/admin/api/users/alice", e.admin(), nil)
		if !strings.Contains(string(u.body), `"strategy":"replacement"`) || !strings.Contains(string(u.body), `"replacePending":false`) {
			t.Errorf("the user page does not show the served replacement: %s", u.body)
		}
		// Every device of a user, also one that never synced and one without a header.
		if r := e.do("POST", "/admin/api/users/bob/replace", e.admin(), nil); r.status != 200 {
			t.Fatalf("replace user: %d %s", r.status, r.body)
		}
		for _, hdr := range []map[string]string{tablet, e.device("bob", "new-phone"), e.device("bob", "")} {
			if got := e.pull(hdr, now); got.Strategy != melonsync.StrategyReplacement || len(got.Changes["tasks"].Updated)+len(got.Changes["tasks"].Created) != 1 {
				t.Errorf("bob's %q after the user-wide request: %q %+v", hdr[melonsync.HeaderDevice], got.Strategy, got.Changes["tasks"])
			}
			if got := e.pull(hdr, now); got.Strategy != "" {
				t.Errorf("bob's %q second pull is %q", hdr[melonsync.HeaderDevice], got.Strategy)
			}
		}
		if got := e.pull(phone, now); got.Strategy != "" {
			t.Errorf("bob's request reached alice's phone: %q", got.Strategy)
		}
	})
}

// TestRevokedDevice: a revoked device's requests get 401 device_revoked, others of
// the same user sync on, and a restored device syncs again.
func TestRevokedDevice(t *testing.T) {
	eachAdminStore(t, func(t *testing.T, open func() admintest.Store) {
		e := newAdminEnv(t, open(), &mhttp.AdminOptions{Token: adminToken})
		e.history()
		phone, laptop := e.device("alice", "phone"), e.device("alice", "laptop")
		if r := e.do("POST", "/admin/api/users/alice/devices/laptop/revoke", e.admin(), nil); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		before := e.snapshot()
		for _, req := range []struct{ method, path, body string }{
			{"POST", "/api/sync/pull", `{"lastPulledAt":null}`},
			{"POST", "/api/sync/push", `{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":"zz","name":"x"}],"updated":[],"deleted":[]}}}`},
			{"GET", "/sync?last_pulled_at=0", ""},
			{"POST", "/sync?last_pulled_at=0", `{"tasks":{"created":[{"id":"zz","name":"x"}],"updated":[],"deleted":[]}}`},
			{"GET", "/api/sync/events", ""},
		} {
			r := e.do(req.method, req.path, laptop, []byte(req.body))
			if r.status != 401 || !strings.Contains(string(r.body), `"code":"device_revoked"`) || strings.Contains(string(r.body), "Buy") {
				t.Errorf("%s %s from the revoked laptop: %d %s, want 401 device_revoked", req.method, req.path, r.status, r.body)
			}
		}
		if after := e.snapshot(); after != before {
			t.Errorf("the revoked device wrote:\n%s\n%s", before, after)
		}
		e.pull(phone, 0) // the phone syncs on
		e.do("POST", "/admin/api/users/alice/devices/laptop/restore", e.admin(), nil)
		e.pull(laptop, 0)
		e.flush()
		devs, _ := e.store.Devices(context.Background(), "alice")
		for _, d := range devs {
			if d.Device == "laptop" && (d.RevokedAt != 0 || d.LastStatus != 200) {
				t.Errorf("restored laptop: %+v", d)
			}
		}
	})
}

// TestAdminOff: without a token every admin path answers 404 and says how to turn it
// on; minting needs --dev.
func TestAdminOff(t *testing.T) {
	store, _ := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	e := newAdminEnv(t, store, nil)
	for _, p := range []string{"/admin/", "/admin/app.js", "/admin/api/overview", "/admin/api/users/alice"} {
		for _, hdr := range []map[string]string{nil, e.admin()} {
			r := e.do("GET", p, hdr, nil)
			if r.status != 404 || !strings.Contains(string(r.body), "--admin-token") {
				t.Errorf("GET %s with the admin off: %d %s", p, r.status, r.body)
			}
		}
	}
	store2, _ := sqlite.Open(filepath.Join(t.TempDir(), "s2.db"))
	e2 := newAdminEnv(t, store2, &mhttp.AdminOptions{Token: adminToken})
	if r := e2.do("POST", "/admin/api/tokens", e2.admin(), []byte(`{"user":"dave"}`)); r.status != 403 || strings.Contains(string(r.body), `"token"`) {
		t.Errorf("mint without --dev: %d %s, want 403", r.status, r.body)
	}
}

// TestMintedTokenSyncs: a token minted by the admin API (with --dev) syncs.
func TestMintedTokenSyncs(t *testing.T) {
	store, _ := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	e := newAdminEnv(t, store, &mhttp.AdminOptions{Token: adminToken, Dev: true})
	r := e.do("POST", "/admin/api/tokens", e.admin(), []byte(`{"user":"dave","ttl":"10m"}`))
	var got struct{ Token string }
	json.Unmarshal(r.body, &got)
	if r.status != 200 || got.Token == "" {
		t.Fatalf("mint: %d %s", r.status, r.body)
	}
	e.pull(map[string]string{"Authorization": "Bearer " + got.Token}, 0)
}

// TestSyncLogBoundsUnderLoad: thousands of pushes from concurrent clients; the log
// never holds more than its bound, keeps the newest entries, and the device
// summaries count every push.
func TestSyncLogBoundsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("thousands of pushes")
	}
	eachAdminStore(t, func(t *testing.T, open func() admintest.Store) {
		const pushes, clients, bound = 2000, 8, 300
		store := open()
		h := storetest.NewHarness(t, store)
		auth, _ := mhttp.NewAuth(secret)
		l := admin.NewLog(store, admin.LogOptions{MaxEntries: bound, FlushEvery: 5 * time.Millisecond})
		l.Start()
		srv := httptest.NewServer(mhttp.NewHandler(h.Svc, mhttp.Options{Auth: auth, SyncLog: l, Devices: store}))
		defer srv.Close()
		e := &adminEnv{env: &env{t: t, srv: srv, auth: auth, store: store}, log: l, store: store}
		stop := make(chan struct{})
		var peak int64
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if n, err := store.LogCount(context.Background()); err == nil && n > peak {
					peak = n
				}
			}
		}()
		var next atomic.Int64
		var wg sync.WaitGroup
		deadline := time.Now().Add(3 * time.Minute)
		for c := range clients {
			hdr := e.device(fmt.Sprintf("u%d", c%4), fmt.Sprintf("d%d", c))
			wg.Go(func() {
				for time.Now().Before(deadline) {
					i := next.Add(1)
					if i > pushes {
						return
					}
					r := e.push(hdr, 0, fmt.Sprintf(`{"tasks":{"created":[{"id":"x%d","name":"n"}],"updated":[],"deleted":[]}}`, i))
					if r.status != 200 {
						t.Errorf("push %d: %d %s", i, r.status, r.body)
						return
					}
				}
			})
		}
		wg.Wait()
		l.Close()
		close(stop)
		<-sampled
		if next.Load() < pushes {
			t.Fatalf("only %d pushes within the time bound", next.Load())
		}
		n, err := store.LogCount(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n > bound || peak > bound || n < bound/2 {
			t.Errorf("the log holds %d entries (peak %d seen), bound %d", n, peak, bound)
		}
		newest, _ := store.Log(context.Background(), admin.LogQuery{Limit: 1})
		if len(newest) != 1 || newest[0].ID < int64(pushes) {
			t.Errorf("the newest entry is %+v; want an id ≥ %d (the newest are kept)", newest, pushes)
		}
		var counted int64
		for u := range 4 {
			devs, _ := store.Devices(context.Background(), fmt.Sprintf("u%d", u))
			for _, d := range devs {
				counted += d.Pushes
			}
		}
		if counted+l.Dropped() != pushes {
			t.Errorf("device summaries count %d pushes (+%d dropped), want %d", counted, l.Dropped(), pushes)
		}
	})
}
