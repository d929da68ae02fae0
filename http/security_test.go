package http_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/melonsync/melonsync"
)

// endpoints are every route that needs a token, with a request that would succeed
// (and, for pushes, write) with a good one.
var endpoints = []struct {
	method, path, body string
}{
	{"POST", "/api/sync/pull", `{"lastPulledAt":null}`},
	{"GET", "/api/sync/pull?since=null", ``},
	{"POST", "/api/sync/push", `{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"intruder","name":"x"}]}}}`},
	{"GET", "/sync?last_pulled_at=null", ``},
	{"POST", "/sync?last_pulled_at=0", `{"projects":{"created":[{"id":"intruder","name":"x"}]}}`},
	{"GET", "/api/sync/events", ``},
}

// TestEveryEndpointRefusesBadTokens: each route, each kind of bad credentials → 401
// unauthorized with the error shape and a WWW-Authenticate header; nothing written.
func TestEveryEndpointRefusesBadTokens(t *testing.T) {
	e := newEnv(t, 0)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Now().Add(time.Hour).Unix()
	bearer := func(tok string) string { return "Bearer " + tok }
	creds := []struct{ name, header string }{
		{"none", ""},
		{"empty bearer", "Bearer "},
		{"basic auth", "Basic YWxpY2U6c2VjcmV0"},
		{"garbage", bearer("not.a.jwt")},
		{"two parts", bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9")},
		{"expired", bearer(signed(jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix()}))},
		{"other secret", bearer(signed(jwt.SigningMethodHS256, []byte("some-other-secret-0123456789"), jwt.MapClaims{"sub": "alice", "exp": hour}))},
		{"alg none", bearer("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + jwtPart(`{"sub":"alice","exp":`+fmt.Sprint(hour)+`}`) + ".")},
		{"alg None with a signature", bearer("eyJhbGciOiJOb25lIiwidHlwIjoiSldUIn0." + jwtPart(`{"sub":"alice"}`) + ".c2ln")},
		{"HS512", bearer(signed(jwt.SigningMethodHS512, secret, jwt.MapClaims{"sub": "alice", "exp": hour}))},
		{"RS256", bearer(signed(jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"sub": "alice", "exp": hour}))},
		{"no sub", bearer(signed(jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": hour}))},
		{"empty sub", bearer(signed(jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "", "exp": hour}))},
		{"sub not a string", bearer(signed(jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": 42, "exp": hour}))},
		{"tampered payload", bearer(tamper(signed(jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "bob", "exp": hour}), `{"sub":"alice","exp":`+fmt.Sprint(hour)+`}`))},
	}
	before := e.snapshot()
	for _, ep := range endpoints {
		for _, c := range creds {
			t.Run(ep.method+" "+ep.path+"/"+c.name, func(t *testing.T) {
				hdr := map[string]string{}
				if c.header != "" {
					hdr["Authorization"] = c.header
				}
				var body []byte
				if ep.body != "" {
					body = []byte(ep.body)
				}
				r := e.do(ep.method, ep.path, hdr, body)
				if r.status != 401 {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				if code := errorCode(t, r.body); code != melonsync.EUnauthorized {
					t.Errorf("code %q", code)
				}
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
				}
			})
		}
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("a refused request wrote:\nbefore %s\nafter  %s", before, after)
	}
	// The same requests with a good token succeed: the refusals were the tokens'.
	for _, ep := range endpoints[:5] {
		var body []byte
		if ep.body != "" {
			body = []byte(ep.body)
		}
		if r := e.do(ep.method, ep.path, e.as("alice"), body); r.status != 200 {
			t.Errorf("%s %s with a good token: %d %s", ep.method, ep.path, r.status, r.body)
		}
	}
}

// tamper replaces a JWT's payload, keeping its header and signature.
func tamper(tok, payload string) string {
	parts := strings.Split(tok, ".")
	parts[1] = jwtPart(payload)
	return strings.Join(parts, ".")
}

// TestUsersAreIsolated: bob tries to read, update, delete and "create" (same id)
// alice's records through every route and every kind of pull. Nothing of alice's
// reaches him — no id, no value, no event — and none of his attempts changes her
// data, while his own changes in the same pushes are applied.
func TestUsersAreIsolated(t *testing.T) {
	e := newEnv(t, 0)
	alice, bob := e.as("alice"), e.as("bob")
	secretWords := []string{"ALICE-PROJECT-MARK", "ALICE-TASK-MARK", "ALICE-COMMENT-MARK", "ALICE-DESC-MARK"}
	aliceIDs := []string{"a-proj", "a-task", "a-comm", "a-gone"}
	r := e.do("POST", "/api/sync/push", alice, []byte(`{"lastPulledAt":0,"changes":{
		"projects":{"created":[{"id":"a-proj","name":"ALICE-PROJECT-MARK","position":7}]},
		"tasks":{"created":[{"id":"a-task","name":"ALICE-TASK-MARK","project_id":"a-proj","description":"ALICE-DESC-MARK","position":3},{"id":"a-gone","name":"x"}]},
		"comments":{"created":[{"id":"a-comm","body":"ALICE-COMMENT-MARK","task_id":"a-task"}]}}}`))
	if r.status != 200 {
		t.Fatalf("alice's push: %d %s", r.status, r.body)
	}
	var first melonsync.PushResponse
	json.Unmarshal(r.body, &first)
	if r := e.do("POST", "/api/sync/push", alice, []byte(fmt.Sprintf(`{"lastPulledAt":%d,"changes":{"tasks":{"deleted":["a-gone"]}}}`, first.Timestamp))); r.status != 200 {
		t.Fatalf("alice's delete: %d %s", r.status, r.body)
	}
	aliceView := func() string {
		r := e.do("POST", "/api/sync/pull", alice, []byte(`{"lastPulledAt":null}`))
		if r.status != 200 {
			t.Fatalf("alice's pull: %d", r.status)
		}
		var pr melonsync.PullResponse
		if err := json.Unmarshal(r.body, &pr); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(pr.Changes)
		return string(b)
	}
	aliceBefore := aliceView()
	for _, w := range secretWords {
		if !strings.Contains(aliceBefore, w) {
			t.Fatalf("alice cannot see her own %s: %s", w, aliceBefore)
		}
	}

	// Bob follows the event stream the whole time.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/sync/events", nil)
	req.Header.Set("Authorization", bob["Authorization"])
	stream, err := http.DefaultClient.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("bob's event stream: %v", err)
	}
	defer stream.Body.Close()
	events := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			events <- sc.Text()
		}
		close(events)
	}()

	leaks := func(what string, body []byte, allowIDs bool) {
		t.Helper()
		for _, w := range secretWords {
			if bytes.Contains(body, []byte(w)) {
				t.Errorf("%s: bob received alice's %s: %s", what, w, body)
			}
		}
		if !allowIDs {
			for _, id := range aliceIDs {
				if bytes.Contains(body, []byte(`"`+id+`"`)) {
					t.Errorf("%s: bob received alice's id %s: %s", what, id, body)
				}
			}
		}
	}

	// Reads: every form of pull, every parameter that widens the answer.
	mig := `{"from":1,"tables":["projects","tasks","comments"],"columns":[{"table":"tasks","columns":["name","description","position","project_id"]},{"table":"projects","columns":["name","position"]}]}`
	for _, p := range []struct{ method, path, body string }{
		{"POST", "/api/sync/pull", `{"lastPulledAt":null}`},
		{"POST", "/api/sync/pull", `{"lastPulledAt":1}`},
		{"POST", "/api/sync/pull", `{"lastPulledAt":1,"schemaVersion":1,"migration":` + mig + `}`},
		{"POST", "/api/sync/pull", `{"lastPulledAt":99999999999999}`}, // never handed out: replacement
		{"POST", "/api/sync/pull", `{"lastPulledAt":null,"userId":"alice","user":"alice","owner":"alice"}`},
		{"GET", "/api/sync/pull?since=1&userId=alice", ``},
		{"GET", "/sync?last_pulled_at=1&schema_version=1&migration=" + urlEscape(mig), ``},
	} {
		var body []byte
		if p.body != "" {
			body = []byte(p.body)
		}
		r := e.do(p.method, p.path, bob, body)
		if r.status != 200 {
			t.Fatalf("bob %s %s: %d %s", p.method, p.path, r.status, r.body)
		}
		leaks(p.method+" "+p.path+" "+p.body, r.body, false)
	}

	// Writes: update, delete and create over each of alice's ids (the deleted one
	// too), through both push forms, mixed with a record of bob's own.
	n := 0
	for _, form := range []string{"/api/sync/push", "/sync"} {
		for _, op := range []string{"updated", "created", "deleted"} {
			for i, id := range aliceIDs {
				table := []string{"projects", "tasks", "comments", "tasks"}[i]
				n++
				own := fmt.Sprintf("bob-own-%d", n)
				var changes string
				if op == "deleted" {
					changes = fmt.Sprintf(`{"%s":{"deleted":["%s"]},"projects":{"created":[{"id":"%s","name":"mine"}]}}`, table, id, own)
					if table == "projects" {
						changes = fmt.Sprintf(`{"projects":{"created":[{"id":"%s","name":"mine"}],"deleted":["%s"]}}`, own, id)
					}
				} else {
					col := map[string]string{"projects": "name", "tasks": "name", "comments": "body"}[table]
					recs := fmt.Sprintf(`{"%s":{"%s":[{"id":"%s","%s":"BOB WAS HERE"}]}`, table, op, id, col)
					if table == "projects" {
						changes = fmt.Sprintf(`{"projects":{"%s":[{"id":"%s","name":"BOB WAS HERE"}],"created":[{"id":"%s","name":"mine"}]}}`, op, id, own)
						if op == "created" {
							changes = fmt.Sprintf(`{"projects":{"created":[{"id":"%s","name":"BOB WAS HERE"},{"id":"%s","name":"mine"}]}}`, id, own)
						}
					} else {
						changes = strings.TrimSuffix(recs, "}") + fmt.Sprintf(`},"projects":{"created":[{"id":"%s","name":"mine"}]}}`, own)
					}
				}
				var r reply
				if form == "/sync" {
					r = e.do("POST", "/sync?last_pulled_at=0", bob, []byte(changes))
				} else {
					r = e.do("POST", form, bob, []byte(`{"lastPulledAt":0,"changes":`+changes+`}`))
				}
				what := fmt.Sprintf("%s %s %s#%s", form, op, table, id)
				if r.status != 200 {
					t.Fatalf("%s: %d %s (changes %s)", what, r.status, r.body, changes)
				}
				leaks(what, r.body, true)
				var pr melonsync.PushResponse
				json.Unmarshal(r.body, &pr)
				if got := pr.RejectedIDs[table]; len(got) != 1 || got[0] != id {
					t.Errorf("%s: rejected %v, want [%s]", what, pr.RejectedIDs, id)
				}
				// Bob's own record in the same push was applied.
				mine := e.do("POST", "/api/sync/pull", bob, []byte(`{"lastPulledAt":null}`))
				if !strings.Contains(string(mine.body), `"`+own+`"`) {
					t.Errorf("%s: bob's own record %s was not applied", what, own)
				}
				leaks(what+" then pull", mine.body, false)
			}
		}
	}
	if after := aliceView(); after != aliceBefore {
		t.Fatalf("bob changed alice's data:\nbefore %s\nafter  %s", aliceBefore, after)
	}

	// Alice pushes once more: bob's stream must not hear of it. Then bob pushes: his
	// stream hears of that one.
	e.do("POST", "/api/sync/push", alice, []byte(`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"a-late","name":"ALICE-PROJECT-MARK"}]}}}`))
	r = e.do("POST", "/api/sync/push", bob, []byte(`{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"bob-last","name":"x"}]}}}`))
	var last melonsync.PushResponse
	json.Unmarshal(r.body, &last)
	var seen []string
	deadline := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case line, ok := <-events:
			if !ok {
				t.Fatal("bob's stream ended")
			}
			seen = append(seen, line)
			if strings.Contains(line, fmt.Sprintf(`"timestamp":%d`, last.Timestamp)) {
				done = true
			}
		case <-deadline:
			t.Fatalf("bob's own push never reached his stream; got %q", seen)
		}
	}
	leaks("event stream", []byte(strings.Join(seen, "\n")), false)
	var changesEvents int
	for _, l := range seen {
		if l == "event: changes" {
			changesEvents++
		}
	}
	// One event per push of bob's that wrote (bob's own records), none for alice's.
	if want := n + 1; changesEvents != want {
		t.Errorf("bob's stream had %d change events, want %d (one per push of his): %q", changesEvents, want, seen)
	}
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func urlEscape(s string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", "+", "%2B", " ", "%20", "#", "%23", "{", "%7B", "}", "%7D", `"`, "%22", "[", "%5B", "]", "%5D", ":", "%3A", ",", "%2C")
	return r.Replace(s)
}

// TestSQLLookingNames: names and ids that look like SQL never reach a statement:
// tables and ids are refused by the whitelist (400, nothing written), unknown columns
// are dropped, and migration names outside the schema are ignored.
func TestSQLLookingNames(t *testing.T) {
	e := newEnv(t, 0)
	alice := e.as("alice")
	evil := []string{
		`tasks; DROP TABLE tasks; --`, `tasks"`, `"tasks"`, `tasks'--`, `t') OR ('1'='1`, `__melon_meta`,
		`sqlite_master`, `pg_catalog.pg_user`, `Tasks`, `tâches`, `tasks\u0000`, strings.Repeat("t", 200),
	}
	before := e.snapshot()
	for _, name := range evil {
		q, _ := json.Marshal(name)
		bodies := []string{`{"lastPulledAt":0,"changes":{` + string(q) + `:{"created":[{"id":"x1","name":"x"}]}}}`}
		if !idRE.MatchString(name) {
			bodies = append(bodies,
				`{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":`+string(q)+`,"name":"x"}]}}}`,
				`{"lastPulledAt":0,"changes":{"tasks":{"deleted":[`+string(q)+`]}}}`)
		}
		for _, body := range bodies {
			r := e.do("POST", "/api/sync/push", alice, []byte(body))
			if r.status != 400 || errorCode(t, r.body) != melonsync.EInvalid {
				t.Errorf("%s: %d %s", body, r.status, r.body)
			}
		}
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("a refused push wrote:\nbefore %s\nafter  %s", before, after)
	}
	// Ids that pass the whitelist but name tables are only data.
	for _, id := range []string{"__melon_meta", "sqlite_master", "pg_catalog.pg_user", "Tasks", "tasks"} {
		r := e.do("POST", "/api/sync/push", alice, []byte(`{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":"`+id+`","name":"id `+id+`"}]}}}`))
		if r.status != 200 {
			t.Errorf("id %q: %d %s", id, r.status, r.body)
		}
	}
	r := e.do("POST", "/api/sync/pull", alice, []byte(`{"lastPulledAt":null}`))
	var pulled melonsync.PullResponse
	json.Unmarshal(r.body, &pulled)
	if got := len(pulled.Changes["tasks"].Created); got != 5 {
		t.Fatalf("%d tasks after pushing 5 SQL-looking ids: %s", got, r.body)
	}
	// Columns: dropped; the record is stored with its real columns only.
	cols := map[string]any{"id": "ok1", "name": "kept"}
	for _, name := range evil {
		if !strings.HasPrefix(name, "__") {
			cols[name] = "evil value"
		}
	}
	cols[`name"; DROP TABLE tasks; --`] = "evil value"
	rec, _ := json.Marshal(cols)
	r = e.do("POST", "/api/sync/push", alice, []byte(`{"lastPulledAt":0,"changes":{"tasks":{"created":[`+string(rec)+`]}}}`))
	if r.status != 200 {
		t.Fatalf("push with odd columns: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/api/sync/pull", alice, []byte(`{"lastPulledAt":null}`))
	if !strings.Contains(string(r.body), `"name":"kept"`) || strings.Contains(string(r.body), "evil value") {
		t.Fatalf("after the push: %s", r.body)
	}
	// Our own columns cannot be set from outside: a push naming one is refused.
	for _, col := range []string{"__owner", "__version", "__deleted", "__created_device", "__melon_meta", "_status", "_changed"} {
		body := `{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":"own1","name":"x","` + col + `":"bob"}]}}}`
		r := e.do("POST", "/api/sync/push", alice, []byte(body))
		if strings.HasPrefix(col, "__") {
			if r.status != 400 {
				t.Errorf("column %s: %d %s", col, r.status, r.body)
			}
			continue
		}
		// _status and _changed are WatermelonDB's and ignored (SPEC §3 push 6).
		if r.status != 200 {
			t.Errorf("column %s: %d %s", col, r.status, r.body)
		}
	}
	if r := e.do("POST", "/api/sync/pull", e.as("bob"), []byte(`{"lastPulledAt":null}`)); strings.Contains(string(r.body), "own1") {
		t.Fatalf("a pushed owner column gave bob alice's record: %s", r.body)
	}
	// Migration names outside the schema are ignored, not errors and not SQL.
	for _, name := range evil {
		q, _ := json.Marshal(name)
		body := `{"lastPulledAt":1,"schemaVersion":3,"migration":{"from":2,"tables":[` + string(q) + `],"columns":[{"table":` + string(q) + `,"columns":[` + string(q) + `]},{"table":"tasks","columns":[` + string(q) + `]}]}}`
		if r := e.do("POST", "/api/sync/pull", alice, []byte(body)); r.status != 200 {
			t.Errorf("migration naming %q: %d %s", name, r.status, r.body)
		}
	}
	// The store still works.
	if r := e.do("POST", "/api/sync/pull", alice, []byte(`{"lastPulledAt":null}`)); r.status != 200 || !strings.Contains(string(r.body), `"ok1"`) {
		t.Fatalf("store after the attempts: %d %s", r.status, r.body)
	}
}

// TestBodyLimits: the limit applies to the body as sent and as gunzipped; a gzip
// bomb is refused quickly and without inflating it in memory; the limit itself is
// accepted.
func TestBodyLimits(t *testing.T) {
	const limit = 64 << 10
	e := newEnv(t, limit)
	alice := e.as("alice")
	gzHdr := map[string]string{"Authorization": alice["Authorization"], "Content-Encoding": "gzip"}
	before := e.snapshot()

	// A push of exactly the limit is read; one byte more is refused.
	exact := func(n int) []byte {
		head := `{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"fits","name":"`
		tail := `"}]}}}`
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	if r := e.do("POST", "/api/sync/push", alice, exact(limit+1)); r.status != 413 || errorCode(t, r.body) != melonsync.ETooLarge {
		t.Errorf("limit+1: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/sync/push", gzHdr, gz(exact(limit+1))); r.status != 413 {
		t.Errorf("limit+1 gzipped: %d %s", r.status, r.body)
	}
	if after := e.snapshot(); after != before {
		t.Fatal("a refused body wrote")
	}
	if r := e.do("POST", "/api/sync/push", alice, exact(limit)); r.status != 200 {
		t.Errorf("exactly the limit: %d %s", r.status, r.body)
	}

	// A gzip bomb: 64 MiB of zeros in about 64 KiB.
	var bomb bytes.Buffer
	zw, _ := gzipWriter(&bomb)
	zeros := make([]byte, 1<<20)
	for i := 0; i < 64; i++ {
		zw.Write(zeros)
	}
	zw.Close()
	if bomb.Len() > 4*limit {
		t.Fatalf("bomb of %d bytes is over 4×limit; it would be refused before gunzip", bomb.Len())
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start := time.Now()
	r := e.do("POST", "/api/sync/push", gzHdr, bomb.Bytes())
	took := time.Since(start)
	runtime.ReadMemStats(&m1)
	if r.status != 413 {
		t.Fatalf("gzip bomb: %d %s", r.status, r.body)
	}
	if took > 5*time.Second {
		t.Errorf("gzip bomb took %s to refuse", took)
	}
	if grew := m1.TotalAlloc - m0.TotalAlloc; grew > 32<<20 {
		t.Errorf("refusing a gzip bomb allocated %d MiB", grew>>20)
	}
	// Cut-short gzip and a body declared far larger than the limit.
	full := gz(exact(1000))
	if r := e.do("POST", "/api/sync/push", gzHdr, full[:len(full)-8]); r.status != 400 {
		t.Errorf("truncated gzip: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/sync/pull", alice, bytes.Repeat([]byte(" "), limit+10)); r.status != 413 {
		t.Errorf("pull body over the limit: %d", r.status)
	}
}

func gzipWriter(w *bytes.Buffer) (*gzip.Writer, error) {
	return gzip.NewWriterLevel(w, gzip.BestCompression)
}
