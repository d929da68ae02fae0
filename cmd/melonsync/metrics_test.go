package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/melonsync/melonsync/internal/testutil"
)

// TestServeMetricsGroupCommit: on PostgreSQL, /metrics counts how pushes were
// written, and --pprof serves Go's profiles beside it.
func TestServeMetricsGroupCommit(t *testing.T) {
	dsn, _ := pgDSN(t)
	t.Setenv("MELONSYNC_JWT_SECRET", "metrics-test-secret-0123456789")
	maddr := testutil.FreeAddr(t)
	srv := runServe(t, "--addr", "127.0.0.1:0", "--db", dsn, "--schema", "../../examples/todo/schema.json",
		"--metrics-addr", maddr, "--pprof")
	var tok bytes.Buffer
	if err := run(context.Background(), []string{"token", "--user", "alice", "--ttl", "1h"}, &tok, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // one after the other: each finds no other push waiting
		body := fmt.Sprintf(`{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":"t%d"}],"updated":[],"deleted":[]}}}`, i)
		req, _ := http.NewRequest("POST", "http://"+srv.addr+"/api/sync/push", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok.String()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("push %d: %d", i, resp.StatusCode)
		}
	}
	metrics := get(t, "http://"+maddr+"/metrics", 200)
	for _, want := range []string{
		"melonsync_group_commit_single_total 3",
		"melonsync_group_commits_total 0",
		"melonsync_group_commit_pushes_total 0",
		"melonsync_group_commit_sent_alone_total 0",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if page := get(t, "http://"+maddr+"/debug/pprof/", 200); !strings.Contains(page, "goroutine") {
		t.Errorf("/debug/pprof/: %.200s", page)
	}
}

// TestServePprofFlag: profiles are off unless asked for, and --pprof needs the
// metrics listener.
func TestServePprofFlag(t *testing.T) {
	maddr := testutil.FreeAddr(t)
	runServe(t, "--addr", "127.0.0.1:0", "--db", t.TempDir()+"/m.db", "--schema", "../../examples/todo/schema.json",
		"--metrics-addr", maddr)
	get(t, "http://"+maddr+"/debug/pprof/", 404)
	err := NewServeMain(io.Discard, io.Discard).ParseFlags([]string{"--schema", "../../examples/todo/schema.json", "--pprof"})
	if err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("--pprof alone: %v", err)
	}
}

// get fetches url and fails the test unless it answers status.
func get(t *testing.T, url string, status int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d: %.200s", url, resp.StatusCode, status, b)
	}
	return string(b)
}
