package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestSyncErrorMessageOnePrefixPerLayer: a refused token reads as one part per
// layer — the command, the sync error code, the operation, the server's message and
// status — each once.
func TestSyncErrorMessageOnePrefixPerLayer(t *testing.T) {
	url, _ := startServe(t)
	db := filepath.Join(t.TempDir(), "c.db")
	if _, err := cli(t, "client", "init", "--db", db, "--schema", "../../examples/todo/schema.json"); err != nil {
		t.Fatal(err)
	}
	_, err := cli(t, "client", "sync", "--db", db, "--url", url, "--token", "bad")
	want := "client sync: SYNC_ERROR_AUTH: pull: malformed token (not a JWT) (HTTP 401 unauthorized)"
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	for _, part := range []string{"pull:", "malformed token", "sync:"} {
		if n := strings.Count(err.Error(), part); n > 1 || (part != "sync:" && n != 1) {
			t.Errorf("%q appears %d times", part, n)
		}
	}
}
