package http_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/melonsync/melonsync"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

var secret = testutil.Secret

type env struct {
	t     *testing.T
	srv   *httptest.Server
	auth  *mhttp.Auth
	store server.Store
}

func newEnv(t *testing.T, maxBody int64) *env {
	t.Helper()
	return newEnvWith(t, mhttp.Options{MaxBodyBytes: maxBody}, nil)
}

// newEnvWith is newEnv with handler options (Auth is set here) and a hook that may
// configure the Auth before the handler is built.
func newEnvWith(t *testing.T, o mhttp.Options, setUp func(*mhttp.Auth)) *env {
	t.Helper()
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	h := storetest.NewHarness(t, store)
	auth, err := mhttp.NewAuth(secret)
	if err != nil {
		t.Fatal(err)
	}
	if setUp != nil {
		setUp(auth)
	}
	o.Auth = auth
	srv := testutil.NewServer(t, h.Svc, o)
	return &env{t: t, srv: srv.Server, auth: srv.Auth, store: store}
}

func (e *env) token(user string) string {
	tok, err := e.auth.Mint(user, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(method, path string, hdr map[string]string, body []byte) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// Keep the raw bytes: no transparent decompression.
	if req.Header.Get("Accept-Encoding") == "" {
		req.Header.Set("Accept-Encoding", "identity")
	}
	resp, err := doClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func (e *env) as(user string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + e.token(user), melonsync.HeaderDevice: "dev-" + user}
}

// snapshot is everything both users can read, for "nothing was written" checks.
func (e *env) snapshot() string {
	var out strings.Builder
	for _, u := range []string{"alice", "bob"} {
		r := e.do("POST", "/api/sync/pull", e.as(u), []byte(`{"lastPulledAt":null}`))
		if r.status != 200 {
			e.t.Fatalf("snapshot pull: %d %s", r.status, r.body)
		}
		out.Write(r.body)
	}
	return out.String()
}

func errorCode(t *testing.T, body []byte) string {
	var e struct {
		Error struct {
			Code    string         `json:"code"`
			Message string         `json:"message"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" || e.Error.Details == nil {
		t.Errorf("not an error body: %s", body)
	}
	return e.Error.Code
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func signed(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		panic(err)
	}
	return s
}

// TestBadInputs: every bad request gets its 4xx with a code and a message, and
// nothing is written.
func TestBadInputs(t *testing.T) {
	e := newEnv(t, 64<<10)
	seed := e.do("POST", "/api/sync/push", e.as("alice"), []byte(`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"alice1","name":"secret"}]}}}`))
	if seed.status != 200 {
		t.Fatalf("seed: %d %s", seed.status, seed.body)
	}
	alice := e.as("alice")
	bob := e.as("bob")
	push := func(changes string) []byte { return []byte(`{"lastPulledAt":0,"changes":` + changes + `}`) }
	rec := func(id string) []byte {
		b, _ := json.Marshal(id)
		return push(`{"projects":{"created":[{"id":` + string(b) + `,"name":"x"}]}}`)
	}
	long := strings.Repeat("a", 65)
	noneTok := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + jwtPart(`{"sub":"alice"}`) + "."
	expired := signed(jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix()})
	forged := signed(jwt.SigningMethodHS256, []byte("another-secret-entirely-xx"), jwt.MapClaims{"sub": "alice"})
	hs384 := signed(jwt.SigningMethodHS384, secret, jwt.MapClaims{"sub": "alice"})
	nosub := signed(jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()})
	notBefore := signed(jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "nbf": time.Now().Add(time.Hour).Unix()})
	withAuth := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	big := push(`{"projects":{"created":[{"id":"big","name":"` + strings.Repeat("x", 70<<10) + `"}]}}`)

	cases := []struct {
		name   string
		method string
		path   string
		hdr    map[string]string
		body   []byte
		status int
		code   string
	}{
		{"malformed JSON", "POST", "/api/sync/push", alice, []byte(`{"lastPulledAt":0,"changes":`), 400, "invalid_request"},
		{"body is an array", "POST", "/api/sync/push", alice, []byte(`[]`), 400, "invalid_request"},
		{"empty body push", "POST", "/api/sync/push", alice, nil, 400, "invalid_request"},
		{"changes is a string", "POST", "/api/sync/push", alice, push(`"x"`), 400, "invalid_request"},
		{"changes missing", "POST", "/api/sync/push", alice, []byte(`{"lastPulledAt":0}`), 400, "invalid_request"},
		{"table changes is an array", "POST", "/api/sync/push", alice, push(`{"projects":[]}`), 400, "invalid_request"},
		{"created is an object", "POST", "/api/sync/push", alice, push(`{"projects":{"created":{}}}`), 400, "invalid_request"},
		{"record is a string", "POST", "/api/sync/push", alice, push(`{"projects":{"created":["p1"]}}`), 400, "invalid_request"},
		{"record is null", "POST", "/api/sync/push", alice, push(`{"projects":{"updated":[null]}}`), 400, "invalid_request"},
		{"record without id", "POST", "/api/sync/push", alice, push(`{"projects":{"created":[{"name":"x"}]}}`), 400, "invalid_request"},
		{"numeric id", "POST", "/api/sync/push", alice, push(`{"projects":{"created":[{"id":5}]}}`), 400, "invalid_request"},
		{"deleted id is a number", "POST", "/api/sync/push", alice, push(`{"projects":{"deleted":[5]}}`), 400, "invalid_request"},
		{"deleted is a string", "POST", "/api/sync/push", alice, push(`{"projects":{"deleted":"p1"}}`), 400, "invalid_request"},
		{"unknown table", "POST", "/api/sync/push", alice, push(`{"nope":{"created":[{"id":"n1"}]}}`), 400, "invalid_request"},
		{"sql table name", "POST", "/api/sync/push", alice, push(`{"projects; DROP TABLE projects":{"created":[]}}`), 400, "invalid_request"},
		{"__proto__ table", "POST", "/api/sync/push", alice, push(`{"__proto__":{"created":[]}}`), 400, "invalid_request"},
		{"__proto__ column", "POST", "/api/sync/push", alice, push(`{"projects":{"created":[{"id":"p1","__proto__":{"x":1}}]}}`), 400, "invalid_request"},
		{"constructor column", "POST", "/api/sync/push", alice, push(`{"projects":{"created":[{"id":"p1","constructor":1}]}}`), 400, "invalid_request"},
		{"unexpected key in table changes", "POST", "/api/sync/push", alice, push(`{"projects":{"created":[],"destroyed":[]}}`), 400, "invalid_request"},
		{"id with quote", "POST", "/api/sync/push", alice, rec(`a'b`), 400, "invalid_request"},
		{"id with double quote", "POST", "/api/sync/push", alice, rec(`a"b`), 400, "invalid_request"},
		{"id with slash", "POST", "/api/sync/push", alice, rec(`a/b`), 400, "invalid_request"},
		{"id with backslash", "POST", "/api/sync/push", alice, rec(`a\b`), 400, "invalid_request"},
		{"id with dollar", "POST", "/api/sync/push", alice, rec(`a$b`), 400, "invalid_request"},
		{"empty id", "POST", "/api/sync/push", alice, rec(``), 400, "invalid_request"},
		{"id over 64 chars", "POST", "/api/sync/push", alice, rec(long), 400, "invalid_request"},
		{"same id twice", "POST", "/api/sync/push", alice, push(`{"projects":{"created":[{"id":"d1"}],"updated":[{"id":"d1"}]}}`), 400, "invalid_request"},
		{"lastPulledAt string", "POST", "/api/sync/push", alice, []byte(`{"lastPulledAt":"5","changes":{}}`), 400, "invalid_request"},
		{"lastPulledAt fraction", "POST", "/api/sync/push", alice, []byte(`{"lastPulledAt":1.5,"changes":{}}`), 400, "invalid_request"},
		{"lastPulledAt negative", "POST", "/api/sync/push", alice, []byte(`{"lastPulledAt":-1,"changes":{}}`), 400, "invalid_request"},
		{"lastPulledAt null on push", "POST", "/api/sync/push", alice, []byte(`{"lastPulledAt":null,"changes":{}}`), 400, "invalid_request"},
		{"lastPulledAt too large", "POST", "/api/sync/push", alice, []byte(`{"lastPulledAt":9007199254740993,"changes":{}}`), 400, "invalid_request"},
		{"pull lastPulledAt negative", "POST", "/api/sync/pull", alice, []byte(`{"lastPulledAt":-5}`), 400, "invalid_request"},
		{"pull schemaVersion string", "POST", "/api/sync/pull", alice, []byte(`{"lastPulledAt":null,"schemaVersion":"3"}`), 400, "invalid_request"},
		{"pull migration is a string", "POST", "/api/sync/pull", alice, []byte(`{"lastPulledAt":5,"migration":"x"}`), 400, "invalid_request"},
		{"pull migration bad from", "POST", "/api/sync/pull", alice, []byte(`{"lastPulledAt":5,"migration":{"from":0,"tables":[],"columns":[]}}`), 400, "invalid_request"},
		{"GET /sync bad last_pulled_at", "GET", "/sync?last_pulled_at=abc", alice, nil, 400, "invalid_request"},
		{"GET /sync last_pulled_at -0", "GET", "/sync?last_pulled_at=-0", alice, nil, 400, "invalid_request"},
		{"GET /sync last_pulled_at +5", "GET", "/sync?last_pulled_at=%2B5", alice, nil, 400, "invalid_request"},
		{"POST /sync last_pulled_at with a space", "POST", "/sync?last_pulled_at=%205", alice, []byte(`{}`), 400, "invalid_request"},
		{"GET /sync bad migration", "GET", "/sync?last_pulled_at=5&migration=%7Bx", alice, nil, 400, "invalid_request"},
		{"POST /sync without last_pulled_at", "POST", "/sync", alice, []byte(`{}`), 400, "invalid_request"},
		{"bad gzip", "POST", "/api/sync/push", map[string]string{"Authorization": alice["Authorization"], "Content-Encoding": "gzip"}, []byte("not gzip"), 400, "invalid_request"},
		{"unknown encoding", "POST", "/api/sync/push", map[string]string{"Authorization": alice["Authorization"], "Content-Encoding": "br"}, push(`{}`), 400, "invalid_request"},
		{"bad device header", "POST", "/api/sync/push", map[string]string{"Authorization": alice["Authorization"], melonsync.HeaderDevice: "a b/c"}, push(`{}`), 400, "invalid_request"},
		{"huge body", "POST", "/api/sync/push", alice, big, 413, "payload_too_large"},
		{"huge gzip body", "POST", "/api/sync/push", map[string]string{"Authorization": alice["Authorization"], "Content-Encoding": "gzip"}, gz(big), 413, "payload_too_large"},
		{"missing token", "POST", "/api/sync/push", nil, rec("x1"), 401, "unauthorized"},
		{"not bearer", "POST", "/api/sync/push", map[string]string{"Authorization": "Basic YTpi"}, rec("x1"), 401, "unauthorized"},
		{"garbage token", "POST", "/api/sync/push", withAuth("abc.def.ghi"), rec("x1"), 401, "unauthorized"},
		{"expired token", "POST", "/api/sync/push", withAuth(expired), rec("x1"), 401, "unauthorized"},
		{"not yet valid token", "POST", "/api/sync/push", withAuth(notBefore), rec("x1"), 401, "unauthorized"},
		{"forged token", "POST", "/api/sync/push", withAuth(forged), rec("x1"), 401, "unauthorized"},
		{"alg none", "POST", "/api/sync/push", withAuth(noneTok), rec("x1"), 401, "unauthorized"},
		{"alg HS384", "POST", "/api/sync/push", withAuth(hs384), rec("x1"), 401, "unauthorized"},
		{"token without sub", "POST", "/api/sync/push", withAuth(nosub), rec("x1"), 401, "unauthorized"},
		{"pull without token", "POST", "/api/sync/pull", nil, []byte(`{"lastPulledAt":null}`), 401, "unauthorized"},
		{"GET /sync without token", "GET", "/sync", nil, nil, 401, "unauthorized"},
		{"wrong method", "GET", "/api/sync/push", alice, nil, 405, "method_not_allowed"},
		{"wrong method on /sync", "DELETE", "/sync", alice, nil, 405, "method_not_allowed"},
		{"wrong method on pull", "PUT", "/api/sync/pull", alice, nil, 405, "method_not_allowed"},
		{"GET pull without token", "GET", "/api/sync/pull?since=0", nil, nil, 401, "unauthorized"},
		{"GET pull since not a number", "GET", "/api/sync/pull?since=yesterday", alice, nil, 400, "invalid_request"},
		{"GET pull negative since", "GET", "/api/sync/pull?since=-1", alice, nil, 400, "invalid_request"},
		{"GET pull since given twice", "GET", "/api/sync/pull?since=1&last_pulled_at=2", alice, nil, 400, "invalid_request"},
		{"GET pull bad schema version", "GET", "/api/sync/pull?since=1&schemaVersion=0", alice, nil, 400, "invalid_request"},
		{"GET pull bad migration", "GET", "/api/sync/pull?migration=%7B", alice, nil, 400, "invalid_request"},
		{"POST pull body and URL disagree", "POST", "/api/sync/pull?since=5", alice, []byte(`{"lastPulledAt":6}`), 400, "invalid_request"},
		{"unknown path", "POST", "/api/sync/nothing", alice, nil, 404, "not_found"},
		// Another user's records: refused per record, nothing of them applied.
		{"bob updates alice's record", "POST", "/api/sync/push", bob, push(`{"projects":{"updated":[{"id":"alice1","name":"bob"}]}}`), 200, ""},
		{"bob deletes alice's record", "POST", "/api/sync/push", bob, push(`{"projects":{"deleted":["alice1"]}}`), 200, ""},
		{"bob creates alice's id", "POST", "/api/sync/push", bob, push(`{"projects":{"created":[{"id":"alice1","name":"bob"}]}}`), 200, ""},
	}
	before := e.snapshot()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.hdr, c.body)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if c.code != "" {
				if got := errorCode(t, r.body); got != c.code {
					t.Errorf("code %q, want %q", got, c.code)
				}
				if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("content type %q", ct)
				}
			} else {
				var pr melonsync.PushResponse
				json.Unmarshal(r.body, &pr)
				if got := pr.RejectedIDs["projects"]; len(got) != 1 || got[0] != "alice1" {
					t.Errorf("want alice1 rejected, got %s", r.body)
				}
				if strings.Contains(string(r.body), "secret") {
					t.Errorf("answer leaks alice's content: %s", r.body)
				}
			}
			if after := e.snapshot(); after != before {
				t.Errorf("something was written:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
}

func jwtPart(s string) string {
	return strings.TrimRight(base64URL([]byte(s)), "=")
}

// TestProtocol runs the happy paths through HTTP: both endpoint forms, gzip both
// ways, healthz.
func TestProtocol(t *testing.T) {
	e := newEnv(t, 0)
	alice := e.as("alice")

	r := e.do("GET", "/healthz", nil, nil)
	if r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
	// First pull through the docs' GET form, with undefined values as its example sends.
	r = e.do("GET", "/sync?last_pulled_at=undefined&schema_version=3&migration=undefined", alice, nil)
	if r.status != 200 {
		t.Fatalf("GET /sync: %d %s", r.status, r.body)
	}
	var pull melonsync.PullResponse
	if err := json.Unmarshal(r.body, &pull); err != nil || pull.Timestamp <= 0 {
		t.Fatalf("GET /sync answer %s", r.body)
	}
	// Push through POST /sync with a gzipped body.
	hdr := map[string]string{"Authorization": alice["Authorization"], melonsync.HeaderDevice: "d1", "Content-Encoding": "gzip"}
	body := []byte(`{"projects":{"created":[{"id":"p1","name":"Home","is_favorite":true,"position":1}],"updated":[],"deleted":[]}}`)
	r = e.do("POST", fmt.Sprintf("/sync?last_pulled_at=%d", pull.Timestamp), hdr, gz(body))
	if r.status != 200 {
		t.Fatalf("POST /sync: %d %s", r.status, r.body)
	}
	var push melonsync.PushResponse
	json.Unmarshal(r.body, &push)
	if !push.OK || push.Timestamp <= pull.Timestamp {
		t.Fatalf("push answer %s", r.body)
	}
	// Pull it back through /api/sync/pull from another device, asking for gzip: the
	// answer is small (< 512 bytes), so it comes plain.
	r = e.do("POST", "/api/sync/pull", map[string]string{"Authorization": alice["Authorization"], melonsync.HeaderDevice: "d2", "Accept-Encoding": "gzip"},
		[]byte(fmt.Sprintf(`{"lastPulledAt":%d,"schemaVersion":3,"migration":null}`, pull.Timestamp)))
	if r.status != 200 || r.header.Get("Content-Encoding") != "" {
		t.Fatalf("small pull: %d %q", r.status, r.header.Get("Content-Encoding"))
	}
	var pull2 melonsync.PullResponse
	json.Unmarshal(r.body, &pull2)
	if got := pull2.Changes["projects"].Created; len(got) != 1 || got[0]["name"] != "Home" {
		t.Fatalf("pulled %s", r.body)
	}
	if pull2.Timestamp < push.Timestamp {
		t.Errorf("pull timestamp %d < push timestamp %d", pull2.Timestamp, push.Timestamp)
	}
	// A larger answer is gzipped.
	var many []string
	for i := 0; i < 50; i++ {
		many = append(many, fmt.Sprintf(`{"id":"t%d","name":"task number %d"}`, i, i))
	}
	r = e.do("POST", "/api/sync/push", alice, []byte(fmt.Sprintf(`{"lastPulledAt":%d,"changes":{"tasks":{"created":[%s]}}}`, pull2.Timestamp, strings.Join(many, ","))))
	if r.status != 200 {
		t.Fatalf("push tasks: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/api/sync/pull", map[string]string{"Authorization": alice["Authorization"], "Accept-Encoding": "gzip"}, []byte(`{"lastPulledAt":null}`))
	if r.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("large pull not gzipped")
	}
	zr, err := gzip.NewReader(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	var pull3 melonsync.PullResponse
	if err := json.Unmarshal(plain, &pull3); err != nil || len(pull3.Changes["tasks"].Created) != 50 {
		t.Fatalf("gzipped pull: %v", err)
	}
	// A 409 conflict carries the ids.
	r = e.do("POST", "/api/sync/push", map[string]string{"Authorization": alice["Authorization"], melonsync.HeaderDevice: "other"},
		[]byte(fmt.Sprintf(`{"lastPulledAt":%d,"changes":{"projects":{"updated":[{"id":"p1","name":"x"}]}}}`, pull.Timestamp)))
	if r.status != 409 || !strings.Contains(string(r.body), `"conflicts":{"projects":["p1"]}`) {
		t.Fatalf("conflict: %d %s", r.status, r.body)
	}
}

// TestPullQueryForms: the sync guide's incremental-sync example fetches
// /api/sync/pull?since=<lastPulledAt> (a GET, "null" on the first sync); the URL may
// also complete a POST body that leaves lastPulledAt out.
func TestPullQueryForms(t *testing.T) {
	e := newEnv(t, 0)
	alice := e.as("alice")
	first := e.do("POST", "/api/sync/push", alice, []byte(`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"p1","name":"old"}]}}}`))
	var pushed melonsync.PushResponse
	if first.status != 200 || json.Unmarshal(first.body, &pushed) != nil {
		t.Fatalf("push: %d %s", first.status, first.body)
	}
	if r := e.do("POST", "/api/sync/push", alice, []byte(fmt.Sprintf(`{"lastPulledAt":%d,"changes":{"projects":{"created":[{"id":"p2","name":"new"}]}}}`, pushed.Timestamp))); r.status != 200 {
		t.Fatalf("push: %d %s", r.status, r.body)
	}
	ids := func(r reply) []string {
		t.Helper()
		var p melonsync.PullResponse
		if r.status != 200 || json.Unmarshal(r.body, &p) != nil {
			t.Fatalf("pull: %d %s", r.status, r.body)
		}
		var out []string
		for _, rec := range append(p.Changes["projects"].Created, p.Changes["projects"].Updated...) {
			out = append(out, rec["id"].(string))
		}
		return out
	}
	since := fmt.Sprint(pushed.Timestamp)
	for _, c := range []struct {
		method, path, body string
		want               string
	}{
		{"GET", "/api/sync/pull?since=null", "", "p1,p2"},
		{"GET", "/api/sync/pull?since=undefined", "", "p1,p2"},
		{"GET", "/api/sync/pull", "", "p1,p2"},
		{"GET", "/api/sync/pull?since=" + since, "", "p2"},
		{"GET", "/api/sync/pull?lastPulledAt=" + since + "&schemaVersion=3", "", "p2"},
		{"GET", "/api/sync/pull?last_pulled_at=" + since + "&since=" + since, "", "p2"},
		{"POST", "/api/sync/pull?since=" + since, `{}`, "p2"},
		{"POST", "/api/sync/pull?since=" + since, `{"lastPulledAt":null,"userId":"alice"}`, "p2"},
		{"POST", "/api/sync/pull?since=" + since, `{"lastPulledAt":` + since + `}`, "p2"},
		{"GET", "/sync?since=" + since, "", "p2"},
	} {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		if got := strings.Join(ids(e.do(c.method, c.path, alice, body)), ","); got != c.want {
			t.Errorf("%s %s %s: got %q, want %q", c.method, c.path, c.body, got, c.want)
		}
	}
}

// TestInternalErrorsDoNotLeak: a store failure answers 500 internal (or 503) with
// no SQL, paths or stack.
func TestInternalErrorsDoNotLeak(t *testing.T) {
	e := newEnv(t, 0)
	e.store.Close() // every query now fails
	r := e.do("POST", "/api/sync/pull", e.as("alice"), []byte(`{"lastPulledAt":null}`))
	if r.status != 500 && r.status != 503 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	for _, bad := range []string{"sql", "SELECT", "/", "goroutine", ".db"} {
		if strings.Contains(strings.ToLower(string(r.body)), strings.ToLower(bad)) {
			t.Errorf("answer leaks %q: %s", bad, r.body)
		}
	}
	r = e.do("GET", "/healthz", nil, nil)
	if r.status != 503 {
		t.Errorf("healthz with a closed store: %d", r.status)
	}
}

func base64URL(b []byte) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var out strings.Builder
	for i := 0; i < len(b); i += 3 {
		var n uint32
		k := min(3, len(b)-i)
		for j := 0; j < 3; j++ {
			n <<= 8
			if j < k {
				n |= uint32(b[i+j])
			}
		}
		for j := 0; j < k+1; j++ {
			out.WriteByte(enc[(n>>(18-6*j))&63])
		}
	}
	return out.String()
}

// doClient bounds every request of env.do: an event stream accepted by mistake fails
// the test instead of hanging it.
var doClient = &http.Client{Timeout: time.Minute}
