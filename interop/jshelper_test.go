package interop

import (
	"os/exec"
	"testing"
)

// TestJSHelper runs the unit tests of js/melonsync.js (node --test): requests, gzip,
// typed errors, and the live-update reconnects with a fake EventSource.
func TestJSHelper(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH")
	}
	out, err := exec.Command("node", "--test", "../js/melonsync.test.mjs").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test js/melonsync.test.mjs: %v\n%s", err, out)
	}
}
