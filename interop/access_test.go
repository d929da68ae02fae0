package interop

// Access rules (SPEC §6) with the real WatermelonDB client: the teams example schema
// (examples/teams/schema.json), on SQLite and (with MELONSYNC_TEST_POSTGRES) PostgreSQL.

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
)

var accessScenarios = []scenario{
	{"team_invite_edit_remove", scenarioTeamLifecycle},
	{"task_moves_between_teams", scenarioTaskMoves},
	{"public_table", scenarioPublicTable},
}

func TestWatermelonDBAccess(t *testing.T) { runScenarios(t, accessScenarios) }

// newTeamsServer starts a server with the teams example schema on a fresh store of st.
func newTeamsServer(t *testing.T, st store) *server {
	t.Helper()
	return newServerSchema(t, st, filepath.Join("..", "examples", "teams", "schema.json"))
}

func teamRow(name string) M      { return M{"name": name, "created_at": 1} }
func member(team, user string) M { return M{"team_id": team, "user_id": user, "role": "member"} }
func teamTask(team, name string) M {
	return M{"team_id": team, "project_id": "", "name": name, "is_done": false, "position": 1}
}
func teamProject(team, name string) M { return M{"team_id": team, "name": name, "position": 1} }

// 1. Alice creates a team (the first-member rule) with a project and tasks, and
// invites bob, whose next sync brings the team's older rows as created. Bob edits, alice
// converges; carol joins later and gets everything. Alice removes bob: his next sync
// deletes every row of the team from his device, his pending edit included, and a raw
// push of his to the team is refused.
func scenarioTeamLifecycle(t *testing.T, st store) {
	srv := newTeamsServer(t, st)
	alice, bob, carol := srv.token("alice"), srv.token("bob"), srv.token("carol")
	all := func(teams, members, projects, tasks []string) M {
		return M{"teams": tc(teams, nil, nil), "team_members": tc(members, nil, nil), "projects": tc(projects, nil, nil), "tasks": tc(tasks, nil, nil)}
	}
	steps := []M{
		create("A", "teams", "t1", teamRow("Acme")),
		create("A", "team_members", "m_a", M{"team_id": "t1", "user_id": "alice", "role": "owner"}),
		create("A", "projects", "p1", teamProject("t1", "Launch")),
		create("A", "tasks", "k1", teamTask("t1", "Write the plan")),
		create("A", "tasks", "k2", teamTask("t1", "Book the room")),
		create("A", "notes", "n_a", M{"body": "alice's private note", "task_id": "k1"}),
		named("alice creates the team", syncStep("A")),
		expect("A", "teams", synced("t1", nil)),
		named("bob is not a member yet", syncStep("B", M{"expectPull": M{"count": 0}})),
		create("A", "team_members", "m_b", member("t1", "bob")),
		named("alice invites bob", syncStep("A")),
		named("bob gets the team's old rows as created", syncStep("B", M{"expectPull": M{"tables": all(ids("t1"), ids("m_a", "m_b"), ids("p1"), ids("k1", "k2"))}})),
		expect("B", "tasks", synced("k1", M{"name": "Write the plan", "team_id": "t1"}), synced("k2", M{"name": "Book the room"})),
		expect("B", "notes"),
		update("B", "tasks", "k1", M{"name": "Write the plan (bob)", "is_done": true}),
		create("B", "tasks", "k3", teamTask("t1", "Bob's task")),
		named("bob edits and adds", syncStep("B")),
		expect("B", "tasks", synced("k1", nil), synced("k2", nil), synced("k3", nil)),
		named("alice gets bob's changes", syncStep("A", M{"expectPull": M{"tables": M{"tasks": tc(ids("k3"), ids("k1"), nil)}}})),
		expect("A", "tasks", synced("k1", M{"name": "Write the plan (bob)", "is_done": true}), synced("k2", nil), synced("k3", M{"name": "Bob's task"})),
		create("A", "team_members", "m_c", member("t1", "carol")),
		syncStep("A"),
		named("carol joins later and gets everything", syncStep("C", M{"expectPull": M{"tables": all(ids("t1"), ids("m_a", "m_b", "m_c"), ids("p1"), ids("k1", "k2", "k3"))}})),
		syncStep("B"),
		// Bob edits offline; meanwhile alice removes him.
		update("B", "tasks", "k2", M{"name": "bob's last edit"}),
		markAsDeleted("A", "team_members", "m_b"),
		named("alice removes bob", syncStep("A")),
		named("bob's device loses the team", syncStep("B", M{
			"expectPull": M{"tables": M{
				"teams": tc(nil, nil, ids("t1")), "team_members": tc(nil, nil, ids("m_a", "m_b", "m_c")),
				"projects": tc(nil, nil, ids("p1")), "tasks": tc(nil, nil, ids("k1", "k2", "k3"))}},
			"expectPush": nil,
		})),
		expect("B", "teams"), expect("B", "team_members"), expect("B", "projects"), expect("B", "tasks"),
		{"op": "http", "method": "POST", "path": "/api/sync/push", "headers": bearer(bob),
			"body": M{"lastPulledAt": 1, "changes": M{
				"tasks":        M{"created": []M{rec("k9", teamTask("t1", "sneaked in"))}, "updated": []M{rec("k1", M{"name": "bob again"})}, "deleted": []string{"k2"}},
				"team_members": M{"created": []M{rec("m_b2", member("t1", "bob"))}, "updated": []M{}, "deleted": []string{}},
			}},
			"expectStatus": 200, "expectJSON": M{"ok": true, "experimentalRejectedIds": M{"tasks": anyOrder("k9", "k1", "k2"), "team_members": anyOrder("m_b2")}},
			"expectBodyNotContains": []string{"Write the plan", "Book the room"}},
		{"op": "http", "method": "POST", "path": "/api/sync/pull", "headers": bearer(bob),
			"body": M{"lastPulledAt": nil, "schemaVersion": 1, "migration": nil}, "expectStatus": 200,
			"expectBodyNotContains": []string{"t1", "k1", "k2", "k3", "p1", "m_a", "Acme", "Write the plan"}},
		named("the team is untouched", syncStep("A", M{"expectPull": M{"tables": M{"tasks": none, "team_members": tc(nil, nil, ids("m_b"))}}})),
		syncStep("C"),
		expect("C", "tasks", synced("k1", M{"name": "Write the plan (bob)"}), synced("k2", M{"name": "Book the room"}), synced("k3", nil)),
		expect("C", "notes"),
	}
	res := run(t, srv, M{
		"tokens":  M{"alice": alice, "bob": bob, "carol": carol},
		"clients": M{"A": M{"user": "alice"}, "B": M{"user": "bob"}, "C": M{"user": "carol"}},
		"steps":   steps,
	}, nil)
	res.logSyncTimes(t)
}

// 2. Alice is in teams t1 (with bob) and t2 (with carol). A task moves from t1 to t2:
// bob's device deletes it, carol's gets it as created, alice's updates it. Bob cannot
// move a task into t2, which he is not in.
func scenarioTaskMoves(t *testing.T, st store) {
	srv := newTeamsServer(t, st)
	alice, bob, carol := srv.token("alice"), srv.token("bob"), srv.token("carol")
	steps := []M{
		create("A", "teams", "t1", teamRow("One")),
		create("A", "team_members", "m1a", member("t1", "alice")),
		create("A", "team_members", "m1b", member("t1", "bob")),
		named("alice makes t1 with bob", syncStep("A")),
		create("C", "teams", "t2", teamRow("Two")),
		create("C", "team_members", "m2c", member("t2", "carol")),
		create("C", "team_members", "m2a", member("t2", "alice")),
		named("carol makes t2 with alice", syncStep("C")),
		named("alice gets t2", syncStep("A", M{"expectPull": M{"tables": M{"teams": tc(ids("t2"), ids("t1"), nil), "team_members": tc(ids("m2a", "m2c"), ids("m1a", "m1b"), nil)}}})),
		create("A", "tasks", "k", teamTask("t1", "Travels")),
		create("B", "tasks", "kb", teamTask("t1", "Bob's")),
		syncStep("A"),
		named("bob gets t1 and the task", syncStep("B", M{"expectPull": M{"tables": M{"teams": tc(ids("t1"), nil, nil), "tasks": tc(ids("k"), nil, nil)}}})),
		named("carol sees nothing of t1", syncStep("C", M{"expectPull": M{"tables": M{"teams": tc(nil, ids("t2"), nil), "tasks": none}}})),
		update("A", "tasks", "k", M{"team_id": "t2", "name": "Travels (moved)"}),
		named("alice moves the task to t2 (and gets bob's)", syncStep("A", M{"expectPull": M{"tables": M{"tasks": tc(ids("kb"), ids("k"), nil)}}})),
		expect("A", "tasks", synced("k", M{"team_id": "t2"}), synced("kb", M{"team_id": "t1"})),
		named("bob's device deletes it", syncStep("B", M{"expectPull": M{"tables": M{"tasks": tc(nil, ids("kb"), ids("k"))}}})),
		expect("B", "tasks", synced("kb", nil)),
		named("carol's device gets it as created", syncStep("C", M{"expectPull": M{"tables": M{"tasks": tc(ids("k"), nil, nil)}}})),
		expect("C", "tasks", synced("k", M{"team_id": "t2", "name": "Travels (moved)"})),
		named("alice gets her own move back", syncStep("A", M{"expectPull": M{"tables": M{"tasks": tc(nil, ids("k"), nil)}}})),
		// Bob moves his own task into t2: refused, his copy stays unsynced, nothing leaks.
		update("B", "tasks", "kb", M{"team_id": "t2"}),
		named("bob's move into t2 is refused", syncStep("B", M{"expectLog": M{"rejectedIds": M{"tasks": anyOrder("kb")}}})),
		expect("B", "tasks", rec("kb", M{"_status": "updated", "team_id": "t2"})),
		named("carol does not get bob's task", syncStep("C", M{"expectPull": M{"tables": M{"tasks": none}}})),
		expect("C", "tasks", synced("k", nil)),
		syncStep("A"),
		expect("A", "tasks", synced("k", M{"team_id": "t2"}), synced("kb", M{"team_id": "t1"})),
	}
	res := run(t, srv, M{
		"tokens":  M{"alice": alice, "bob": bob, "carol": carol},
		"clients": M{"A": M{"user": "alice"}, "B": M{"user": "bob"}, "C": M{"user": "carol"}},
		"steps":   steps,
	}, nil)
	res.logSyncTimes(t)
}

// 3. The public tags table: rows the backend writes with plain SQL reach every user;
// a client's create, update and delete of tags are refused per record, and other
// records of the same push apply. Plain SQL needs a store that syncs it (PostgreSQL
// here); on other stores the scenario checks the refusals only.
func scenarioPublicTable(t *testing.T, st store) {
	srv := newTeamsServer(t, st)
	alice, bob := srv.token("alice"), srv.token("bob")
	plainSQL := st.name == "postgres"
	var steps []M
	if plainSQL {
		steps = append(steps,
			M{"op": "checkpoint", "name": "insert-tags"},
			named("alice reads the backend's tags", syncStep("A", M{"expectPull": M{"tables": M{"tags": tc(ids("tag1", "tag2"), nil, nil)}}})),
			named("bob reads them too", syncStep("B", M{"expectPull": M{"tables": M{"tags": tc(ids("tag1", "tag2"), nil, nil)}}})),
			expect("B", "tags", synced("tag1", M{"name": "Urgent", "color": "#d00"}), synced("tag2", M{"name": "Later", "color": nil})),
			update("A", "tags", "tag1", M{"name": "alice renames it"}),
			markAsDeleted("A", "tags", "tag2"),
		)
	}
	steps = append(steps,
		create("A", "tags", "tag_a", M{"name": "alice's own tag"}),
		create("A", "notes", "n1", M{"body": "a note", "task_id": nil}),
	)
	refused := []string{"tag_a"}
	if plainSQL {
		refused = []string{"tag_a", "tag1", "tag2"}
	}
	steps = append(steps,
		named("alice's writes to tags are refused, her note applies", syncStep("A", M{"expectLog": M{"rejectedIds": M{"tags": anyOrder(refused...)}}})),
		expect("A", "notes", synced("n1", nil)),
		expectSome("A", "tags", append([]M{rec("tag_a", M{"_status": "created"})}, map[bool][]M{true: {rec("tag1", M{"_status": "updated", "name": "alice renames it"})}}[plainSQL]...)...),
	)
	if plainSQL {
		steps = append(steps,
			M{"op": "checkpoint", "name": "update-tags"},
			named("the backend's update reaches bob", syncStep("B", M{"expectPull": M{"tables": M{"tags": tc(nil, ids("tag1"), ids("tag2"))}}})),
			expect("B", "tags", synced("tag1", M{"name": "Urgent!", "color": "#d00"})),
		)
	}
	steps = append(steps,
		named("bob never sees alice's tag or note", syncStep("B")),
		M{"op": "http", "method": "POST", "path": "/api/sync/pull", "headers": bearer(bob),
			"body": M{"lastPulledAt": nil, "schemaVersion": 1, "migration": nil}, "expectStatus": 200,
			"expectBodyNotContains": []string{"tag_a", "alice's own tag", "a note", "alice renames it"}},
	)
	checkpoint := func(name string) (M, error) {
		var sql string
		switch name {
		case "insert-tags":
			sql = `INSERT INTO tags (id, __owner, name, color) VALUES ('tag1', 'backend', 'Urgent', '#d00'), ('tag2', 'backend', 'Later', NULL)`
		case "update-tags":
			sql = `UPDATE tags SET name = 'Urgent!' WHERE id = 'tag1'; DELETE FROM tags WHERE id = 'tag2'`
		default:
			return nil, fmt.Errorf("unknown checkpoint %q", name)
		}
		out, err := exec.Command("psql", srv.db, "-v", "ON_ERROR_STOP=1", "-qc", sql).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("psql: %v: %s", err, out)
		}
		return M{}, nil
	}
	res := run(t, srv, M{
		"tokens":  M{"alice": alice, "bob": bob},
		"clients": M{"A": M{"user": "alice"}, "B": M{"user": "bob"}},
		"steps":   steps,
	}, checkpoint)
	res.logSyncTimes(t)
	if !plainSQL {
		t.Log("this store does not sync plain SQL writes here: only the refusals were checked")
	}
}

// expectSome checks these records of a client's table, allowing others.
func expectSome(client, table string, records ...M) M {
	step := expect(client, table, records...)
	step["exact"] = false
	return step
}
