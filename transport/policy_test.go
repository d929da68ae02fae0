package transport_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/melonsync/melonsync/client"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
	"github.com/melonsync/melonsync/transport"
)

// ctPolicyServer runs the real server with the conflict-policy schema and a write
// hook that refuses t_client titles longer than 10 characters.
func ctPolicyServer(t *testing.T) (*storetest.Harness, string, *mhttp.Auth) {
	t.Helper()
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	h := storetest.NewPolicyHarness(t, store)
	err = h.Svc.SetWriteHook(server.HookFunc(func(ctx context.Context, body []byte) ([]byte, error) {
		var req struct {
			Changes map[string]map[string][]map[string]any
		}
		json.Unmarshal(body, &req)
		var bad []string
		reasons := map[string]string{}
		for _, kind := range []string{"created", "updated"} {
			for _, r := range req.Changes["t_client"][kind] {
				if title, _ := r["title"].(string); len(title) > 10 {
					id := r["id"].(string)
					bad = append(bad, id)
					reasons[id] = "title too long"
				}
			}
		}
		return json.Marshal(map[string]any{"rejected": map[string][]string{"t_client": bad}, "reasons": reasons})
	}), []string{"t_client"})
	if err != nil {
		t.Fatal(err)
	}
	srv := testutil.NewServer(t, h.Svc, mhttp.Options{})
	return h, srv.URL, srv.Auth
}

// A hook's refusal reaches the Go client's sync log with its reason, and the record
// stays unsynced; a conflict under client-wins is settled by the server in one sync
// (no 409, no retry), and the next syncs converge.
func TestClientPoliciesAndHookReasons(t *testing.T) {
	h, url, auth := ctPolicyServer(t)
	ctx := context.Background()
	tok := transport.StaticToken(ctToken(t, auth, "alice"))
	open := func(name string) (*client.DB, client.SyncOptions) {
		db, err := client.Open(filepath.Join(t.TempDir(), name), h.Schema)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db, ctClient(t, url, tok, name).Options()
	}
	laptop, lopts := open("laptop")
	phone, popts := open("phone")

	write := func(db *client.DB, fn func(tx *client.Tx) error) {
		t.Helper()
		if err := db.Write(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	sync := func(db *client.DB, opts client.SyncOptions) *client.SyncLog {
		t.Helper()
		opts.Log = &client.SyncLog{}
		if err := client.Synchronize(ctx, db, opts); err != nil {
			t.Fatalf("sync: %v", err)
		}
		return opts.Log
	}
	find := func(db *client.DB, id string) client.Record {
		t.Helper()
		var r client.Record
		db.Read(ctx, func(tx *client.Tx) error {
			var err error
			r, err = tx.Find("t_client", id)
			return err
		})
		return r
	}

	write(laptop, func(tx *client.Tx) error {
		if _, err := tx.Create("t_client", map[string]any{"id": "ok", "title": "short"}); err != nil {
			return err
		}
		_, err := tx.Create("t_client", map[string]any{"id": "long", "title": "much too long a title"})
		return err
	})
	log := sync(laptop, lopts)
	if got := log.RejectedIDs["t_client"]; len(got) != 1 || got[0] != "long" {
		t.Errorf("rejected ids %v", log.RejectedIDs)
	}
	if log.RejectedReasons["long"] != "title too long" {
		t.Errorf("rejected reasons %v, want long: title too long", log.RejectedReasons)
	}
	js, _ := json.Marshal(log)
	if !strings.Contains(string(js), `"rejectedReasons":{"long":"title too long"}`) {
		t.Errorf("the log's JSON lacks the reason: %s", js)
	}
	if s := find(laptop, "long")["_status"]; s != "created" {
		t.Errorf("the refused record is %v locally, want still created (unsynced)", s)
	}
	if s := find(laptop, "ok")["_status"]; s != "synced" {
		t.Errorf("the accepted record is %v locally, want synced", s)
	}

	// Both devices have "ok". The laptop marks it done while, between its pull and
	// its push, the phone renames it: a conflict at the laptop's push.
	sync(phone, popts)
	write(laptop, func(tx *client.Tx) error { return tx.Update("t_client", "ok", map[string]any{"done": true}) })
	write(phone, func(tx *client.Tx) error { return tx.Update("t_client", "ok", map[string]any{"title": "renamed"}) })
	lopts.OnDidPullChanges = func(ctx context.Context, _ client.PulledInfo) error {
		sync(phone, popts)
		return nil
	}
	log = sync(laptop, lopts)
	lopts.OnDidPullChanges = nil
	if log.Attempts > 1 {
		t.Errorf("the sync was retried after a 409: the policy should have settled it")
	}
	if got := log.ServerResolvedIDs["t_client"]; len(got) != 1 || got[0] != "ok" {
		t.Errorf("server-resolved ids %v, want ok", log.ServerResolvedIDs)
	}
	sync(laptop, lopts)
	sync(phone, popts)
	for name, db := range map[string]*client.DB{"laptop": laptop, "phone": phone} {
		r := find(db, "ok")
		if r["title"] != "renamed" || r["done"] != true || r["_status"] != "synced" {
			t.Errorf("%s has %v, want title renamed (phone's) and done (laptop's), synced", name, r)
		}
	}
}
