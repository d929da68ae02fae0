package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeEndToEnd runs the real serve command on 127.0.0.1:0 with a temp database,
// mints a token with the token command, pushes and pulls over HTTP, and stops it
// gracefully.
func TestServeEndToEnd(t *testing.T) {
	t.Setenv("MELONSYNC_JWT_SECRET", "")
	dir := t.TempDir()
	db := filepath.Join(dir, "melonsync.db")
	srv := runServe(t, "--addr", "127.0.0.1:0", "--db", db, "--schema", "../../examples/todo/schema.json")
	addr := srv.addr
	var tok bytes.Buffer
	if err := run(context.Background(), []string{"token", "--user", "alice", "--db", db, "--ttl", "1h"}, &tok, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	auth := "Bearer " + strings.TrimSpace(tok.String())
	post := func(path, body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	st, pull := post("/api/sync/pull", `{"lastPulledAt":null}`)
	if st != 200 {
		t.Fatalf("pull %d %v", st, pull)
	}
	ts := int64(pull["timestamp"].(float64))
	st, push := post("/api/sync/push", fmt.Sprintf(`{"lastPulledAt":%d,"changes":{"tasks":{"created":[{"id":"t1","name":"Buy milk"}],"updated":[],"deleted":[]}}}`, ts))
	if st != 200 || push["ok"] != true {
		t.Fatalf("push %d %v", st, push)
	}
	st, pull = post("/api/sync/pull", `{"lastPulledAt":null}`)
	created := pull["changes"].(map[string]any)["tasks"].(map[string]any)["created"].([]any)
	if st != 200 || len(created) != 1 || created[0].(map[string]any)["name"] != "Buy milk" {
		t.Fatalf("pull after push: %d %v", st, pull)
	}
	// A live-update stream is open while the server stops: shutdown ends it.
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/sync/events", nil)
	req.Header.Set("Authorization", auth)
	events, err := http.DefaultClient.Do(req)
	if err != nil || events.StatusCode != 200 {
		t.Fatalf("events: %v", err)
	}
	defer events.Body.Close()
	stopped := time.Now()
	if err := srv.stop(); err != nil {
		t.Fatalf("serve returned %v", err)
	}
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("shutdown took %s with an event stream open", d)
	}
	if logs := srv.stderr.String(); !strings.Contains(logs, "msg=listening") || !strings.Contains(logs, "shutting down") {
		t.Errorf("logs: %s", logs)
	}
	// A token for a database that does not exist is refused (it would be signed
	// with a secret no server uses), and no file is created.
	other := filepath.Join(dir, "other.db")
	if err := run(context.Background(), []string{"token", "--user", "alice", "--db", other}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Errorf("token for a missing store: no error")
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("token created %s", other)
	}
}

func TestServeFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--schema", "x.json", "extra"},
		{"--schema", "x.json", "--log-format", "xml"},
		{"--schema", "x.json", "--max-body", "0"},
	} {
		m := NewServeMain(&bytes.Buffer{}, &bytes.Buffer{})
		if err := m.ParseFlags(args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if err := run(context.Background(), []string{"token"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Error("token without --user: no error")
	}
	if err := run(context.Background(), []string{"bogus"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Error("unknown command: no error")
	}
	m := NewServeMain(&bytes.Buffer{}, &bytes.Buffer{})
	m.ParseFlags([]string{"--schema", "missing.json", "--db", filepath.Join(t.TempDir(), "x.db")})
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing schema file: %v", err)
	}
}
