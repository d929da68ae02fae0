package http_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

// fuzzEnv is a handler over a real SQLite store, called in-process.
type fuzzEnv struct {
	h          http.Handler
	svc        *server.Service
	alice, bob string
}

func newFuzzEnv(f *testing.F) *fuzzEnv {
	store, err := sqlite.Open(filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	sch := storetest.TodoSchema(f)
	if err := store.Prepare(context.Background(), sch); err != nil {
		f.Fatal(err)
	}
	auth, err := mhttp.NewAuth(secret)
	if err != nil {
		f.Fatal(err)
	}
	svc := server.New(store, sch)
	e := &fuzzEnv{h: mhttp.NewHandler(svc, mhttp.Options{Auth: auth, MaxBodyBytes: 256 << 10}), svc: svc}
	for _, u := range []string{"alice", "bob"} {
		tok, err := auth.Mint(u, 24*time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		if u == "alice" {
			e.alice = tok
		} else {
			e.bob = tok
		}
	}
	// Bob owns a record whose content must never reach alice.
	r := e.do("POST", "/api/sync/push", e.bob, nil, []byte(`{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":"bobs","name":"BOB-SECRET-MARKER"}]}}}`))
	if r.Code != 200 {
		f.Fatalf("seed: %d %s", r.Code, r.Body)
	}
	return e
}

func (e *fuzzEnv) do(method, target, token string, hdr map[string]string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://melonsync.test/", bytes.NewReader(body))
	// The target may hold anything the fuzzer made: set it without parsing rules.
	path, query, _ := strings.Cut(target, "?")
	req.URL.Path, req.URL.RawQuery = path, query
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return w
}

func (e *fuzzEnv) clock(t *testing.T) int64 {
	c, err := e.svc.Clock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkErrorBody fails t unless body is {"error":{"code","message","details"}} with
// the code that goes with status.
func checkErrorBody(t *testing.T, status int, body []byte) {
	t.Helper()
	var env struct {
		Error *struct {
			Code    string         `json:"code"`
			Message string         `json:"message"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Error == nil || env.Error.Message == "" || env.Error.Details == nil {
		t.Fatalf("%d with a body that is not an error: %q", status, body)
	}
	if mhttp.StatusFor(env.Error.Code) != status {
		t.Fatalf("%d with code %q", status, env.Error.Code)
	}
}

// FuzzPushHandler sends any body through the whole push handler (both endpoint forms,
// plain or gzipped): the answer is 200, 400, 409 or 413 — never a 5xx — with the
// error shape, and a refused push writes nothing (the store's clock does not move).
// An accepted push that wrote is visible to a pull of its user.
func FuzzPushHandler(f *testing.F) {
	e := newFuzzEnv(f)
	for _, s := range []string{
		`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"p1","name":"Home","is_favorite":true,"position":1}],"updated":[],"deleted":[]}}}`,
		`{"lastPulledAt":0,"changes":{"tasks":{"created":[],"updated":[{"id":"t1","name":7,"is_done":1,"_status":"updated","_changed":"name"}],"deleted":["x"]}}}`,
		`{"lastPulledAt":0,"changes":{"tasks":{"updated":[{"id":"bobs","name":"mine now"}]}}}`,
		`{"lastPulledAt":0,"changes":{"tasks":{"deleted":["bobs"]},"comments":{"created":[{"id":"c1","body":"\u00e9"}]}}}`,
		`{"lastPulledAt":1,"changes":{"nope; DROP TABLE tasks":{"created":[{"id":"a"}]}}}`,
		`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a'b","name":"x"}]}}}`,
		`{"lastPulledAt":-1,"changes":{}}`,
		`{"changes":{"projects":{"created":[{"id":"__proto__"}]}}}`,
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, mode uint8) {
		before := e.clock(t)
		path := "/api/sync/push"
		if mode&1 != 0 {
			// WatermelonDB docs' form: the changes alone, lastPulledAt in the URL.
			var top struct {
				Changes json.RawMessage `json:"changes"`
			}
			if json.Unmarshal(body, &top) == nil && top.Changes != nil {
				body = top.Changes
			}
			path = "/sync?last_pulled_at=0"
		}
		hdr := map[string]string{melonsync.HeaderDevice: "fuzz"}
		if mode&2 != 0 {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(body)
			zw.Close()
			body = buf.Bytes()
			if mode&4 != 0 && len(body) > 4 {
				body = body[:len(body)-4] // cut short
			}
			hdr["Content-Encoding"] = "gzip"
		}
		r := e.do("POST", path, e.alice, hdr, body)
		switch r.Code {
		case 200:
			var resp melonsync.PushResponse
			if err := json.Unmarshal(r.Body.Bytes(), &resp); err != nil || !resp.OK || resp.Timestamp < before {
				t.Fatalf("200 with %q (clock before: %d)", r.Body.Bytes(), before)
			}
			if strings.Contains(r.Body.String(), "BOB-SECRET-MARKER") {
				t.Fatalf("bob's content in alice's push answer: %s", r.Body.Bytes())
			}
		case 400, 409, 413:
			checkErrorBody(t, r.Code, r.Body.Bytes())
			if after := e.clock(t); after != before {
				t.Fatalf("%d, yet the store changed (clock %d → %d)", r.Code, before, after)
			}
		default:
			t.Fatalf("status %d: %s", r.Code, r.Body.Bytes())
		}
		// Bob's record is untouched whatever alice sent.
		pr := e.do("POST", "/api/sync/pull", e.bob, nil, []byte(`{"lastPulledAt":null}`))
		if pr.Code != 200 || !strings.Contains(pr.Body.String(), `"name":"BOB-SECRET-MARKER"`) {
			t.Fatalf("bob's record changed: %d %s", pr.Code, pr.Body.Bytes())
		}
	})
}

// FuzzPullHandler sends any query and body to the pull endpoints: the answer is 200
// or 400 with the error shape; a 200 lists only schema tables, no id twice, and never
// another user's record.
func FuzzPullHandler(f *testing.F) {
	e := newFuzzEnv(f)
	for _, c := range []struct{ q, body string }{
		{"", `{"lastPulledAt":null,"schemaVersion":3,"migration":null}`},
		{"", `{"lastPulledAt":0,"schemaVersion":1,"migration":{"from":1,"tables":["comments","bobs"],"columns":[{"table":"tasks","columns":["name","__owner"]}]}}`},
		{"since=null", ``},
		{"last_pulled_at=undefined&schema_version=2&migration=%7B%22from%22%3A1%2C%22tables%22%3A%5B%22tasks%22%5D%2C%22columns%22%3A%5B%5D%7D", ``},
		{"since=5&lastPulledAt=5", `{}`},
		{"migration=%7B", ``},
		{"schemaVersion=99999999999", ``},
	} {
		f.Add(c.q, []byte(c.body), uint8(0))
		f.Add(c.q, []byte(c.body), uint8(1))
	}
	f.Fuzz(func(t *testing.T, query string, body []byte, mode uint8) {
		var r *httptest.ResponseRecorder
		switch mode % 3 {
		case 0:
			r = e.do("POST", "/api/sync/pull?"+query, e.alice, nil, body)
		case 1:
			r = e.do("GET", "/api/sync/pull?"+query, e.alice, nil, nil)
		default:
			r = e.do("GET", "/sync?"+query, e.alice, nil, nil)
		}
		switch r.Code {
		case 200:
		case 400:
			checkErrorBody(t, r.Code, r.Body.Bytes())
			return
		case 409: // a schema version newer than the server's: retry later
			checkErrorBody(t, r.Code, r.Body.Bytes())
			if !strings.Contains(r.Body.String(), server.ReasonSchemaAhead) {
				t.Fatalf("status 409 for a pull: %s", r.Body.Bytes())
			}
			return
		default:
			t.Fatalf("status %d: %s", r.Code, r.Body.Bytes())
		}
		if strings.Contains(r.Body.String(), "BOB-SECRET-MARKER") || strings.Contains(r.Body.String(), `"bobs"`) {
			t.Fatalf("bob's record reached alice: %s", r.Body.Bytes())
		}
		var resp melonsync.PullResponse
		if err := json.Unmarshal(r.Body.Bytes(), &resp); err != nil || resp.Timestamp <= 0 {
			t.Fatalf("200 with %q", r.Body.Bytes())
		}
		seen := map[string]bool{}
		for table, tc := range resp.Changes {
			if e.svc.Schema().Table(table) == nil || tc == nil {
				t.Fatalf("table %q in the answer", table)
			}
			for _, rec := range append(append([]melonsync.RawRecord{}, tc.Created...), tc.Updated...) {
				id, _ := rec["id"].(string)
				for k := range rec {
					if strings.HasPrefix(k, "_") {
						t.Fatalf("column %q sent", k)
					}
				}
				if seen[table+"/"+id] {
					t.Fatalf("%s/%s twice", table, id)
				}
				seen[table+"/"+id] = true
			}
		}
	})
}
