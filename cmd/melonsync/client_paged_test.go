package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientSyncPaged: "client sync --page-size N --progress on" pulls page after page,
// draws the pages' progress, and ends with every record.
func TestClientSyncPaged(t *testing.T) {
	url, serverDB := startServe(t)
	token := strings.TrimSpace(mustCLI(t, "token", "--user", "alice", "--db", serverDB))
	dir := t.TempDir()
	writer, reader := filepath.Join(dir, "writer.db"), filepath.Join(dir, "reader.db")
	for _, db := range []string{writer, reader} {
		mustCLI(t, "client", "init", "--db", db, "--schema", "../../examples/todo/schema.json")
	}
	for i := 0; i < 6; i++ { // six syncs: six versions of 1 record each
		mustCLI(t, "client", "create", "tasks", fmt.Sprintf("name=task %d", i), "--db", writer)
		mustCLI(t, "client", "sync", "--url", url, "--token", token, "--db", writer, "--progress", "off")
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"client", "sync", "--url", url, "--token", token, "--db", reader, "--page-size", "2", "--progress", "on"}, &out, &errOut); err != nil {
		t.Fatalf("paged sync: %v\n%s", err, errOut.String())
	}
	if got := listJSON(t, reader, "tasks"); len(got) != 6 {
		t.Errorf("the reader holds %d tasks after a paged sync, want 6", len(got))
	}
	progress := errOut.String()
	for _, want := range []string{"pages", "2/6 records", "6/6 records"} {
		if !strings.Contains(progress, want) {
			t.Errorf("progress on stderr lacks %q:\n%q", want, progress)
		}
	}
	if _, err := cli(t, "client", "sync", "--url", url, "--token", token, "--db", reader, "--page-size", "-1"); err == nil {
		t.Error("--page-size -1 was accepted")
	}
}
