package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
)

// writeSchemaV4 writes the todo schema at version 4: version 3 plus a "tags" table.
func writeSchemaV4(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../../examples/todo/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	tags := map[string]any{"name": "tags", "columns": []any{map[string]any{"name": "label", "type": "string"}}}
	s["version"] = 4
	s["tables"] = append(s["tables"].([]any), tags)
	s["migrations"] = append(s["migrations"].([]any), map[string]any{
		"toVersion": 4, "steps": []any{map[string]any{"type": "create_table", "name": "tags", "columns": tags["columns"]}},
	})
	b, _ := json.Marshal(s)
	path := filepath.Join(t.TempDir(), "schema-v4.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRollingUpgradePostgres runs two serve processes on one PostgreSQL store, one
// on schema version 3 and one on version 4, as during a rolling upgrade behind a load
// balancer. A version-4 client whose pull reaches the old process is told to retry
// (409, Retry-After), never handed a timestamp that would skip the new table; the
// new process serves it everything, and version-3 clients keep syncing on both.
func TestRollingUpgradePostgres(t *testing.T) {
	dsn, _ := pgDSN(t)
	bin := testutil.Binary(t)
	secret := "upgrade-test-secret-0123456789abcdef"
	v3 := startServeProc(t, bin, secret, "--db", dsn, "--schema", "../../examples/todo/schema.json")
	v4 := startServeProc(t, bin, secret, "--db", dsn, "--schema", writeSchemaV4(t))
	auth, _ := mhttp.NewAuth([]byte(secret))
	tok, _ := auth.Mint("alice", time.Hour)
	post := func(p *serverProc, path, device, body string) (int, http.Header, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", p.url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Melon-Device", device)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %d %s", p.url, path, resp.StatusCode, b)
		}
		return resp.StatusCode, resp.Header, out
	}
	ids := func(pull map[string]any, table, kind string) []string {
		out := []string{}
		tc, _ := pull["changes"].(map[string]any)[table].(map[string]any)
		recs, _ := tc[kind].([]any)
		for _, r := range recs {
			out = append(out, r.(map[string]any)["id"].(string))
		}
		return out
	}
	// An upgraded device pushes a tag and a task through the new process.
	st, _, push := post(v4, "/api/sync/push", "phone", `{"lastPulledAt":0,"changes":{"tags":{"created":[{"id":"g1","label":"home"}]},"tasks":{"created":[{"id":"t1","name":"milk"}]}}}`)
	if st != 200 {
		t.Fatalf("push to v4: %d %v", st, push)
	}
	// A new version-4 device's first pull lands on the old process: retry later.
	st, hdr, out := post(v3, "/api/sync/pull", "laptop", `{"lastPulledAt":null,"schemaVersion":4,"migration":null}`)
	e, _ := out["error"].(map[string]any)
	if st != 409 || e["code"] != "conflict" || hdr.Get("Retry-After") == "" {
		t.Fatalf("v4 pull from the v3 process: %d %v (Retry-After %q), want 409 conflict with Retry-After", st, out, hdr.Get("Retry-After"))
	}
	if _, ok := out["timestamp"]; ok {
		t.Fatalf("the refusal carries a timestamp: %v", out)
	}
	// The retry reaches the new process: the tag is there.
	st, _, out = post(v4, "/api/sync/pull", "laptop", `{"lastPulledAt":null,"schemaVersion":4,"migration":null}`)
	if st != 200 || fmt.Sprint(ids(out, "tags", "created")) != "[g1]" {
		t.Fatalf("v4 pull from the v4 process: %d %v", st, out)
	}
	ts := int64(out["timestamp"].(float64))
	// Incremental pulls: a tag added later is never skipped, whichever process answers.
	post(v4, "/api/sync/push", "phone", fmt.Sprintf(`{"lastPulledAt":%d,"changes":{"tags":{"created":[{"id":"g2","label":"work"}]}}}`, ts))
	st, _, out = post(v3, "/api/sync/pull", "laptop", fmt.Sprintf(`{"lastPulledAt":%d,"schemaVersion":4,"migration":null}`, ts))
	if st != 409 {
		t.Fatalf("incremental v4 pull from the v3 process: %d %v", st, out)
	}
	st, _, out = post(v4, "/api/sync/pull", "laptop", fmt.Sprintf(`{"lastPulledAt":%d,"schemaVersion":4,"migration":null}`, ts))
	if st != 200 || fmt.Sprint(ids(out, "tags", "created")) != "[g2]" {
		t.Fatalf("incremental v4 pull from the v4 process: %d %v", st, out)
	}
	// Version-3 clients sync on both processes and never see the tags table.
	for _, p := range []*serverProc{v3, v4} {
		st, _, out = post(p, "/api/sync/pull", "old", `{"lastPulledAt":null,"schemaVersion":3,"migration":null}`)
		if st != 200 || fmt.Sprint(ids(out, "tasks", "created")) != "[t1]" {
			t.Fatalf("v3 pull from %s: %d %v", p.url, st, out)
		}
		if _, ok := out["changes"].(map[string]any)["tags"]; ok {
			t.Errorf("a v3 client got the tags table")
		}
	}
}
