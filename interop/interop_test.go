package interop

// Issue 6's scenarios: the real WatermelonDB client (0.28.0, LokiJS adapter, in Node)
// syncs with "melonsync serve", on SQLite and (with MELONSYNC_TEST_POSTGRES) PostgreSQL.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------------------
// Step builders

func create(client, table, id string, values M) M {
	return M{"op": "create", "client": client, "table": table, "id": id, "values": values}
}

func update(client, table, id string, values M) M {
	return M{"op": "update", "client": client, "table": table, "id": id, "values": values}
}

func markAsDeleted(client, table, id string) M {
	return M{"op": "markAsDeleted", "client": client, "table": table, "id": id}
}

// syncStep syncs a client; opts are merged in (expectPull, expectPush, expectError, …).
func syncStep(client string, opts ...M) M {
	s := M{"op": "sync", "client": client}
	for _, o := range opts {
		for k, v := range o {
			s[k] = v
		}
	}
	return s
}

// expect checks a table of a client exactly: these records and no others.
func expect(client, table string, records ...M) M {
	if records == nil {
		records = []M{}
	}
	return M{"op": "expect", "client": client, "table": table, "records": records}
}

func converged(clients ...string) M {
	return M{"op": "expectConverged", "clients": clients}
}

func named(name string, step M) M {
	step["name"] = name
	return step
}

func synced(id string, values M) M {
	r := M{"id": id, "_status": "synced", "_changed": ""}
	for k, v := range values {
		r[k] = v
	}
	return r
}

func rec(id string, values M) M {
	r := M{"id": id}
	for k, v := range values {
		r[k] = v
	}
	return r
}

// tc is one table's changes as the driver summarizes them (ids, sorted).
func tc(created, updated, deleted []string) M {
	n := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return M{"created": n(created), "updated": n(updated), "deleted": n(deleted)}
}

func ids(s ...string) []string { return s }

// anyOrder matches an array holding these values in any order.
func anyOrder(s ...string) M { return M{"$set": s} }

var none = tc(nil, nil, nil)

func task(project, name string, done bool, position int) M {
	return M{"project_id": project, "name": name, "is_done": done, "position": position}
}

func project(name string, fav bool, position int) M {
	return M{"name": name, "is_favorite": fav, "position": position}
}

// ---------------------------------------------------------------------------------------
// Stores and the test entry point

var scenarios = []scenario{
	{"1_first_and_incremental_sync", scenarioFirstAndIncremental},
	{"2_conflict_then_merge", scenarioConflict},
	{"3_lost_delete", scenarioLostDelete},
	{"4_update_deleted_delete_updated", scenarioUpdateVsDelete},
	{"5_migration_sync", scenarioMigration},
	{"6_per_user_isolation", scenarioIsolation},
	{"7_replacement_sync", scenarioReplacement},
	{"8_go_client_converges", scenarioGoClient},
	{"9_large_first_sync", scenarioLarge},
	{"10_concurrent_syncs_converge", scenarioConcurrent},
	{"11_lost_push_response", scenarioLostPushResponse},
}

func TestWatermelonDB(t *testing.T) { runScenarios(t, scenarios) }

// newServer starts a server with the todo example schema on a fresh store of st.
func newServer(t *testing.T, st store, args ...string) *server {
	t.Helper()
	return newServerSchema(t, st, filepath.Join("..", "examples", "todo", "schema.json"), args...)
}

func bearer(tok string) M { return M{"Authorization": "Bearer " + tok} }

// ---------------------------------------------------------------------------------------
// 1. First sync of a populated server; incremental syncs both ways between two clients.

func scenarioFirstAndIncremental(t *testing.T, st store) {
	srv := newServer(t, st)
	alice := srv.token("alice")
	seed := M{
		"projects": M{"created": []M{rec("p1", project("Home", true, 1)), rec("p2", project("Work", false, 2))}, "updated": []M{}, "deleted": []M{}},
		"tasks": M{"created": []M{
			rec("t1", M{"project_id": "p1", "name": "Buy milk", "is_done": false, "position": 1, "description": "first"}),
			rec("t2", task("p1", "Walk dog", true, 2)),
			rec("t3", task("p2", "Report", false, 3)),
			rec("t4", task("p2", "Call Bob", false, 4)),
		}, "updated": []M{}, "deleted": []M{}},
	}
	allTasks := func(client string, t1name string, t1done bool) []M {
		return []M{
			synced("t1", M{"project_id": "p1", "name": t1name, "is_done": t1done, "position": 1, "description": "first"}),
			synced("t2", M{"project_id": "p1", "name": "Walk dog", "is_done": true, "position": 2, "description": nil}),
			synced("t3", M{"project_id": "p2", "name": "Report", "is_done": false, "position": 3, "description": nil}),
			synced("t4", M{"project_id": "p2", "name": "Call Bob", "is_done": false, "position": 4, "description": nil}),
		}
	}
	steps := []M{
		named("populate", M{"op": "http", "method": "POST", "path": "/api/sync/push", "headers": merge(bearer(alice), M{"X-Melon-Device": "importer"}),
			"body": M{"changes": seed, "lastPulledAt": 0}, "expectStatus": 200, "expectJSON": M{"ok": true, "timestamp": "$any"}}),
		named("A first sync", syncStep("A", M{
			"expectPull": M{"tables": M{"projects": tc(ids("p1", "p2"), nil, nil), "tasks": tc(ids("t1", "t2", "t3", "t4"), nil, nil), "comments": none}},
			"expectPush": nil, "expectLog": M{"remoteChangeCount": 6, "lastPulledAt": nil},
		})),
		expect("A", "projects", synced("p1", project("Home", true, 1)), synced("p2", project("Work", false, 2))),
		{"op": "expect", "client": "A", "table": "tasks", "records": allTasks("A", "Buy milk", false)},
		named("B first sync", syncStep("B", M{"expectLog": M{"remoteChangeCount": 6}})),
		{"op": "expect", "client": "B", "table": "tasks", "records": allTasks("B", "Buy milk", false)},
		// A changes things locally; WatermelonDB tracks them.
		create("A", "tasks", "t5", task("p2", "New from A", false, 5)),
		update("A", "tasks", "t1", M{"name": "Buy oat milk", "is_done": true}),
		markAsDeleted("A", "tasks", "t2"),
		expect("A", "tasks",
			rec("t1", M{"_status": "updated", "_changed": "name,is_done", "name": "Buy oat milk"}),
			rec("t2", M{"_status": "deleted"}),
			rec("t3", M{"_status": "synced"}), rec("t4", M{"_status": "synced"}),
			rec("t5", M{"_status": "created", "name": "New from A"})),
		named("A pushes", syncStep("A", M{
			"expectPull": M{"count": 0},
			"expectPush": M{"tables": M{"tasks": tc(ids("t5"), ids("t1"), ids("t2")), "projects": none, "comments": none}},
		})),
		expect("A", "tasks",
			synced("t1", M{"name": "Buy oat milk", "is_done": true}), synced("t3", nil), synced("t4", nil),
			synced("t5", M{"name": "New from A", "project_id": "p2", "position": 5})),
		named("B pulls A's changes", syncStep("B", M{
			"expectPull": M{"tables": M{"tasks": tc(ids("t5"), ids("t1"), ids("t2")), "projects": none}},
			"expectPush": nil,
		})),
		expect("B", "tasks",
			synced("t1", M{"name": "Buy oat milk", "is_done": true, "description": "first"}), synced("t3", nil), synced("t4", nil),
			synced("t5", M{"name": "New from A", "project_id": "p2", "position": 5, "is_done": false})),
		// And the other way round.
		update("B", "projects", "p1", M{"name": "Home (B)"}),
		create("B", "projects", "p3", project("Garden", false, 3)),
		update("B", "tasks", "t3", M{"position": 30}),
		markAsDeleted("B", "tasks", "t4"),
		named("B pushes", syncStep("B", M{"expectPush": M{"tables": M{"projects": tc(ids("p3"), ids("p1"), nil), "tasks": tc(nil, ids("t3"), ids("t4"))}}})),
		// A's own earlier push comes back (as updated: A created t5), with B's changes.
		named("A pulls B's changes", syncStep("A", M{
			"expectPull": M{"tables": M{"projects": tc(ids("p3"), ids("p1"), nil), "tasks": tc(nil, ids("t1", "t3", "t5"), ids("t2", "t4"))}},
			"expectPush": nil,
		})),
		named("A again: nothing new", syncStep("A", M{"expectPull": M{"count": 0}, "expectPush": nil})),
		syncStep("B"),
		expect("A", "projects", synced("p1", project("Home (B)", true, 1)), synced("p2", nil), synced("p3", project("Garden", false, 3))),
		expect("A", "tasks", synced("t1", nil), synced("t3", M{"position": 30}), synced("t5", nil)),
		converged("A", "B"),
		// C speaks WatermelonDB's docs' endpoint form (GET/POST /sync).
		named("C first sync over /sync", syncStep("C", M{"expectPull": M{"tables": M{"projects": tc(ids("p1", "p2", "p3"), nil, nil), "tasks": tc(ids("t1", "t3", "t5"), nil, nil)}}})),
		update("C", "tasks", "t5", M{"is_done": true}),
		named("C pushes over /sync", syncStep("C", M{"expectPush": M{"tables": M{"tasks": tc(nil, ids("t5"), nil)}}})),
		syncStep("A"), syncStep("B"), syncStep("C"),
		expect("B", "tasks", synced("t1", nil), synced("t3", nil), synced("t5", M{"is_done": true})),
		converged("A", "B", "C"),
		// Values that must survive the round trip untouched; D sends gzipped bodies.
		create("A", "tasks", "t6", M{"project_id": "p3", "name": "Zürich ☕ 🍉 \"quoted\" \\ back\u2028slash", "position": 2.75, "description": "line 1\nline 2\t<&>"}),
		create("A", "projects", "p4", M{"name": "", "is_favorite": false, "position": -1e15}),
		syncStep("A"),
		named("D first sync, gzip both ways", syncStep("D", M{"expectPull": M{"tables": M{"projects": tc(ids("p1", "p2", "p3", "p4"), nil, nil), "tasks": tc(ids("t1", "t3", "t5", "t6"), nil, nil)}}})),
		expect("D", "tasks", synced("t1", nil), synced("t3", nil), synced("t5", nil),
			synced("t6", M{"name": "Zürich ☕ 🍉 \"quoted\" \\ back\u2028slash", "position": 2.75, "description": "line 1\nline 2\t<&>"})),
		update("D", "tasks", "t6", M{"is_done": true}),
		named("D pushes gzipped", syncStep("D", M{"expectPush": M{"tables": M{"tasks": tc(nil, ids("t6"), nil)}}})),
		syncStep("A"), syncStep("B"), syncStep("C"),
		converged("A", "B", "C", "D"),
		// E follows the sync guide's own examples: GET /api/sync/pull?since=….
		named("E first sync, the guide's GET form", syncStep("E", M{"expectPull": M{"tables": M{"projects": tc(ids("p1", "p2", "p3", "p4"), nil, nil), "tasks": tc(ids("t1", "t3", "t5", "t6"), nil, nil)}}})),
		update("E", "projects", "p4", M{"name": "from the guide"}),
		named("E pushes as the guide does", syncStep("E", M{"expectPush": M{"tables": M{"projects": tc(nil, ids("p4"), nil)}}})),
		update("A", "tasks", "t1", M{"position": 11}),
		syncStep("A"),
		named("E incremental over GET", syncStep("E", M{"expectPull": M{"tables": M{"tasks": tc(nil, ids("t1"), nil)}}, "expectPush": nil})),
		syncStep("B"), syncStep("C"), syncStep("D"),
		converged("A", "B", "C", "D", "E"),
		// F syncs through js/melonsync.js, gzipping every push (CompressionStream).
		named("F first sync, the JS helper", syncStep("F", M{"expectPull": M{"tables": M{"projects": tc(ids("p1", "p2", "p3", "p4"), nil, nil), "tasks": tc(ids("t1", "t3", "t5", "t6"), nil, nil)}}})),
		update("F", "tasks", "t3", M{"name": "Report, via the helper"}),
		create("F", "tasks", "t7", task("p1", "From F", false, 7)),
		named("F pushes gzipped", syncStep("F", M{"expectPush": M{"tables": M{"tasks": tc(ids("t7"), ids("t3"), nil)}}})),
		syncStep("A"), syncStep("B"), syncStep("C"), syncStep("D"), syncStep("E"),
		converged("A", "B", "C", "D", "E", "F"),
	}
	res := run(t, srv, M{
		"tokens": M{"alice": alice},
		"clients": M{"A": M{"user": "alice"}, "B": M{"user": "alice"}, "C": M{"user": "alice", "protocol": "docs"}, "D": M{"user": "alice", "gzipRequests": true}, "E": M{"user": "alice", "protocol": "guide"},
			"F": M{"user": "alice", "protocol": "helper", "gzipRequests": true}},
		"steps": steps,
	}, nil)
	res.logSyncTimes(t)
}

func merge(ms ...M) M {
	out := M{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// ---------------------------------------------------------------------------------------
// 2. B changes a record between A's pull and push → A's push gets 409 → A syncs again and
// ends with the per-column merge (A's changed columns win).

func scenarioConflict(t *testing.T, st store) {
	srv := newServer(t, st)
	steps := []M{
		create("A", "projects", "p1", project("Home", false, 1)),
		create("A", "tasks", "t1", M{"project_id": "p1", "name": "original", "is_done": false, "position": 1, "description": "orig"}),
		create("A", "tasks", "t2", task("p1", "bystander", false, 2)),
		syncStep("A"), syncStep("B"),
		update("A", "tasks", "t1", M{"name": "A's name"}),
		update("A", "tasks", "t2", M{"position": 20}),
		named("A's push conflicts", syncStep("A", M{
			"beforePush": []M{
				update("B", "tasks", "t1", M{"is_done": true, "position": 5, "name": "B's name"}),
				syncStep("B", M{"expectPush": M{"tables": M{"tasks": tc(nil, ids("t1"), nil)}}}),
			},
			"expectPush":  M{"tables": M{"tasks": tc(nil, ids("t1", "t2"), nil)}},
			"expectError": []string{"melonsync push: 409 conflict", `"conflicts":{"tasks":["t1"]}`},
		})),
		// Nothing of the refused push was applied, and A's local changes are intact.
		expect("A", "tasks",
			rec("t1", M{"_status": "updated", "_changed": "name", "name": "A's name", "is_done": false, "position": 1}),
			rec("t2", M{"_status": "updated", "_changed": "position", "position": 20})),
		named("A syncs again", syncStep("A", M{
			"expectPull": M{"tables": M{"tasks": tc(nil, ids("t1"), nil)}},
			"expectPush": M{"tables": M{"tasks": tc(nil, ids("t1", "t2"), nil)}},
			"expectLog": M{"resolvedConflicts": []M{{
				"local":    M{"id": "t1", "name": "A's name", "is_done": false},
				"remote":   M{"id": "t1", "name": "B's name", "is_done": true, "position": 5},
				"resolved": M{"id": "t1", "name": "A's name", "is_done": true, "position": 5, "description": "orig"},
			}}},
		})),
		expect("A", "tasks",
			synced("t1", M{"name": "A's name", "is_done": true, "position": 5, "description": "orig"}),
			synced("t2", M{"position": 20, "name": "bystander"})),
		named("B gets the merge", syncStep("B", M{"expectPull": M{"tables": M{"tasks": tc(nil, ids("t1", "t2"), nil)}}})),
		expect("B", "tasks",
			synced("t1", M{"name": "A's name", "is_done": true, "position": 5, "description": "orig"}),
			synced("t2", M{"position": 20})),
		converged("A", "B"),
	}
	res := run(t, srv, M{
		"tokens": M{"alice": srv.token("alice")},
		// Both sync through js/melonsync.js, the helper the README gives apps.
		"clients": M{"A": M{"user": "alice", "protocol": "helper"}, "B": M{"user": "alice", "protocol": "helper"}},
		"steps":   steps,
	}, nil)
	res.logSyncTimes(t)
}

// ---------------------------------------------------------------------------------------
// 3. The lost-delete trap (WatermelonDB#649): A creates and pushes records, deletes one,
// syncs again — the deletion reaches the server and B.

func scenarioLostDelete(t *testing.T, st store) {
	for _, v := range []struct {
		name              string
		device, asUpdated bool
	}{
		{"device", true, false},
		{"device_sendCreatedAsUpdated", true, true},
		{"no_device", false, false},
		{"no_device_sendCreatedAsUpdated", false, true},
	} {
		t.Run(v.name, func(t *testing.T) {
			srv := newServer(t, st)
			alice := srv.token("alice")
			client := M{"user": "alice", "sendDeviceHeader": v.device, "sendCreatedAsUpdated": v.asUpdated}
			// Records another device created after B's last pull: "created" for B, or
			// "updated" with sendCreatedAsUpdated.
			fresh := func(created ...string) M {
				if v.asUpdated {
					return tc(nil, created, nil)
				}
				return tc(created, nil, nil)
			}
			bIncremental := M{"expectPull": M{"tables": M{"projects": fresh("ld-p"), "tasks": fresh("ld-x1", "ld-x2")}}}
			if !v.device && !v.asUpdated {
				// Without X-Melon-Device the server can only tell users apart (SPEC §3
				// pull rule 4): B gets A's new records as "updated", which WatermelonDB
				// reports (and then creates them). That is the documented price of not
				// sending the header; the lost delete is what matters here.
				bIncremental = M{
					"expectPull": M{"tables": M{"projects": tc(nil, ids("ld-p"), nil), "tasks": tc(nil, ids("ld-x1", "ld-x2"), nil)}},
					"allowLogs":  []string{"but it doesn't exist locally"},
				}
			}
			steps := []M{
				named("B first sync (empty)", syncStep("B", M{"expectPull": M{"count": 0}})),
				create("A", "projects", "ld-p", project("P", false, 1)),
				create("A", "tasks", "ld-x1", task("ld-p", "doomed", false, 1)),
				create("A", "tasks", "ld-x2", task("ld-p", "kept", false, 2)),
				named("A pushes creations", syncStep("A", M{"expectPush": M{"tables": M{"projects": tc(ids("ld-p"), nil, nil), "tasks": tc(ids("ld-x1", "ld-x2"), nil, nil)}}})),
				named("B pulls them", syncStep("B", bIncremental)),
				markAsDeleted("A", "tasks", "ld-x1"),
				expect("A", "tasks", rec("ld-x1", M{"_status": "deleted"}), synced("ld-x2", nil)),
				// The trap: A's own creations come back in this pull. As "created" they
				// would resurrect ld-x1 (WatermelonDB logs an error, the driver fails).
				named("A pushes the deletion", syncStep("A", M{
					"expectPull": M{"tables": M{"projects": tc(nil, ids("ld-p"), nil), "tasks": tc(nil, ids("ld-x1", "ld-x2"), nil)}},
					"expectPush": M{"tables": M{"tasks": tc(nil, nil, ids("ld-x1"))}},
				})),
				expect("A", "tasks", synced("ld-x2", M{"name": "kept"})),
				named("A once more", syncStep("A", M{"expectPush": nil})),
				expect("A", "tasks", synced("ld-x2", M{"name": "kept"})),
				named("B pulls the deletion", syncStep("B", M{"expectPull": M{"tables": M{"tasks": tc(nil, nil, ids("ld-x1"))}}})),
				expect("B", "tasks", synced("ld-x2", M{"name": "kept"})),
				named("C first sync", syncStep("C")),
				expect("C", "tasks", synced("ld-x2", M{"name": "kept"})),
				// The server itself no longer has it.
				{"op": "http", "method": "POST", "path": "/api/sync/pull", "headers": bearer(alice),
					"body": M{"lastPulledAt": nil, "schemaVersion": 3, "migration": nil}, "expectStatus": 200,
					"expectBodyContains": []string{`"ld-x2"`}, "expectBodyNotContains": []string{`"ld-x1"`}},
				converged("A", "B", "C"),
			}
			res := run(t, srv, M{
				"tokens":  M{"alice": alice},
				"clients": M{"A": client, "B": client, "C": client},
				"steps":   steps,
			}, nil)
			res.logSyncTimes(t)
		})
	}
}

// ---------------------------------------------------------------------------------------
// 4. Update of a record deleted on the server; delete of a record updated on the server.

func scenarioUpdateVsDelete(t *testing.T, st store) {
	srv := newServer(t, st)
	steps := []M{
		create("A", "projects", "p1", project("P", false, 1)),
		create("A", "tasks", "t1", task("p1", "one", false, 1)),
		create("A", "tasks", "t2", task("p1", "two", false, 2)),
		create("A", "tasks", "t3", task("p1", "three", false, 3)),
		create("A", "tasks", "t4", task("p1", "four", false, 4)),
		syncStep("A"), syncStep("B"),

		// (a) A updates t1 while B deletes it on the server between A's pull and push.
		update("A", "tasks", "t1", M{"name": "one, edited by A"}),
		named("a: A's update of a deleted record conflicts", syncStep("A", M{
			"beforePush":  []M{markAsDeleted("B", "tasks", "t1"), syncStep("B", M{"expectPush": M{"tables": M{"tasks": tc(nil, nil, ids("t1"))}}})},
			"expectPush":  M{"tables": M{"tasks": tc(nil, ids("t1"), nil)}},
			"expectError": []string{"409 conflict", `"t1"`},
		})),
		named("a: A pulls the deletion", syncStep("A", M{"expectPull": M{"tables": M{"tasks": tc(nil, nil, ids("t1"))}}, "expectPush": nil})),
		expect("A", "tasks", synced("t2", nil), synced("t3", nil), synced("t4", nil)),

		// (b) A deletes t2 while B updates it on the server between A's pull and push.
		markAsDeleted("A", "tasks", "t2"),
		named("b: A's delete of an updated record conflicts", syncStep("A", M{
			"beforePush":  []M{update("B", "tasks", "t2", M{"name": "two, edited by B"}), syncStep("B")},
			"expectPush":  M{"tables": M{"tasks": tc(nil, nil, ids("t2"))}},
			"expectError": []string{"409 conflict", `"t2"`},
		})),
		expect("A", "tasks", rec("t2", M{"_status": "deleted"}), synced("t3", nil), synced("t4", nil)),
		// The local deletion survives the pulled update and is pushed.
		named("b: A syncs again", syncStep("A", M{
			"expectPull": M{"tables": M{"tasks": tc(nil, ids("t2"), nil)}},
			"expectPush": M{"tables": M{"tasks": tc(nil, nil, ids("t2"))}},
		})),
		expect("A", "tasks", synced("t3", nil), synced("t4", nil)),
		named("b: B pulls the deletion", syncStep("B", M{"expectPull": M{"tables": M{"tasks": tc(nil, nil, ids("t2"))}}})),
		expect("B", "tasks", synced("t3", nil), synced("t4", nil)),

		// (c) B updates t3 and syncs; A, not yet aware, deletes it and syncs: A's deletion wins.
		update("B", "tasks", "t3", M{"name": "three, edited by B"}),
		syncStep("B"),
		markAsDeleted("A", "tasks", "t3"),
		// A's own deletion of t2 comes back with B's update of t3.
		named("c: A deletes a record updated on the server", syncStep("A", M{
			"expectPull": M{"tables": M{"tasks": tc(nil, ids("t3"), ids("t2"))}},
			"expectPush": M{"tables": M{"tasks": tc(nil, nil, ids("t3"))}},
		})),

		// (d) B deletes t4 and syncs; A updates it and syncs: the server's deletion wins.
		markAsDeleted("B", "tasks", "t4"),
		syncStep("B"),
		update("A", "tasks", "t4", M{"name": "four, edited by A"}),
		named("d: A updates a record deleted on the server", syncStep("A", M{
			"expectPull": M{"tables": M{"tasks": tc(nil, nil, ids("t3", "t4"))}},
			"expectPush": nil,
		})),
		expect("A", "tasks"),
		syncStep("B"),
		expect("B", "tasks"),
		converged("A", "B"),
	}
	res := run(t, srv, M{
		"tokens":  M{"alice": srv.token("alice")},
		"clients": M{"A": M{"user": "alice"}, "B": M{"user": "alice"}},
		"steps":   steps,
	}, nil)
	res.logSyncTimes(t)
}

// ---------------------------------------------------------------------------------------
// 5. Migration sync: a client at schema version 1 syncs, upgrades to version 3 (new table
// comments at 2, new column tasks.description at 3), syncs again, and receives the rows of
// the new table and the values of the new column.

func scenarioMigration(t *testing.T, st store) {
	srv := newServer(t, st)
	steps := []M{
		create("S", "projects", "p1", project("P", false, 1)),
		create("S", "tasks", "t1", M{"project_id": "p1", "name": "one", "description": "d1"}),
		create("S", "tasks", "t2", M{"project_id": "p1", "name": "two"}),
		create("S", "comments", "c1", M{"task_id": "t1", "body": "hello"}),
		syncStep("S"),
		// Version 1 knows neither comments nor tasks.description.
		named("A first sync at v1", syncStep("A", M{
			"expectPull": M{"tables": M{"projects": tc(ids("p1"), nil, nil), "tasks": tc(ids("t1", "t2"), nil, nil), "comments": "$absent"}},
			"expectLog":  M{"migration": nil},
		})),
		expect("A", "tasks", synced("t1", M{"name": "one", "description": "$absent"}), synced("t2", M{"name": "two"})),
		// An old client's pushes must not wipe the column it does not know.
		update("A", "tasks", "t1", M{"name": "one (v1 edit)"}),
		create("A", "tasks", "t3", M{"project_id": "p1", "name": "from v1"}),
		named("A pushes at v1", syncStep("A", M{"expectPush": M{"tables": M{"tasks": tc(ids("t3"), ids("t1"), nil)}}})),
		syncStep("S"),
		expect("S", "tasks",
			synced("t1", M{"name": "one (v1 edit)", "description": "d1"}),
			synced("t2", M{"description": nil}),
			synced("t3", M{"name": "from v1", "description": nil})),
		update("S", "tasks", "t2", M{"description": "d2"}),
		create("S", "comments", "c2", M{"task_id": "t3", "body": "on t3"}),
		syncStep("S"),
		// A's own pushes (t1, t3) come back with S's edit of t2, all as updated.
		named("A incremental at v1", syncStep("A", M{"expectPull": M{"tables": M{"tasks": tc(nil, ids("t1", "t2", "t3"), nil), "comments": "$absent"}}})),
		// The app update: WatermelonDB migrates the local database to version 3.
		M{"op": "upgradeSchema", "client": "A", "version": 3},
		expect("A", "tasks", synced("t1", M{"description": nil}), synced("t2", M{"description": nil}), synced("t3", M{"description": nil})),
		expect("A", "comments"),
		named("A migration sync", syncStep("A", M{
			"expectLog": M{"migration": M{"from": 1, "tables": []string{"comments"}, "columns": []M{{"table": "tasks", "columns": []string{"description"}}}}},
			"expectPull": M{"tables": M{
				"projects": none,
				"tasks":    tc(nil, ids("t1", "t2"), nil),
				"comments": tc(ids("c1", "c2"), nil, nil),
			}},
			"expectPush": nil,
		})),
		expect("A", "tasks",
			synced("t1", M{"name": "one (v1 edit)", "description": "d1"}),
			synced("t2", M{"description": "d2"}),
			synced("t3", M{"description": nil})),
		expect("A", "comments", synced("c1", M{"task_id": "t1", "body": "hello"}), synced("c2", M{"task_id": "t3", "body": "on t3"})),
		converged("A", "S"),
		named("A after the migration", syncStep("A", M{"expectLog": M{"migration": nil}, "expectPull": M{"count": 0}})),
		// At version 3 A writes the new table and column.
		create("A", "comments", "c3", M{"task_id": "t2", "body": "from A"}),
		update("A", "tasks", "t3", M{"description": "d3"}),
		syncStep("A"), syncStep("S"),
		converged("A", "S"),
		// A client at version 2 has comments but not tasks.description: its migration
		// sync to 3 brings only the column's values.
		named("V2 first sync at v2", syncStep("V2", M{"expectPull": M{"tables": M{"projects": tc(ids("p1"), nil, nil), "tasks": tc(ids("t1", "t2", "t3"), nil, nil), "comments": tc(ids("c1", "c2", "c3"), nil, nil)}}})),
		expect("V2", "tasks", synced("t1", M{"description": "$absent"}), synced("t2", nil), synced("t3", nil)),
		M{"op": "upgradeSchema", "client": "V2", "version": 3},
		named("V2 migration sync", syncStep("V2", M{
			"expectLog":  M{"migration": M{"from": 2, "tables": []string{}, "columns": []M{{"table": "tasks", "columns": []string{"description"}}}}},
			"expectPull": M{"tables": M{"projects": none, "tasks": tc(nil, ids("t1", "t2", "t3"), nil), "comments": none}},
		})),
		converged("A", "S", "V2"),
	}
	res := run(t, srv, M{
		"tokens":  M{"alice": srv.token("alice")},
		"clients": M{"S": M{"user": "alice"}, "A": M{"user": "alice", "schemaVersion": 1}, "V2": M{"user": "alice", "schemaVersion": 2}},
		"steps":   steps,
	}, nil)
	res.logSyncTimes(t)
}

// ---------------------------------------------------------------------------------------
// 6. Per-user isolation: two users never see each other's records; a client that pushes
// another user's record id gets it rejected and keeps it unsynced.

func scenarioIsolation(t *testing.T, st store) {
	srv := newServer(t, st)
	alice, bob := srv.token("alice"), srv.token("bob")
	steps := []M{
		create("A1", "projects", "ap1", project("alice project", false, 1)),
		create("A1", "tasks", "at1", task("ap1", "alice secret", false, 1)),
		create("A1", "tasks", "at2", task("ap1", "alice other", false, 2)),
		syncStep("A1"),
		named("bob sees nothing", syncStep("B1", M{"expectPull": M{"count": 0}})),
		expect("B1", "projects"), expect("B1", "tasks"),
		create("B1", "projects", "bp1", project("bob project", false, 1)),
		create("B1", "tasks", "bt1", task("bp1", "bob task", false, 1)),
		syncStep("B1"),
		named("alice sees only hers", syncStep("A1", M{"expectPull": M{"tables": M{"projects": tc(nil, ids("ap1"), nil), "tasks": tc(nil, ids("at1", "at2"), nil)}}})),
		expect("A1", "tasks", synced("at1", nil), synced("at2", nil)),
		// Bob's client creates records with alice's ids.
		create("B1", "tasks", "at1", task("bp1", "bob hijack", true, 9)),
		create("B1", "projects", "ap1", project("bob's ap1", false, 9)),
		named("bob's push of alice's ids is rejected", syncStep("B1", M{
			"expectPush": M{"tables": M{"tasks": tc(ids("at1"), nil, nil), "projects": tc(ids("ap1"), nil, nil)}},
			"expectLog":  M{"rejectedIds": M{"tasks": anyOrder("at1"), "projects": anyOrder("ap1")}},
			// Only bob's own earlier push comes back: nothing of alice's.
			"expectPull": M{"tables": M{"projects": tc(nil, ids("bp1"), nil), "tasks": tc(nil, ids("bt1"), nil)}},
		})),
		expect("B1", "tasks", synced("bt1", nil), rec("at1", M{"_status": "created", "name": "bob hijack"})),
		expect("B1", "projects", synced("bp1", nil), rec("ap1", M{"_status": "created", "name": "bob's ap1"})),
		named("bob retries: still rejected, nothing of alice's comes back", syncStep("B1", M{
			"expectPull": M{"count": 0},
			"expectLog":  M{"rejectedIds": M{"tasks": anyOrder("at1"), "projects": anyOrder("ap1")}},
		})),
		expect("B1", "tasks", synced("bt1", nil), rec("at1", M{"_status": "created", "name": "bob hijack"})),
		// A raw push: update and delete alice's records.
		{"op": "http", "method": "POST", "path": "/api/sync/push", "headers": bearer(bob),
			"body": M{"lastPulledAt": 1, "changes": M{
				"tasks":    M{"created": []M{}, "updated": []M{rec("at2", M{"name": "bob overwrite"})}, "deleted": []string{"at1"}},
				"projects": M{"created": []M{}, "updated": []M{}, "deleted": []string{"ap1"}},
			}},
			"expectStatus": 200, "expectJSON": M{"ok": true, "experimentalRejectedIds": M{"tasks": anyOrder("at1", "at2"), "projects": anyOrder("ap1")}},
			"expectBodyNotContains": []string{"alice"}},
		{"op": "http", "method": "POST", "path": "/api/sync/pull", "headers": bearer(bob),
			"body": M{"lastPulledAt": nil, "schemaVersion": 3, "migration": nil}, "expectStatus": 200,
			"expectBodyContains": []string{"bob task"}, "expectBodyNotContains": []string{"alice", "at1", "at2", "ap1"}},
		named("alice's data is untouched", syncStep("A1")),
		expect("A1", "projects", synced("ap1", M{"name": "alice project"})),
		expect("A1", "tasks", synced("at1", M{"name": "alice secret", "is_done": false}), synced("at2", M{"name": "alice other"})),
		named("alice's second device", syncStep("A2", M{"expectPull": M{"tables": M{"projects": tc(ids("ap1"), nil, nil), "tasks": tc(ids("at1", "at2"), nil, nil)}}})),
		converged("A1", "A2"),
		expect("B1", "projects", synced("bp1", M{"name": "bob project"}), rec("ap1", M{"_status": "created"})),
	}
	res := run(t, srv, M{
		"tokens":  M{"alice": alice, "bob": bob},
		"clients": M{"A1": M{"user": "alice"}, "A2": M{"user": "alice"}, "B1": M{"user": "bob"}},
		"steps":   steps,
	}, nil)
	res.logSyncTimes(t)
}

// ---------------------------------------------------------------------------------------
// 7. Replacement sync: the server purged deletions that A never pulled, so it answers A
// with the full data set and "experimentalStrategy": "replacement"; A's unpushed
// changes are preserved as WatermelonDB documents.

func scenarioReplacement(t *testing.T, st store) {
	srv := newServer(t, st)
	steps := []M{
		create("A", "projects", "p1", project("P", false, 1)),
		create("A", "tasks", "t1", task("p1", "one", false, 1)),
		create("A", "tasks", "t2", task("p1", "two", false, 2)),
		create("A", "tasks", "t3", task("p1", "three", false, 3)),
		create("A", "tasks", "t4", task("p1", "four", false, 4)),
		create("A", "tasks", "t5", task("p1", "five", false, 5)),
		syncStep("A"), syncStep("B"),
		// B deletes two records and edits one; A does not pull that.
		markAsDeleted("B", "tasks", "t3"),
		markAsDeleted("B", "tasks", "t5"),
		update("B", "tasks", "t2", M{"name": "two (B)"}),
		syncStep("B"),
		// B pulls its own changes back, so its lastPulledAt is past the deletions.
		named("B past its deletions", syncStep("B", M{"expectPull": M{"tables": M{"tasks": tc(nil, ids("t2"), ids("t3", "t5"))}}})),
		// A's offline work.
		create("A", "tasks", "t9", task("p1", "nine (A)", false, 9)),
		update("A", "tasks", "t1", M{"name": "one (A offline)"}),
		markAsDeleted("A", "tasks", "t4"),
		update("A", "tasks", "t5", M{"name": "five (A, deleted on the server)"}),
		{"op": "sleep", "ms": 20},
		// The server restarts with a tiny tombstone retention and purges B's deletions.
		{"op": "checkpoint", "name": "purge"},
		named("A replacement sync", syncStep("A", M{
			"expectPull": M{"experimentalStrategy": "replacement", "tables": M{"tasks": M{"deleted": []string{}}}},
			// t9 (created) and t4 (deleted, still on the server) survive and are pushed,
			// with t1's update; t5's update is dropped with the record.
			"expectPush": M{"tables": M{"tasks": tc(ids("t9"), ids("t1"), ids("t4"))}},
		})),
		expect("A", "tasks",
			synced("t1", M{"name": "one (A offline)"}),
			synced("t2", M{"name": "two (B)"}),
			synced("t9", M{"name": "nine (A)"})),
		expect("A", "projects", synced("p1", nil)),
		named("B incremental", syncStep("B", M{"expectPull": M{"experimentalStrategy": "$absent", "tables": M{"tasks": tc(ids("t9"), ids("t1"), ids("t4"))}}})),
		expect("B", "tasks", synced("t1", M{"name": "one (A offline)"}), synced("t2", nil), synced("t9", nil)),
		syncStep("C"),
		converged("A", "B", "C"),
	}
	purged := false
	res := run(t, srv, M{
		"tokens":  M{"alice": srv.token("alice")},
		"clients": M{"A": M{"user": "alice"}, "B": M{"user": "alice"}, "C": M{"user": "alice"}},
		"steps":   steps,
	}, func(name string) (M, error) {
		if name != "purge" {
			return nil, fmt.Errorf("unknown checkpoint %q", name)
		}
		if err := srv.restart("--tombstone-retention", "1ms"); err != nil {
			return nil, err
		}
		// The purge runs right after the server starts listening.
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(srv.log.String(), "purged tombstones") {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("the restarted server logged no purge:\n%s", srv.logTail(10))
			}
			time.Sleep(20 * time.Millisecond)
		}
		purged = true
		return M{"url": srv.url()}, nil
	})
	if !purged && res.OK {
		t.Error("the purge checkpoint was never reached")
	}
	res.logSyncTimes(t)
}

// ---------------------------------------------------------------------------------------
// 8. A Go client and a WatermelonDB client syncing the same user's data converge. The Go
// client is driven through "melonsync client" between the WatermelonDB steps.

// goCLI runs "melonsync client" commands on one local database.
type goCLI struct {
	t                  *testing.T
	db, url, token, dv string
}

// run runs a command with --json and decodes its output into out (may be nil).
func (g *goCLI) run(out any, args ...string) error {
	args = append([]string{"client"}, args...)
	args = append(args, "--db", g.db, "--json")
	cmd := exec.Command(buildBin, args...)
	cmd.Env = append(os.Environ(), "MELONSYNC_URL=", "MELONSYNC_TOKEN=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("melonsync %s: %v\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	if out != nil {
		if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
			return fmt.Errorf("melonsync %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, stdout.String())
		}
	}
	return nil
}

type goSync struct {
	OK     bool   `json:"ok"`
	Pulled int    `json:"pulled"`
	Pushed int    `json:"pushed"`
	Error  string `json:"error"`
}

func (g *goCLI) sync(wantPulled, wantPushed int) error {
	var s goSync
	if err := g.run(&s, "sync", "--url", g.url, "--token", g.token, "--device", g.dv, "--progress", "off"); err != nil {
		return err
	}
	if !s.OK {
		return fmt.Errorf("Go client sync failed: %s", s.Error)
	}
	if wantPulled >= 0 && s.Pulled != wantPulled || wantPushed >= 0 && s.Pushed != wantPushed {
		return fmt.Errorf("Go client sync pulled %d and pushed %d records; want %d and %d", s.Pulled, s.Pushed, wantPulled, wantPushed)
	}
	return nil
}

func scenarioGoClient(t *testing.T, st store) {
	out, err := exec.Command(buildBin, "client", "help").CombinedOutput()
	if err != nil && strings.Contains(string(out), "not available") {
		t.Skipf("the Go client is not in this build (melonsync client help: %s)", strings.TrimSpace(string(out)))
	}
	if err != nil {
		t.Fatalf("melonsync client help: %v\n%s", err, out)
	}
	srv := newServer(t, st)
	alice := srv.token("alice")
	g := &goCLI{t: t, db: t.TempDir() + "/go-client.db", url: srv.url(), token: alice, dv: "go-device"}
	steps := []M{
		create("W", "projects", "p1", project("shared", false, 1)),
		create("W", "tasks", "t1", task("p1", "one", false, 1)),
		create("W", "tasks", "t2", task("p1", "two", false, 2)),
		syncStep("W"),
		{"op": "checkpoint", "name": "go-1"},
		named("W gets the Go client's changes", syncStep("W", M{"expectPull": M{"tables": M{"tasks": tc(ids("g-t3"), ids("t1"), ids("t2"))}}})),
		expect("W", "tasks",
			synced("t1", M{"name": "one (Go)", "is_done": false}),
			synced("g-t3", M{"name": "from Go", "project_id": "p1", "position": 3, "is_done": false, "description": "Go wrote this"})),
		update("W", "tasks", "g-t3", M{"is_done": true}),
		update("W", "tasks", "t1", M{"is_done": true}),
		create("W", "tasks", "t4", task("p1", "four", false, 4)),
		syncStep("W"),
		// W edits t4's name locally while the Go client edits its position.
		update("W", "tasks", "t4", M{"name": "four (W)"}),
		{"op": "checkpoint", "name": "go-2"},
		// W's own last push comes back too (all updated: W created t4 itself).
		named("W merges the Go client's edit", syncStep("W", M{
			"expectPull": M{"tables": M{"tasks": tc(nil, ids("g-t3", "t1", "t4"), nil)}},
			"expectPush": M{"tables": M{"tasks": tc(nil, ids("t4"), nil)}},
		})),
		expect("W", "tasks", synced("t1", nil), synced("g-t3", nil), synced("t4", M{"name": "four (W)", "position": 44})),
		{"op": "checkpoint", "name": "go-compare"},
	}
	checkpoint := func(name string) (M, error) {
		switch name {
		case "go-1":
			if err := g.run(nil, "init", "--schema", srv.schema); err != nil {
				return nil, err
			}
			if err := g.sync(3, 0); err != nil {
				return nil, err
			}
			for _, args := range [][]string{
				{"create", "tasks", "project_id=p1", "name=from Go", "position=3", "description=Go wrote this", "--id", "g-t3"},
				{"update", "tasks", "t1", "name=one (Go)"},
				{"delete", "tasks", "t2"},
			} {
				if err := g.run(nil, args...); err != nil {
					return nil, err
				}
			}
			return nil, g.sync(-1, 3)
		case "go-2":
			// Pulls g-t3 and t1 (updated by W) and t4 (created by W).
			if err := g.sync(-1, 0); err != nil {
				return nil, err
			}
			if err := g.run(nil, "update", "tasks", "t4", "position=44"); err != nil {
				return nil, err
			}
			return nil, g.sync(-1, 1)
		case "go-compare":
			if err := g.sync(-1, 0); err != nil {
				return nil, err
			}
			var status struct {
				Unsynced int `json:"unsyncedCount"`
			}
			if err := g.run(&status, "status"); err != nil {
				return nil, err
			}
			if status.Unsynced != 0 {
				return nil, fmt.Errorf("the Go client has %d unsynced changes", status.Unsynced)
			}
			// What the Go client holds, as checks on the WatermelonDB client.
			var checks []M
			total := 0
			for _, table := range []string{"projects", "tasks", "comments"} {
				var recs []M
				if err := g.run(&recs, "list", table); err != nil {
					return nil, err
				}
				total += len(recs)
				step := expect("W", table, recs...)
				step["name"] = "W holds what the Go client holds: " + table
				checks = append(checks, step)
			}
			if total != 4 {
				return nil, fmt.Errorf("the Go client holds %d records; want 4 (p1, t1, g-t3, t4)", total)
			}
			return M{"steps": checks}, nil
		}
		return nil, fmt.Errorf("unknown checkpoint %q", name)
	}
	res := run(t, srv, M{
		"tokens":  M{"alice": alice},
		"clients": M{"W": M{"user": "alice"}},
		"steps":   steps,
	}, checkpoint)
	res.logSyncTimes(t)
}

// ---------------------------------------------------------------------------------------
// 9. A large first sync: 50,000 records.

func scenarioLarge(t *testing.T, st store) {
	const n = 50000
	srv := newServer(t, st)
	alice := srv.token("alice")
	tasks := make([]M, n)
	for i := range tasks {
		tasks[i] = M{"id": fmt.Sprintf("big-%05d", i), "project_id": "bigp", "name": fmt.Sprintf("task number %d", i), "is_done": i%3 == 0, "position": i, "description": nil}
	}
	body := M{"lastPulledAt": 0, "changes": M{
		"projects": M{"created": []M{{"id": "bigp", "name": "big", "is_favorite": false, "position": 1}}, "updated": []M{}, "deleted": []M{}},
		"tasks":    M{"created": tasks, "updated": []M{}, "deleted": []M{}},
	}}
	start := time.Now()
	status, resp := postJSON(t, srv.url()+"/api/sync/push", alice, body)
	if status != 200 {
		t.Fatalf("seeding %d tasks: %d %s", n, status, resp)
	}
	seed := time.Since(start)
	steps := []M{
		named("first sync", syncStep("A", M{
			"expectPull": M{"count": n + 1, "tables": M{"tasks": M{"created": n, "updated": []string{}, "deleted": []string{}}}},
			"expectPush": nil,
		})),
		{"op": "expect", "client": "A", "table": "tasks", "count": n, "countStatus": "synced",
			"records": []M{synced("big-00000", M{"name": "task number 0", "is_done": true, "position": 0}), synced("big-49999", M{"name": "task number 49999", "is_done": false, "position": 49999})}},
		update("A", "tasks", "big-12345", M{"is_done": false}),
		named("incremental after it", syncStep("A", M{"expectPush": M{"tables": M{"tasks": tc(nil, ids("big-12345"), nil)}}})),
		expect("A", "projects", synced("bigp", nil)),
	}
	res := run(t, srv, M{
		"tokens":  M{"alice": alice},
		"clients": M{"A": M{"user": "alice"}},
		"steps":   steps,
	}, nil)
	if s := res.step("first sync"); s != nil && s.OK {
		t.Logf("50k first sync: %.0f ms in WatermelonDB's synchronize() (pull over HTTP %v ms, apply %v ms); seeding push %v", s.MS, s.Timing["pullMs"], s.Timing["applyMs"], seed.Round(time.Millisecond))
	}
	res.logSyncTimes(t)
}

func postJSON(t *testing.T, url, token string, body any) (int, string) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", url, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Melon-Device", "seeder")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if len(b) > 2000 {
		b = append(b[:2000], "…"...)
	}
	return res.StatusCode, string(b)
}

// ---------------------------------------------------------------------------------------
// 10. Four devices edit the same data and sync at the same time, round after round
// (pushes may conflict and are retried by the next sync); then they all converge, and a
// new device's first sync matches them.

func scenarioConcurrent(t *testing.T, st store) {
	srv := newServer(t, st)
	const devices, rounds, opsPerRound = 4, 20, 4
	rng := rand.New(rand.NewPCG(6, 2026))
	clients := M{}
	var names []string
	for i := 1; i <= devices; i++ {
		n := fmt.Sprintf("W%d", i)
		names = append(names, n)
		clients[n] = M{"user": "alice"}
	}
	clients["F"] = M{"user": "alice"}
	pool := []string{}
	steps := []M{create("W1", "projects", "cp", project("shared", false, 1))}
	for i := 0; i < 12; i++ {
		id := fmt.Sprintf("c-%02d", i)
		pool = append(pool, id)
		steps = append(steps, create("W1", "tasks", id, task("cp", id, false, i)))
	}
	steps = append(steps, syncStep("W1"))
	for _, n := range names[1:] {
		steps = append(steps, syncStep(n))
	}
	for r := 0; r < rounds; r++ {
		var branches [][]M
		for _, n := range names {
			for j := 0; j < opsPerRound; j++ {
				switch k := rng.IntN(10); {
				case k < 5:
					id := pool[rng.IntN(len(pool))]
					vals := []M{{"name": fmt.Sprintf("%s r%d", n, r)}, {"is_done": rng.IntN(2) == 0}, {"position": rng.IntN(1000)}}[rng.IntN(3)]
					st := update(n, "tasks", id, vals)
					st["ignoreMissing"] = true
					steps = append(steps, st)
				case k < 8:
					id := fmt.Sprintf("%s-r%d-%d", n, r, j)
					pool = append(pool, id)
					steps = append(steps, create(n, "tasks", id, task("cp", id, false, r)))
				default:
					st := markAsDeleted(n, "tasks", pool[rng.IntN(len(pool))])
					st["ignoreMissing"] = true
					steps = append(steps, st)
				}
			}
			branches = append(branches, []M{syncStep(n, M{"allowError": "409 conflict"})})
		}
		steps = append(steps, named(fmt.Sprintf("round %d", r), M{"op": "parallel", "branches": branches}))
	}
	// Quiet: each device pushes what is left, then each pulls everything.
	for pass := 0; pass < 2; pass++ {
		for _, n := range names {
			steps = append(steps, syncStep(n))
		}
	}
	steps = append(steps, converged(names...), syncStep("F"), converged(append(names, "F")...))
	res := run(t, srv, M{
		"tokens":  M{"alice": srv.token("alice")},
		"clients": clients,
		"steps":   steps,
	}, nil)
	conflicts := 0
	for _, raw := range res.Steps {
		if bytes.Contains(raw, []byte(`"allowedError"`)) {
			conflicts++
		}
	}
	t.Logf("driver %dms; %d devices x %d rounds of concurrent syncs, %d pushes answered 409 conflict", res.MS, devices, rounds, conflicts)
}

// ---------------------------------------------------------------------------------------
// 11. The server applies a push but the answer is lost (a broken connection): the records
// stay unsynced on the client, and the next sync settles them without WatermelonDB
// complaints, resurrections or duplicates — with and without X-Melon-Device.

func scenarioLostPushResponse(t *testing.T, st store) {
	for _, device := range []bool{true, false} {
		t.Run(fmt.Sprintf("device=%v", device), func(t *testing.T) {
			srv := newServer(t, st)
			lost := M{"losePushResponse": true, "expectError": "push response was lost"}
			steps := []M{
				create("A", "projects", "p1", project("P", false, 1)),
				create("A", "tasks", "t1", task("p1", "one", false, 1)),
				create("A", "tasks", "t2", task("p1", "two", false, 2)),
				named("creations: answer lost", syncStep("A", lost)),
				expect("A", "tasks", rec("t1", M{"_status": "created"}), rec("t2", M{"_status": "created"})),
				named("creations: retry", syncStep("A", M{
					"expectPull": M{"tables": M{"projects": tc(nil, ids("p1"), nil), "tasks": tc(nil, ids("t1", "t2"), nil)}},
					"expectPush": M{"tables": M{"projects": tc(ids("p1"), nil, nil), "tasks": tc(ids("t1", "t2"), nil, nil)}},
				})),
				expect("A", "tasks", synced("t1", nil), synced("t2", nil)),
				update("A", "tasks", "t1", M{"name": "one, edited"}),
				markAsDeleted("A", "tasks", "t2"),
				named("edits: answer lost", syncStep("A", lost)),
				expect("A", "tasks", rec("t1", M{"_status": "updated", "_changed": "name"}), rec("t2", M{"_status": "deleted"})),
				named("edits: retry", syncStep("A", M{"expectPull": M{"tables": M{"tasks": tc(nil, ids("t1"), ids("t2"))}}})),
				expect("A", "tasks", synced("t1", M{"name": "one, edited"})),
				syncStep("B"),
				expect("B", "tasks", synced("t1", M{"name": "one, edited"})),
				converged("A", "B"),
			}
			res := run(t, srv, M{
				"tokens":  M{"alice": srv.token("alice")},
				"clients": M{"A": M{"user": "alice", "sendDeviceHeader": device}, "B": M{"user": "alice"}},
				"steps":   steps,
			}, nil)
			res.logSyncTimes(t)
		})
	}
}
