package main

import (
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestClientAccessRules: the Go client, through the CLI, against a server with access
// rules (examples/teams): alice creates a team, invites bob, whose next sync brings
// the team's older rows; bob edits, alice converges; alice removes bob, whose device
// loses the team; pushes to the public table are refused. The client knows nothing of
// the rules.
func TestClientAccessRules(t *testing.T) {
	const sch = "../../examples/teams/schema.json"
	url, serverDB := startServeWith(t, sch)
	token := func(user string) string {
		return strings.TrimSpace(mustCLI(t, "token", "--user", user, "--db", serverDB))
	}
	dir := t.TempDir()
	alice, bob := filepath.Join(dir, "alice.db"), filepath.Join(dir, "bob.db")
	for _, db := range []string{alice, bob} {
		mustCLI(t, "client", "init", "--db", db, "--schema", sch)
	}
	sync := func(db, user string) map[string]any {
		t.Helper()
		var sum map[string]any
		out := mustCLI(t, "client", "sync", "--db", db, "--url", url, "--token", token(user), "--json")
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("sync --json printed %q: %v", out, err)
		}
		return sum
	}
	ids := func(db, table string) []string {
		t.Helper()
		out := []string{}
		for _, r := range listJSON(t, db, table) {
			out = append(out, r["id"].(string))
		}
		sort.Strings(out)
		return out
	}
	eq := func(what string, got, want []string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}

	// Alice creates a team with herself as its first member, and a task.
	mustCLI(t, "client", "create", "teams", "name=Crew", "--id", "t1", "--db", alice)
	mustCLI(t, "client", "create", "team_members", "team_id=t1", "user_id=alice", "role=owner", "--id", "m-alice", "--db", alice)
	mustCLI(t, "client", "create", "tasks", "team_id=t1", "name=Old task", "--id", "k1", "--db", alice)
	sync(alice, "alice")
	sync(bob, "bob")
	eq("bob's tasks before the invitation", ids(bob, "tasks"), []string{})

	// Bob cannot join on his own.
	mustCLI(t, "client", "create", "team_members", "team_id=t1", "user_id=bob", "--id", "m-sneak", "--db", bob)
	sum := sync(bob, "bob")
	if !strings.Contains(mustJSON(sum), "m-sneak") {
		t.Errorf("bob's self-invitation was not refused: %v", sum)
	}
	mustCLI(t, "client", "delete", "team_members", "m-sneak", "--db", bob)

	// Alice invites bob; his next sync brings the team's old rows.
	mustCLI(t, "client", "create", "team_members", "team_id=t1", "user_id=bob", "--id", "m-bob", "--db", alice)
	sync(alice, "alice")
	sync(bob, "bob")
	eq("bob's tasks after the invitation", ids(bob, "tasks"), []string{"k1"})
	eq("bob's teams", ids(bob, "teams"), []string{"t1"})
	eq("bob's memberships", ids(bob, "team_members"), []string{"m-alice", "m-bob"})

	// Bob edits; alice converges.
	mustCLI(t, "client", "update", "tasks", "k1", "name=Done by bob", "--db", bob)
	sync(bob, "bob")
	sync(alice, "alice")
	if recs := listJSON(t, alice, "tasks"); len(recs) != 1 || recs[0]["name"] != "Done by bob" {
		t.Errorf("alice's tasks after bob's edit: %v", recs)
	}

	// A public table is refused on push.
	mustCLI(t, "client", "create", "tags", "name=mine", "--id", "g1", "--db", bob)
	if sum := sync(bob, "bob"); !strings.Contains(mustJSON(sum), "g1") {
		t.Errorf("bob's push to the public table was not refused: %v", sum)
	}
	mustCLI(t, "client", "delete", "tags", "g1", "--db", bob)

	// Alice removes bob: his device loses the team.
	mustCLI(t, "client", "delete", "team_members", "m-bob", "--db", alice)
	sync(alice, "alice")
	sync(bob, "bob")
	for _, table := range []string{"teams", "team_members", "tasks"} {
		eq("bob's "+table+" after removal", ids(bob, table), []string{})
	}
	eq("alice keeps the team", ids(alice, "tasks"), []string{"k1"})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
