package schema

import (
	"strings"
	"testing"
)

const accessTables = `"tables": [
	{"name": "teams", "columns": [{"name": "name", "type": "string"}]},
	{"name": "team_members", "columns": [{"name": "team_id", "type": "string"}, {"name": "user_id", "type": "string"}, {"name": "n", "type": "number"}]},
	{"name": "tasks", "columns": [{"name": "team_id", "type": "string"}, {"name": "title", "type": "string"}]},
	{"name": "tags", "columns": [{"name": "label", "type": "string"}]},
	{"name": "notes", "columns": [{"name": "body", "type": "string"}]}
]`

const goodGroups = `"groups": {"team": {"members": "team_members", "group": "team_id", "user": "user_id"}}`

func parseWithAccess(access string) (*Schema, error) {
	return Parse([]byte(`{"version": 1, ` + accessTables + `, "access": ` + access + `}`))
}

func TestAccessLoads(t *testing.T) {
	s, err := parseWithAccess(`{` + goodGroups + `, "tables": {
		"teams": {"group": "team", "by": "id"},
		"tasks": {"group": "team", "by": "team_id", "write": "none"},
		"tags": {"public": true},
		"notes": {"owner": true}}}`)
	if err != nil {
		t.Fatal(err)
	}
	g := s.Access.Groups["team"]
	if g == nil || g.Members != s.Table("team_members") || g.GroupCol != "team_id" || g.UserCol != "user_id" {
		t.Fatalf("group: %+v", g)
	}
	if r := s.Table("teams").Rule; r.Kind != GroupRule || r.By != "id" || r.Group != g || r.ReadOnly {
		t.Errorf("teams: %+v", r)
	}
	if r := s.Table("tasks").Rule; r.Kind != GroupRule || r.By != "team_id" || !r.ReadOnly || r.Writable() {
		t.Errorf("tasks: %+v", r)
	}
	// The members table is a group table of its group even when not listed.
	if r := s.Table("team_members").Rule; r.Kind != GroupRule || r.By != "team_id" || r.MembersOf != g {
		t.Errorf("team_members: %+v", r)
	}
	if r := s.Table("tags").Rule; r.Kind != Public || r.Writable() {
		t.Errorf("tags: %+v", r)
	}
	if r := s.Table("notes").Rule; r.Kind != Owner || !r.Writable() {
		t.Errorf("notes: %+v", r)
	}
	if got := s.Table("tasks").GroupOf("x", []any{"t1", "hi"}); got != "t1" {
		t.Errorf("GroupOf = %q", got)
	}
	if got := s.Table("teams").GroupOf("t9", []any{"name"}); got != "t9" {
		t.Errorf("GroupOf(teams) = %q", got)
	}
	if got := s.Table("team_members").MemberOf([]any{"t1", "alice", 1.0}); got != "alice" {
		t.Errorf("MemberOf = %q", got)
	}
}

func TestNoAccessKeepsOwnerRule(t *testing.T) {
	s, err := Load("../examples/todo/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if s.Access != nil {
		t.Errorf("access: %+v", s.Access)
	}
	for _, tb := range s.Tables {
		if tb.Rule.Kind != Owner {
			t.Errorf("%s: %+v", tb.Name, tb.Rule)
		}
	}
}

func TestAccessRefused(t *testing.T) {
	cases := []struct{ access, want string }{
		{`[]`, `access: must be an object`},
		{`{"grups": {}}`, `unknown key "grups"`},
		{`{"tables": {"nope": {"public": true}}}`, `table "nope" is not a table of the schema`},
		{`{"tables": {"tasks": {"group": "team", "by": "team_id"}}}`, `group "team" is not declared`},
		{`{` + goodGroups + `, "tables": {"tasks": {"group": "team", "by": "nope"}}}`, `column "tasks"."nope" is not in the schema`},
		{`{` + goodGroups + `, "tables": {"tasks": {"group": "team"}}}`, `table "tasks": a group rule needs both "group" and "by"`},
		{`{` + goodGroups + `, "tables": {"tasks": {"group": "team", "by": "team_id", "public": true}}}`, `table "tasks" is in two forms (group and public)`},
		{`{` + goodGroups + `, "tables": {"tags": {"public": true, "owner": true}}}`, `table "tags" is in two forms`},
		{`{` + goodGroups + `, "tables": {"tags": {"public": false}}}`, `"public" must be true`},
		{`{` + goodGroups + `, "tables": {"tags": {}}}`, `table "tags": no rule`},
		{`{` + goodGroups + `, "tables": {"tags": {"public": true, "write": "none"}}}`, `"write" may only be "none", on a group table`},
		{`{` + goodGroups + `, "tables": {"tasks": {"group": "team", "by": "team_id", "write": "all"}}}`, `"write" may only be "none"`},
		{`{` + goodGroups + `, "tables": {"tasks": {"group": "team", "by": "team_id", "reed": 1}}}`, `unknown field "reed"`},
		{`{"groups": {"team": {"group": "team_id", "user": "user_id"}}}`, `group "team" has no members table`},
		{`{"groups": {"team": {"members": "crews", "group": "team_id", "user": "user_id"}}}`, `group "team": members table "crews" is not a table of the schema`},
		{`{"groups": {"team": {"members": "team_members", "group": "nope", "user": "user_id"}}}`, `group "team": column "team_members"."nope" is not in the schema`},
		{`{"groups": {"team": {"members": "team_members", "group": "team_id", "user": "n"}}}`, `column "team_members"."n" must be a string column`},
		{`{"groups": {"team": {"members": "team_members", "group": "team_id", "user": "team_id"}}}`, `are the same column`},
		{`{"groups": {"Team": {"members": "team_members", "group": "team_id", "user": "user_id"}}}`, `group "Team": a group name must match`},
		{`{` + goodGroups + `, "tables": {"team_members": {"public": true}}}`, `group "team": its members table "team_members" must be a group table of that group`},
		{`{` + goodGroups + `, "tables": {"team_members": {"group": "team", "by": "user_id"}}}`, `must be a group table of that group`},
		{`{"groups": {"team": {"members": "team_members", "group": "team_id", "user": "user_id"}, "crew": {"members": "team_members", "group": "team_id", "user": "user_id"}}}`, `members table of two groups`},
	}
	for _, c := range cases {
		_, err := parseWithAccess(c.access)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got %v\nwant …%s…", c.access, err, c.want)
		}
	}
}

func TestParseAccessReplaces(t *testing.T) {
	s, err := parseWithAccess(`{` + goodGroups + `, "tables": {"tags": {"public": true}}}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ParseAccess([]byte(`{"tables": {"notes": {"public": true}}}`)); err != nil {
		t.Fatal(err)
	}
	if s.Table("tags").Rule.Kind != Owner || s.Table("notes").Rule.Kind != Public || s.Table("team_members").Rule.Kind != Owner {
		t.Errorf("rules not replaced: tags %v notes %v", s.Table("tags").Rule.Kind, s.Table("notes").Rule.Kind)
	}
	if s.Access == nil || len(s.Access.Groups) != 0 {
		t.Errorf("groups: %+v", s.Access)
	}
}
