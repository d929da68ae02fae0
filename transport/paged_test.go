package transport_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/client"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/transport"
)

// TestPagedSynchronize: the Go client's Synchronize with PageSize pulls page after
// page (plain and turbo first syncs), reports each, pushes after the last, and ends
// with what an unpaged sync gives.
func TestPagedSynchronize(t *testing.T) {
	url, auth := ctServer(t)
	ctx := context.Background()
	seed := ctClient(t, url, transport.StaticToken(ctToken(t, auth, "alice")), "seed")
	var since int64
	for p := 0; p < 10; p++ { // 10 pushes of 25 tasks: 10 versions
		var recs []melonsync.RawRecord
		for i := 0; i < 25; i++ {
			recs = append(recs, melonsync.RawRecord{"id": fmt.Sprintf("t%03d", p*25+i), "name": fmt.Sprintf("task %d", p*25+i)})
		}
		resp, err := seed.Push(ctx, melonsync.PushRequest{LastPulledAt: since, Changes: melonsync.Changes{"tasks": {Created: recs}}})
		if err != nil {
			t.Fatal(err)
		}
		since = resp.Timestamp
	}
	for _, turbo := range []bool{true, false} {
		t.Run(fmt.Sprintf("turbo=%v", turbo), func(t *testing.T) {
			db, err := client.Open(filepath.Join(t.TempDir(), "c.db"), testutil.TodoSchema(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			// A local record, pushed once every page is in.
			if !turbo {
				if err := db.Write(ctx, func(tx *client.Tx) error {
					_, err := tx.Create("tasks", map[string]any{"id": "local1", "name": "mine"})
					return err
				}); err != nil {
					t.Fatal(err)
				}
			}
			c := ctClient(t, url, transport.StaticToken(ctToken(t, auth, "alice")), fmt.Sprintf("phone-%v", turbo))
			opts := c.Options()
			opts.PageSize = 60
			opts.UnsafeTurbo = turbo
			var pages []client.Progress
			opts.OnProgress = func(p client.Progress) {
				if p.Phase == "page" {
					pages = append(pages, p)
				}
			}
			if err := client.Synchronize(ctx, db, opts); err != nil {
				t.Fatal(err)
			}
			// 250 records in pages of about 60 (whole pushes of 25): 75, 75, 75, 25.
			want := []int64{175, 100, 25, 0}
			if len(pages) != len(want) {
				t.Fatalf("%d pages reported (%+v), want %d", len(pages), pages, len(want))
			}
			for i, p := range pages {
				if p.Remaining != want[i] || p.HasMore != (i < len(want)-1) {
					t.Errorf("page %d: remaining %d, hasMore %v; want %d, %v", i+1, p.Remaining, p.HasMore, want[i], i < len(want)-1)
				}
			}
			var n int
			db.Read(ctx, func(tx *client.Tx) error {
				recs, err := tx.Query("tasks", client.Query{})
				n = len(recs)
				return err
			})
			wantN := 250
			if !turbo {
				wantN = 251
			}
			if n != wantN {
				t.Errorf("the device holds %d tasks, want %d", n, wantN)
			}
			if !turbo {
				got, err := seed.Pull(ctx, client.PullArgs{LastPulledAt: &since, SchemaVersion: 3})
				if err != nil {
					t.Fatal(err)
				}
				if tc := got.Changes["tasks"]; tc == nil || len(tc.Created) != 1 || tc.Created[0]["id"] != "local1" {
					t.Errorf("the local record was not pushed after the last page: %+v", got.Changes["tasks"])
				}
			}
		})
	}
}
