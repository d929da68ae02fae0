package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestServeHookFlags(t *testing.T) {
	schemaFile := filepath.Join("..", "..", "examples", "conflicts", "schema.json")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--hook-url", "http://127.0.0.1:9/h"}, "needs a secret"},
		{[]string{"--hook-url", "ftp://x", "--hook-secret", "s"}, "must start with http"},
		{[]string{"--hook-tables", "tasks"}, "--hook-tables needs --hook-url"},
		{[]string{"--hook-url", "http://127.0.0.1:9/h", "--hook-secret", "s", "--hook-timeout", "0s"}, "--hook-timeout must be positive"},
	} {
		m := NewServeMain(io.Discard, io.Discard)
		err := m.ParseFlags(append([]string{"--schema", schemaFile}, c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error containing %q", c.args, err, c.want)
		}
	}
	// An unknown table stops the server at start, naming it.
	m := NewServeMain(io.Discard, io.Discard)
	if err := m.ParseFlags([]string{"--schema", schemaFile, "--db", filepath.Join(t.TempDir(), "s.db"), "--addr", "127.0.0.1:0",
		"--hook-url", "http://127.0.0.1:9/h", "--hook-secret", "s", "--hook-tables", "tasks,nope"}); err != nil {
		t.Fatal(err)
	}
	err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `unknown table "nope"`) {
		t.Errorf("run: %v, want the unknown hook table named", err)
	}
}
