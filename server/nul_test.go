package server_test

import (
	"strings"
	"testing"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
)

// A number beyond a 64-bit float is refused with a message that says so and names
// the column, not "a record must be an object".
func TestOutOfRangeNumberMessage(t *testing.T) {
	sch := storetest.TodoSchema(t)
	_, err := server.DecodePush(sch, []byte(`{"lastPulledAt":0,"changes":{"tasks":{"created":[{"id":"a","position":1e400}]}}}`))
	if melonsync.ErrorCode(err) != melonsync.EInvalid || !strings.Contains(err.Error(), "position") || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("got %v", err)
	}
	_, err = server.DecodePush(sch, []byte(`{"lastPulledAt":0,"changes":{"tasks":{"created":[[1]]}}}`))
	if err == nil || !strings.Contains(err.Error(), "must be an object") {
		t.Fatalf("a non-object record: %v", err)
	}
}
