package transport_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A program that imports only the Go client and its transport links no server code:
// not the sync service, the stores, the server's HTTP side, metrics or JWT. And the
// client itself knows nothing of HTTP.
func TestClientOnlyProgramLinksNoServerCode(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	deps := func(pkgs ...string) []string {
		t.Helper()
		out, err := exec.Command(goBin, append([]string{"list", "-deps"}, pkgs...)...).Output()
		if err != nil {
			t.Fatalf("go list -deps %v: %v", pkgs, err)
		}
		return strings.Fields(string(out))
	}
	const mod = "github.com/melonsync/melonsync/"
	// A path matches an entry when it is the entry or a package below it.
	forbidden := []string{
		mod + "server", mod + "postgres", mod + "http",
		"github.com/prometheus", "github.com/golang-jwt", "github.com/jackc",
	}
	for _, p := range deps(mod+"client", mod+"transport") {
		// The server store; the SQLite driver set-up below it is shared with the client.
		if p == mod+"sqlite" {
			t.Errorf("a client-only program links %s", p)
		}
		for _, f := range forbidden {
			if p == f || strings.HasPrefix(p, f+"/") {
				t.Errorf("a client-only program links %s", p)
			}
		}
	}
	for _, p := range deps(mod + "client") {
		if p == "net/http" || p == mod+"transport" {
			t.Errorf("package client depends on %s", p)
		}
	}
}
