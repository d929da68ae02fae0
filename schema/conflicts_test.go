package schema_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/melonsync/melonsync/schema"
)

func TestConflictPolicies(t *testing.T) {
	s, err := schema.Load(filepath.Join("..", "examples", "conflicts", "schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"projects": "client-wins", "tasks": "last-write-wins(updated_at)", "settings": "server-wins", "comments": "reject", "nope": "reject"}
	for table, p := range want {
		if got := s.Policy(table).String(); got != p {
			t.Errorf("%s: %s, want %s", table, got, p)
		}
	}
	// The hand-written form round-trips with its policies.
	out, _ := json.Marshal(s)
	again, err := schema.Parse(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if again.Policy("tasks") != s.Policy("tasks") || len(again.Policies()) != 3 {
		t.Errorf("round trip lost policies: %s", out)
	}
}

func TestConflictPoliciesRefused(t *testing.T) {
	base := `{"version":1,"tables":[{"name":"tasks","columns":[{"name":"title","type":"string"},{"name":"at","type":"number"}]}],"conflicts":%s}`
	cases := map[string]string{
		`[]`:                                    `"conflicts" must be an object`,
		`{"nope":"client-wins"}`:                `unknown table "nope"`,
		`{"tasks":"newest-wins"}`:               `unknown policy "newest-wins"`,
		`{"tasks":"last-write-wins"}`:           `needs its column`,
		`{"tasks":{"last-write-wins":""}}`:      `must be a column name`,
		`{"tasks":{"last-write-wins":"x"}}`:     `"x" is not a column of table "tasks"`,
		`{"tasks":{"last-write-wins":"title"}}`: `"title" must be a number column, not string`,
		`{"tasks":{"newest":"at"}}`:             `exactly {"last-write-wins": COLUMN}`,
		`{"tasks":7}`:                           `must be a policy name`,
	}
	for in, msg := range cases {
		_, err := schema.Parse([]byte(strings.Replace(base, "%s", in, 1)))
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: error %v, want one containing %q", in, err, msg)
		}
	}
}
