package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/melonsync/melonsync"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
)

// The example hook, behind a real melonsync service: long names refused with the
// reason, spaces trimmed, and a server with the wrong secret gets 503.
func TestExampleHook(t *testing.T) {
	hookSrv := httptest.NewServer(hook([]byte("s3cret")))
	defer hookSrv.Close()
	s, err := schema.Load(filepath.Join("..", "..", "conflicts", "schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	if err := store.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	svc := server.New(store, s)
	push := func(secret string) (*melonsync.PushResponse, error) {
		hc, err := mhttp.NewHookClient(hookSrv.URL+"/melonsync-hook", []byte(secret), 0)
		if err != nil {
			t.Fatal(err)
		}
		svc.SetWriteHook(hc, []string{"tasks"})
		p, err := server.DecodePush(s, []byte(`{"lastPulledAt":0,"changes":{"tasks":{"created":[
			{"id":"t1","name":"  Call mum "},{"id":"t2","name":"`+strings.Repeat("x", 81)+`"}]}}}`))
		if err != nil {
			t.Fatal(err)
		}
		return svc.Push(ctx, server.Caller{User: "alice", Device: "d"}, p)
	}
	if _, err := push("wrong"); melonsync.ErrorCode(err) != melonsync.EUnavailable {
		t.Errorf("wrong secret: %v, want unavailable", err)
	}
	resp, err := push("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if resp.RejectedReasons["t2"] == "" || len(resp.RejectedIDs["tasks"]) != 1 {
		t.Errorf("answer %+v: want t2 refused with a reason", resp)
	}
	var buf bytes.Buffer
	if err := svc.Pull(ctx, server.Caller{User: "alice"}, server.PullParams{}, &buf); err != nil {
		t.Fatal(err)
	}
	var got melonsync.PullResponse
	json.Unmarshal(buf.Bytes(), &got)
	if c := got.Changes["tasks"].Created; len(c) != 1 || c[0]["name"] != "Call mum" {
		t.Errorf("stored %v, want only t1, trimmed", c)
	}
}
