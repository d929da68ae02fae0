package http_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

const hookSecret = "hook-secret-for-tests"

// hookEnv is a server whose write hook is a real HTTP server answering with answer.
type hookEnv struct {
	*env
	mu     sync.Mutex
	answer func(w http.ResponseWriter, body []byte)
	// bodies and sigs hold what the hook received.
	bodies [][]byte
	sigErr []error
}

func newHookEnv(t *testing.T, timeout time.Duration) *hookEnv {
	t.Helper()
	he := &hookEnv{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		he.mu.Lock()
		he.bodies = append(he.bodies, body)
		he.sigErr = append(he.sigErr, checkSignature(r, body))
		answer := he.answer
		he.mu.Unlock()
		answer(w, body)
	}))
	t.Cleanup(hook.Close)
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	h := storetest.NewPolicyHarness(t, store)
	hc, err := mhttp.NewHookClient(hook.URL, []byte(hookSecret), timeout)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Svc.SetWriteHook(hc, nil); err != nil {
		t.Fatal(err)
	}
	srv := testutil.NewServer(t, h.Svc, mhttp.Options{})
	he.env = &env{t: t, srv: srv.Server, auth: srv.Auth, store: store}
	return he
}

// checkSignature verifies the documented format independently of the package:
// X-Melon-Signature = "sha256=" + hex(HMAC-SHA256(secret, X-Melon-Timestamp + "." + body)).
func checkSignature(r *http.Request, body []byte) error {
	ts := r.Header.Get("X-Melon-Timestamp")
	m := hmac.New(sha256.New, []byte(hookSecret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	if got := r.Header.Get("X-Melon-Signature"); got != want {
		return &sigError{"signature " + got + ", want " + want}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		return &sigError{"timestamp " + ts}
	}
	return mhttp.VerifyHookSignature([]byte(hookSecret), ts, r.Header.Get("X-Melon-Signature"), body, time.Now())
}

type sigError struct{ s string }

func (e *sigError) Error() string { return e.s }

func TestWriteHook(t *testing.T) {
	he := newHookEnv(t, 300*time.Millisecond)
	alice := he.as("alice")
	alice["X-Melon-Device"] = "phone"
	push := []byte(`{"lastPulledAt":0,"changes":{"t_client":{"created":[{"id":"ok1","title":"fine"},{"id":"long1","title":"far too long a title"}],"updated":[],"deleted":[]}}}`)

	// A verdict: one record refused with a reason, one value rewritten.
	he.answer = func(w http.ResponseWriter, body []byte) {
		w.Write([]byte(`{"rejected":{"t_client":["long1"]},"reasons":{"long1":"title too long"},"changes":{"t_client":{"created":[{"id":"ok1","title":"Fine"}]}}}`))
	}
	r := he.do("POST", "/api/sync/push", alice, push)
	if r.status != 200 {
		t.Fatalf("push: %d %s", r.status, r.body)
	}
	var ans struct {
		RejectedIDs map[string][]string `json:"experimentalRejectedIds"`
		Reasons     map[string]string   `json:"rejectedReasons"`
	}
	json.Unmarshal(r.body, &ans)
	if len(ans.RejectedIDs["t_client"]) != 1 || ans.RejectedIDs["t_client"][0] != "long1" || ans.Reasons["long1"] != "title too long" {
		t.Errorf("push answer %s: want long1 rejected with its reason", r.body)
	}
	var req struct {
		User, Device string
		LastPulledAt int64
		Changes      map[string]map[string][]map[string]any
	}
	he.mu.Lock()
	if err := he.sigErr[0]; err != nil {
		t.Errorf("hook signature: %v", err)
	}
	json.Unmarshal(he.bodies[0], &req)
	he.mu.Unlock()
	if req.User != "alice" || req.Device != "phone" || len(req.Changes["t_client"]["created"]) != 2 {
		t.Errorf("hook request %+v", req)
	}
	pull := he.do("POST", "/api/sync/pull", alice, []byte(`{"lastPulledAt":null}`))
	var got struct {
		Changes map[string]map[string][]map[string]any
	}
	json.Unmarshal(pull.body, &got)
	created := got.Changes["t_client"]["created"]
	if len(created) != 1 || created[0]["id"] != "ok1" || created[0]["title"] != "Fine" {
		t.Errorf("stored: %v, want only ok1 with the rewritten title", created)
	}
	before := he.snapshot()

	// Failures: each a 503 with Retry-After, nothing written.
	failures := []struct {
		name   string
		answer func(w http.ResponseWriter, body []byte)
	}{
		{"timeout", func(w http.ResponseWriter, body []byte) { time.Sleep(time.Second); w.Write([]byte(`{}`)) }},
		{"500", func(w http.ResponseWriter, body []byte) { w.WriteHeader(500) }},
		{"bad JSON", func(w http.ResponseWriter, body []byte) { w.Write([]byte(`{"rejected": [`)) }},
		{"unknown ids", func(w http.ResponseWriter, body []byte) {
			w.Write([]byte(`{"rejected":{"t_client":["never-pushed"]}}`))
		}},
	}
	push2 := []byte(`{"lastPulledAt":0,"changes":{"t_client":{"created":[{"id":"n2","title":"x"}],"updated":[],"deleted":[]}}}`)
	for _, f := range failures {
		he.mu.Lock()
		he.answer = f.answer
		he.mu.Unlock()
		start := time.Now()
		r := he.do("POST", "/api/sync/push", alice, push2)
		if r.status != 503 || r.header.Get("Retry-After") == "" || errorCode(t, r.body) != "unavailable" {
			t.Errorf("%s: %d %q %s, want 503 unavailable with Retry-After", f.name, r.status, r.header.Get("Retry-After"), r.body)
		}
		if f.name == "timeout" && time.Since(start) > 900*time.Millisecond {
			t.Errorf("timeout: the push waited %s for a hook with a 300ms timeout", time.Since(start))
		}
		if after := he.snapshot(); after != before {
			t.Errorf("%s: something was written:\n%s\nwant\n%s", f.name, after, before)
		}
	}
}

func TestHookSignatureHelpers(t *testing.T) {
	body := []byte(`{"user":"u"}`)
	now := time.Unix(1767225600, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := mhttp.SignHook([]byte("k"), ts, body)
	if err := mhttp.VerifyHookSignature([]byte("k"), ts, sig, body, now.Add(time.Minute)); err != nil {
		t.Errorf("valid signature refused: %v", err)
	}
	for name, c := range map[string]struct {
		secret, ts, sig string
		body            []byte
		now             time.Time
	}{
		"wrong secret": {"other", ts, sig, body, now},
		"changed body": {"k", ts, sig, []byte(`{"user":"v"}`), now},
		"replayed":     {"k", ts, sig, body, now.Add(10 * time.Minute)},
		"bad ts":       {"k", "soon", sig, body, now},
	} {
		if err := mhttp.VerifyHookSignature([]byte(c.secret), c.ts, c.sig, c.body, c.now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
