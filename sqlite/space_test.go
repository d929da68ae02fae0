package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
)

// TestFullFileIsStorageFull: a push into a file that cannot grow (max_page_count, a
// real SQLITE_FULL; no root needed, unlike the tmpfs tests of package http) fails
// with melonsync.ErrStorageFull and leaves nothing of itself; ProbeSpace says full
// too, and both work again once the file may grow.
func TestFullFileIsStorageFull(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	h := storetest.NewHarness(t, s)
	h.MustPush("alice", "d1", 0, `{"projects":{"created":[{"id":"before","name":"x"}]}}`)
	ctx := context.Background()
	var pages int64
	if err := s.writer.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := s.writer.ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 0; i < 500; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"lost-%d","name":"%s"}`, i, strings.Repeat("x", 1000))
	}
	_, err = h.Push("alice", "d1", 0, `{"projects":{"created":[`+b.String()+`]}}`)
	if !errors.Is(err, melonsync.ErrStorageFull) {
		t.Fatalf("push into a full file: %v; want ErrStorageFull", err)
	}
	if err := s.ProbeSpace(ctx); !errors.Is(err, melonsync.ErrStorageFull) {
		t.Fatalf("probe of a full file: %v; want ErrStorageFull", err)
	}
	r := h.Pull(server.Caller{User: "alice", Device: "d2"}, server.PullParams{})
	if n := len(r.Changes["projects"].Created); n != 1 {
		t.Fatalf("after the failed push the store holds %d projects; want 1 (nothing half-applied)", n)
	}
	if _, err := s.writer.ExecContext(ctx, `PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
	if err := s.ProbeSpace(ctx); err != nil {
		t.Fatalf("probe once the file may grow: %v", err)
	}
	h.MustPush("alice", "d1", 0, `{"projects":{"created":[`+b.String()+`]}}`)
}
