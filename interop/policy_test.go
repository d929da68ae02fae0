package interop

// 12–13: conflict policies and write hooks (SPEC §9) with the real WatermelonDB client,
// on the schema of examples/conflicts (projects: client-wins, tasks: last-write-wins by
// updated_at).

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
)

func TestWatermelonDBPolicies(t *testing.T) {
	runScenarios(t, []scenario{
		{"12_policies_settle_in_one_sync", scenarioPolicies},
		{"13_write_hook_refuses_with_reason", scenarioHook},
	})
}

// newPolicyServer serves examples/conflicts/schema.json from a fresh store of st.
func newPolicyServer(t *testing.T, st store, args ...string) *server {
	t.Helper()
	return newServerSchema(t, st, filepath.Join("..", "examples", "conflicts", "schema.json"), args...)
}

// 12. Device B changes a record between A's pull and A's push. Under client-wins
// (projects) and last-write-wins (tasks) A's sync succeeds at once — no 409, no second
// attempt — and the next syncs bring both devices the settled records.
func scenarioPolicies(t *testing.T, st store) {
	srv := newPolicyServer(t, st)
	steps := []M{
		create("A", "projects", "p1", M{"name": "Home", "is_favorite": false}),
		create("A", "tasks", "t1", M{"project_id": "p1", "name": "Buy milk", "is_done": false, "updated_at": 1000}),
		create("A", "tasks", "t2", M{"project_id": "p1", "name": "Call mum", "is_done": false, "updated_at": 1000}),
		syncStep("A"), syncStep("B"),
		// A: favourite the project (client-wins: only is_favorite is A's), tick t1 late
		// (updated_at 3000: A wins t1 whole), rename t2 early (updated_at 1500: the
		// server's t2, changed at 2000, stays).
		update("A", "projects", "p1", M{"is_favorite": true}),
		update("A", "tasks", "t1", M{"is_done": true, "updated_at": 3000}),
		update("A", "tasks", "t2", M{"name": "Call dad", "updated_at": 1500}),
		named("A's push meets B's changes and is settled", syncStep("A", M{
			"beforePush": []M{
				update("B", "projects", "p1", M{"name": "Casa"}),
				update("B", "tasks", "t1", M{"name": "Buy oat milk", "updated_at": 2000}),
				update("B", "tasks", "t2", M{"is_done": true, "updated_at": 2000}),
				syncStep("B", M{"expectPush": M{"tables": M{"projects": tc(nil, ids("p1"), nil), "tasks": tc(nil, ids("t1", "t2"), nil)}}}),
			},
			"expectPush":       M{"tables": M{"projects": tc(nil, ids("p1"), nil), "tasks": tc(nil, ids("t1", "t2"), nil)}},
			"expectPushAnswer": M{"ok": true, "resolvedIds": M{"projects": []string{"p1"}, "tasks": anyOrder("t1", "t2")}},
		})),
		expect("A", "projects", synced("p1", M{"name": "Home", "is_favorite": true})),
		named("A pulls the settled records", syncStep("A", M{
			"expectPull": M{"tables": M{"projects": tc(nil, ids("p1"), nil), "tasks": M{"created": []string{}, "updated": anyOrder("t1", "t2"), "deleted": []string{}}}},
			"expectPush": nil,
		})),
		syncStep("B"),
		expect("A", "projects", synced("p1", M{"name": "Casa", "is_favorite": true})),
		expect("A", "tasks",
			synced("t1", M{"project_id": "p1", "name": "Buy milk", "is_done": true, "updated_at": 3000}),
			synced("t2", M{"project_id": "p1", "name": "Call mum", "is_done": true, "updated_at": 2000})),
		converged("A", "B"),
	}
	res := run(t, srv, M{
		"tokens":  M{"alice": srv.token("alice")},
		"clients": M{"A": M{"user": "alice"}, "B": M{"user": "alice"}},
		"steps":   steps,
	}, nil)
	res.logSyncTimes(t)
}

// hookServer is the app's backend: it refuses comments longer than 10 characters and
// checks every request's signature.
type hookServer struct {
	*httptest.Server
	mu     sync.Mutex
	down   bool
	calls  int
	badSig []string
}

func newHookServer(t *testing.T, secret string) *hookServer {
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.calls++
		if err := mhttp.VerifyHookSignature([]byte(secret), r.Header.Get("X-Melon-Timestamp"), r.Header.Get("X-Melon-Signature"), body, time.Now()); err != nil {
			h.badSig = append(h.badSig, err.Error())
		}
		if h.down {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var req struct {
			Changes map[string]map[string]json.RawMessage `json:"changes"`
		}
		json.Unmarshal(body, &req)
		var recs []map[string]any
		json.Unmarshal(req.Changes["comments"]["created"], &recs)
		rejected, reasons := []string{}, map[string]string{}
		for _, c := range recs {
			if b, _ := c["body"].(string); len(b) > 10 {
				id := c["id"].(string)
				rejected = append(rejected, id)
				reasons[id] = "comment too long"
			}
		}
		json.NewEncoder(w).Encode(M{"rejected": M{"comments": rejected}, "reasons": reasons})
	}))
	t.Cleanup(h.Close)
	return h
}

// 13. The hook refuses one comment: the push answers 200, the app's pushChanges gets
// the reason, and WatermelonDB keeps the comment unsynced (pushed again, refused again).
// While the hook is down the sync fails with 503 and nothing is written.
func scenarioHook(t *testing.T, st store) {
	const secret = "interop-hook-secret"
	hook := newHookServer(t, secret)
	srv := newPolicyServer(t, st, "--hook-url", hook.URL, "--hook-secret", secret, "--hook-tables", "comments")
	refused := M{"ok": true, "experimentalRejectedIds": M{"comments": []string{"c1"}}, "rejectedReasons": M{"c1": "comment too long"}}
	steps := []M{
		create("A", "tasks", "t1", M{"name": "Buy milk", "updated_at": 1}),
		create("A", "comments", "c1", M{"task_id": "t1", "body": "far too long a comment"}),
		create("A", "comments", "c2", M{"task_id": "t1", "body": "short"}),
		named("the hook refuses c1", syncStep("A", M{"expectPushAnswer": refused})),
		expect("A", "comments",
			rec("c1", M{"_status": "created", "body": "far too long a comment"}),
			synced("c2", M{"body": "short"})),
		named("c1 is pushed again and refused again", syncStep("A", M{
			"expectPush":       M{"tables": M{"comments": tc(ids("c1"), nil, nil)}},
			"expectPushAnswer": refused,
		})),
		syncStep("B"),
		expect("B", "comments", synced("c2", M{"body": "short"})),
		expect("B", "tasks", synced("t1", M{"name": "Buy milk"})),
		{"op": "checkpoint", "name": "hook down"},
		create("A", "comments", "c3", M{"task_id": "t1", "body": "fine"}),
		named("the hook is down: 503", syncStep("A", M{"expectError": []string{"push failed: 503"}})),
		expect("A", "comments",
			rec("c1", M{"_status": "created"}),
			synced("c2", M{}),
			rec("c3", M{"_status": "created"})),
		named("nothing of it reached B", syncStep("B", M{"expectPull": M{"tables": M{"comments": none}}})),
	}
	res := run(t, srv, M{
		"tokens":  M{"alice": srv.token("alice")},
		"clients": M{"A": M{"user": "alice"}, "B": M{"user": "alice"}},
		"steps":   steps,
	}, func(name string) (M, error) {
		hook.mu.Lock()
		hook.down = true
		hook.mu.Unlock()
		return M{}, nil
	})
	res.logSyncTimes(t)
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.badSig) > 0 || hook.calls < 3 {
		t.Errorf("hook: %d calls, signature failures %v", hook.calls, hook.badSig)
	}
}

// The JavaScript helper hands the server's reasons to the app (onRejected and the
// result of pushChanges), and a 503 from a failing hook is an UnavailableError.
func TestJSHelperRejectedReasons(t *testing.T) {
	requireNode(t)
	script := `
import { createSync, UnavailableError } from '../js/melonsync.js'
let answer = { status: 200, body: { ok: true, timestamp: 5, experimentalRejectedIds: { comments: ['c1'] }, rejectedReasons: { c1: 'comment too long' } } }
const fetch = async () => new Response(JSON.stringify(answer.body), { status: answer.status, headers: { 'Content-Type': 'application/json' } })
const seen = []
const sync = createSync({ url: 'http://127.0.0.1:1', token: 't', fetch, onRejected: (ids, reasons) => seen.push({ ids, reasons }) })
const res = await sync.pushChanges({ changes: {}, lastPulledAt: 1 })
answer = { status: 503, body: { error: { code: 'unavailable', message: 'the app\'s write hook did not accept the push (status 500)', details: {} } } }
let err
try { await sync.pushChanges({ changes: {}, lastPulledAt: 1 }) } catch (e) { err = e }
console.log(JSON.stringify({ res, seen, unavailable: err instanceof UnavailableError, message: err && err.message }))
`
	file := filepath.Join(t.TempDir(), "check.mjs")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(script, "'../js/melonsync.js'", "'"+jsHelperURL(t)+"'")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("node", file).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var got struct {
		Res struct {
			RejectedReasons map[string]string `json:"rejectedReasons"`
		} `json:"res"`
		Seen []struct {
			Reasons map[string]string `json:"reasons"`
		} `json:"seen"`
		Unavailable bool   `json:"unavailable"`
		Message     string `json:"message"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.Res.RejectedReasons["c1"] != "comment too long" || len(got.Seen) != 1 || got.Seen[0].Reasons["c1"] != "comment too long" {
		t.Errorf("reasons did not reach the app: %s", out)
	}
	if !got.Unavailable || !strings.Contains(got.Message, "write hook") {
		t.Errorf("a hook failure is not an UnavailableError with the server's message: %s", out)
	}
}

// jsHelperURL is the file URL of js/melonsync.js.
func jsHelperURL(t *testing.T) string {
	abs, err := filepath.Abs(filepath.Join("..", "js", "melonsync.js"))
	if err != nil {
		t.Fatal(err)
	}
	return "file://" + abs
}
