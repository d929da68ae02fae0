package server

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/melonsync/melonsync/schema"
)

func todo(t testing.TB) *schema.Schema {
	s, err := schema.Load("../examples/todo/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDecodeFastPathAgrees: whenever the one-pass decoder accepts changes, the checked
// decoder accepts them too and decodes the same thing.
func TestDecodeFastPathAgrees(t *testing.T) {
	s := todo(t)
	inputs := []string{
		`{}`,
		`{"projects":{"created":[{"id":"a","name":"x","is_favorite":1,"position":"3"}],"updated":[{"id":"b","_status":"updated"}],"deleted":["c"]}}`,
		`{"projects":{"created":null,"updated":[],"deleted":null}}`,
		`{"tasks":{"created":[{"id":"t","description":["x"],"position":1e308}]},"comments":{"deleted":["x","y"]}}`,
		`{"projects":{"created":[{"id":"a"}],"deleted":["a"]}}`,
		`{"projects":{"CREATED":[]}}`,
		`{"projects":{"created":[null]}}`,
		`{"projects":null}`,
		`{"nope":{}}`,
		`{"projects":{"deleted":[1]}}`,
		`{"projects":{"created":[{"id":"a","__proto__":1}]}}`,
		`{"projects":{"created":[{"id":"a b"}]}}`,
	}
	for _, in := range inputs {
		fast, ok := decodeChangesFast(s, json.RawMessage(in))
		checked, err := decodeChangesChecked(s, json.RawMessage(in))
		if !ok {
			continue
		}
		if err != nil {
			t.Errorf("%s: fast path accepts, checked path refuses: %v", in, err)
			continue
		}
		if diff := cmp.Diff(checked, fast, cmp.Comparer(func(a, b *schema.Table) bool { return a == b }), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: paths disagree: %s", in, diff)
		}
	}
}

func FuzzDecodeChangesPaths(f *testing.F) {
	s := todo(f)
	f.Add(`{"projects":{"created":[{"id":"a","name":"x"}],"updated":[],"deleted":["c"]}}`)
	f.Add(`{"tasks":{"updated":[{"id":"t","is_done":1}]}}`)
	f.Fuzz(func(t *testing.T, in string) {
		fast, ok := decodeChangesFast(s, json.RawMessage(in))
		checked, err := decodeChangesChecked(s, json.RawMessage(in))
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("fast path accepts, checked path refuses: %v", err)
		}
		if diff := cmp.Diff(checked, fast, cmp.Comparer(func(a, b *schema.Table) bool { return a == b }), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("paths disagree: %s", diff)
		}
	})
}
