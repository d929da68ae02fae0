package http_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
)

// The team t1 of these tests: every id of its rows, and words that appear only in them.
var (
	t1IDs   = []string{"t1", "m_alice", "m_carol", "m_dave", "tp1", "tt1", "tt2"}
	t1Words = []string{"T1-SECRET-TEAM", "T1-SECRET-PROJECT", "T1-SECRET-TASK", "T1-SECRET-GONE", "T1-SECRET-ROLE", "ALICE-NOTE-SECRET"}
)

// pushJSON pushes changes (a JSON object) as hdr's user and returns the answer; any
// status but 200 fails the test.
func (e *env) pushJSON(hdr map[string]string, lastPulledAt int64, changes string) melonsync.PushResponse {
	e.t.Helper()
	r := e.do("POST", "/api/sync/push", hdr, []byte(fmt.Sprintf(`{"lastPulledAt":%d,"changes":%s}`, lastPulledAt, changes)))
	if r.status != 200 {
		e.t.Fatalf("push %s: %d %s", changes, r.status, r.body)
	}
	var pr melonsync.PushResponse
	if err := json.Unmarshal(r.body, &pr); err != nil {
		e.t.Fatal(err)
	}
	return pr
}

// pullJSON pulls with body as hdr's user and returns the decoded answer and its bytes.
func (e *env) pullJSON(hdr map[string]string, body string) (melonsync.PullResponse, []byte) {
	e.t.Helper()
	r := e.do("POST", "/api/sync/pull", hdr, []byte(body))
	if r.status != 200 {
		e.t.Fatalf("pull %s: %d %s", body, r.status, r.body)
	}
	var pr melonsync.PullResponse
	if err := json.Unmarshal(r.body, &pr); err != nil {
		e.t.Fatal(err)
	}
	return pr, r.body
}

// pulledIDs lists table/id of every record a pull answer carries in created and
// updated (live) and in deleted.
func pulledIDs(pr melonsync.PullResponse) (live, deleted []string) {
	for table, tc := range pr.Changes {
		for _, r := range append(append([]melonsync.RawRecord{}, tc.Created...), tc.Updated...) {
			live = append(live, table+"/"+fmt.Sprint(r["id"]))
		}
		for _, id := range tc.Deleted {
			deleted = append(deleted, table+"/"+id)
		}
	}
	sort.Strings(live)
	sort.Strings(deleted)
	return live, deleted
}

// setUpTeam: alice creates team t1 (the first-member rule) with a project and two
// tasks, deletes one, adds carol, adds dave and removes him again after his device
// pulled the team. It returns the timestamp after dave pulled his removal.
func setUpTeam(t *testing.T, e *env) int64 {
	alice := e.as("alice")
	p := e.pushJSON(alice, 0, `{
		"teams":{"created":[{"id":"t1","name":"T1-SECRET-TEAM","created_at":1}]},
		"team_members":{"created":[{"id":"m_alice","team_id":"t1","user_id":"alice","role":"T1-SECRET-ROLE"}]},
		"projects":{"created":[{"id":"tp1","team_id":"t1","name":"T1-SECRET-PROJECT"}]},
		"tasks":{"created":[{"id":"tt1","team_id":"t1","project_id":"tp1","name":"T1-SECRET-TASK"},{"id":"tt2","team_id":"t1","name":"T1-SECRET-GONE"}]},
		"notes":{"created":[{"id":"an1","body":"ALICE-NOTE-SECRET"}]}}`)
	if len(p.RejectedIDs) > 0 {
		t.Fatalf("alice creating her team was refused: %v", p.RejectedIDs)
	}
	p = e.pushJSON(alice, p.Timestamp, `{
		"tasks":{"deleted":["tt2"]},
		"team_members":{"created":[{"id":"m_carol","team_id":"t1","user_id":"carol","role":"T1-SECRET-ROLE"},{"id":"m_dave","team_id":"t1","user_id":"dave","role":"T1-SECRET-ROLE"}]}}`)
	if len(p.RejectedIDs) > 0 {
		t.Fatalf("alice adding carol and dave was refused: %v", p.RejectedIDs)
	}
	// Dave's device syncs the team, then alice removes him.
	dave := e.as("dave")
	first, _ := e.pullJSON(dave, `{"lastPulledAt":null}`)
	live, _ := pulledIDs(first)
	want := []string{"projects/tp1", "tasks/tt1", "team_members/m_alice", "team_members/m_carol", "team_members/m_dave", "teams/t1"}
	if fmt.Sprint(live) != fmt.Sprint(want) {
		t.Fatalf("dave, a member, pulled %v, want %v", live, want)
	}
	p = e.pushJSON(alice, p.Timestamp, `{"team_members":{"deleted":["m_dave"]}}`)
	if len(p.RejectedIDs) > 0 {
		t.Fatalf("alice removing dave was refused: %v", p.RejectedIDs)
	}
	after, body := e.pullJSON(dave, fmt.Sprintf(`{"lastPulledAt":%d}`, first.Timestamp))
	live, deleted := pulledIDs(after)
	if len(live) > 0 || fmt.Sprint(deleted) != fmt.Sprint(want) {
		t.Fatalf("dave's pull after his removal: live %v, deleted %v (want every row he had in deleted): %s", live, deleted, body)
	}
	return after.Timestamp
}

// TestAccessNonMembers: a user who never was in team t1 (bob) and one who was removed
// from it (dave) go through every route — every kind of pull, every kind of push on
// both push forms, the event stream. No answer carries a row, a value or (outside the
// ids they sent themselves, and dave's own removal) an id of the group; every write to
// the group is refused for that record while their own records in the same push
// apply; the group's members see nothing changed; no event of the group reaches them.
func TestAccessNonMembers(t *testing.T) {
	for _, st := range testStores {
		t.Run(st.name, func(t *testing.T) {
			e := newSchemaEnv(t, st.open(t), teamsSchema(t))
			daveSince := setUpTeam(t, e)
			membersView := func() string {
				var b strings.Builder
				for _, u := range []string{"alice", "carol"} {
					pr, _ := e.pullJSON(e.as(u), `{"lastPulledAt":null}`)
					j, _ := json.Marshal(pr.Changes)
					b.Write(j)
				}
				return b.String()
			}
			before := membersView()
			for _, w := range t1Words[:3] {
				if !strings.Contains(before, w) {
					t.Fatalf("the members cannot see %s: %s", w, before)
				}
			}
			streams := map[string]*eventStream{}
			for _, u := range []string{"bob", "dave", "carol"} {
				streams[u] = e.openEvents(t, u)
			}
			writes := map[string][]int64{}
			for _, u := range []string{"bob", "dave"} {
				writes[u] = probeNonMember(t, e, u, daveSince)
			}
			if after := membersView(); after != before {
				t.Fatalf("a non-member changed the team:\nbefore %s\nafter  %s", before, after)
			}
			// A member's change to the group: carol hears of it, bob and dave do not.
			p := e.pushJSON(e.as("alice"), 0, `{"tasks":{"updated":[{"id":"tt1","name":"T1-SECRET-TASK renamed"}]}}`)
			if len(p.RejectedIDs) > 0 {
				t.Fatalf("alice's update of her team's task was refused: %v", p.RejectedIDs)
			}
			streams["carol"].waitFor(t, p.Timestamp)
			for _, u := range []string{"bob", "dave"} {
				mark := e.pushJSON(e.as(u), 0, fmt.Sprintf(`{"notes":{"created":[{"id":"last-%s","body":"mine"}]}}`, u))
				writes[u] = append(writes[u], mark.Timestamp)
				seen := streams[u].waitFor(t, mark.Timestamp)
				for _, v := range seen {
					if !containsInt(writes[u], v) {
						t.Errorf("%s's event stream had a change event at %d, which is none of his writes %v (alice's update: %d)", u, v, writes[u], p.Timestamp)
					}
				}
			}
		})
	}
}

// probeNonMember runs every read and write of the group as user and returns the
// timestamps of the pushes that wrote (their own records).
func probeNonMember(t *testing.T, e *env, user string, daveSince int64) []int64 {
	hdr := e.as(user)
	// dave's device saw the group and pulled its removal as deletions: that is where
	// its ids may still appear to him, in "deleted" only.
	exMember := user == "dave"
	check := func(what string, body []byte, rejected map[string][]string, sent []string) {
		t.Helper()
		s := string(body)
		for _, w := range t1Words {
			if strings.Contains(s, w) {
				t.Errorf("%s: %s received %s: %s", what, user, w, body)
			}
		}
		if sent != nil { // a push answer: the group's ids only where it lists what was refused
			for table, ids := range rejected {
				for _, id := range ids {
					if !containsStr(sent, table+"/"+id) {
						t.Errorf("%s: refused %s/%s, which %s did not send", what, table, id, user)
					}
				}
			}
			var answer map[string]any
			if err := json.Unmarshal(body, &answer); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			delete(answer, "experimentalRejectedIds")
			rest, _ := json.Marshal(answer)
			scrub := string(rest)
			for _, id := range t1IDs {
				if strings.Contains(scrub, `"`+id+`"`) {
					t.Errorf("%s: the answer names %s: %s", what, id, body)
				}
			}
			return
		}
		var pr melonsync.PullResponse
		if err := json.Unmarshal(body, &pr); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		live, deleted := pulledIDs(pr)
		for _, key := range live {
			_, id, _ := strings.Cut(key, "/")
			if containsStr(t1IDs, id) {
				t.Errorf("%s: %s pulled %s", what, user, key)
			}
		}
		if !exMember {
			for _, key := range deleted {
				_, id, _ := strings.Cut(key, "/")
				if containsStr(t1IDs, id) {
					t.Errorf("%s: %s, never a member, was told of the deletion of %s", what, user, key)
				}
			}
		}
	}

	// Every kind of pull, and parameters that would widen the answer.
	allTables := `["teams","team_members","projects","tasks","tags","notes"]`
	mig := `{"from":1,"tables":` + allTables + `,"columns":[{"table":"tasks","columns":["team_id","project_id","name","is_done","position"]},{"table":"projects","columns":["team_id","name","position"]},{"table":"team_members","columns":["team_id","user_id","role"]},{"table":"teams","columns":["name","created_at"]},{"table":"notes","columns":["body"]}]}`
	since := "1"
	if exMember {
		since = fmt.Sprint(daveSince)
	}
	for _, p := range []struct{ method, path, body string }{
		{"POST", "/api/sync/pull", `{"lastPulledAt":null}`},
		{"POST", "/api/sync/pull", `{"lastPulledAt":` + since + `}`},
		{"POST", "/api/sync/pull", `{"lastPulledAt":` + since + `,"schemaVersion":1,"migration":` + mig + `}`},
		{"POST", "/api/sync/pull", `{"lastPulledAt":null,"schemaVersion":1,"migration":` + mig + `}`},
		{"POST", "/api/sync/pull", `{"lastPulledAt":99999999999999}`}, // never handed out: replacement
		{"POST", "/api/sync/pull", `{"lastPulledAt":null,"userId":"alice","team_id":"t1","group":"t1"}`},
		{"GET", "/api/sync/pull?since=" + since + "&team_id=t1", ``},
		{"GET", "/sync?last_pulled_at=" + since + "&schema_version=1&migration=" + urlEscape(mig), ``},
		{"GET", "/sync?last_pulled_at=null", ``},
	} {
		var body []byte
		if p.body != "" {
			body = []byte(p.body)
		}
		r := e.do(p.method, p.path, hdr, body)
		if r.status != 200 {
			t.Fatalf("%s %s %s: %d %s", p.method, p.path, p.body, r.status, r.body)
		}
		check(user+" "+p.method+" "+p.path+" "+p.body, r.body, nil, nil)
	}
	// The same with X-Melon-Send-Created-As-Updated.
	cau := map[string]string{"Authorization": hdr["Authorization"], melonsync.HeaderCreatedAsUpdated: "true"}
	r := e.do("POST", "/api/sync/pull", cau, []byte(`{"lastPulledAt":`+since+`}`))
	check(user+" pull created-as-updated", r.body, nil, nil)

	// A team of the user's own, to move things to and from.
	own := "team-" + user
	p := e.pushJSON(hdr, 0, fmt.Sprintf(`{
		"teams":{"created":[{"id":"%[1]s","name":"mine"}]},
		"team_members":{"created":[{"id":"m-%[1]s","team_id":"%[1]s","user_id":"%[2]s"}]},
		"tasks":{"created":[{"id":"task-%[1]s","team_id":"%[1]s","name":"mine"}]}}`, own, user))
	if len(p.RejectedIDs) > 0 {
		t.Fatalf("%s creating a team of his own was refused: %v", user, p.RejectedIDs)
	}
	writes := []int64{p.Timestamp}

	// Writes: each is sent on both push forms, with a note of the user's own that
	// must apply in the same push.
	type attempt struct {
		name    string
		changes string   // the table entries, without the user's own note
		refused []string // table/id
	}
	x := `"T1-HIJACK"`
	attempts := []attempt{
		{"create over the group's ids", `"teams":{"created":[{"id":"t1","name":` + x + `}]},"team_members":{"created":[{"id":"m_alice","team_id":"t1","user_id":"` + user + `"}]},"projects":{"created":[{"id":"tp1","team_id":"t1","name":` + x + `}]},"tasks":{"created":[{"id":"tt1","team_id":"t1","name":` + x + `}]}`,
			[]string{"teams/t1", "team_members/m_alice", "projects/tp1", "tasks/tt1"}},
		{"create over the group's ids, naming the user's own team", `"projects":{"created":[{"id":"tp1","team_id":"` + own + `","name":` + x + `}]},"tasks":{"created":[{"id":"tt1","team_id":"` + own + `","name":` + x + `}]}`,
			[]string{"projects/tp1", "tasks/tt1"}},
		{"create over a deleted row of the group", `"tasks":{"created":[{"id":"tt2","team_id":"` + own + `","name":` + x + `}]}`,
			[]string{"tasks/tt2"}},
		{"update the group's rows", `"teams":{"updated":[{"id":"t1","name":` + x + `}]},"team_members":{"updated":[{"id":"m_carol","user_id":"` + user + `"}]},"projects":{"updated":[{"id":"tp1","name":` + x + `}]},"tasks":{"updated":[{"id":"tt1","name":` + x + `}]}`,
			[]string{"teams/t1", "team_members/m_carol", "projects/tp1", "tasks/tt1"}},
		{"delete the group's rows", `"teams":{"deleted":["t1"]},"team_members":{"deleted":["m_alice","m_carol"]},"projects":{"deleted":["tp1"]},"tasks":{"deleted":["tt1"]}`,
			[]string{"teams/t1", "team_members/m_alice", "team_members/m_carol", "projects/tp1", "tasks/tt1"}},
		{"create new rows in the group", `"projects":{"created":[{"id":"new-p-%N","team_id":"t1","name":"x"}]},"tasks":{"created":[{"id":"new-t-%N","team_id":"t1","name":"x"}]}`,
			[]string{"projects/new-p-%N", "tasks/new-t-%N"}},
		{"join the group", `"team_members":{"created":[{"id":"join-%N","team_id":"t1","user_id":"` + user + `"}]}`,
			[]string{"team_members/join-%N"}},
		{"move the group's task to the user's team", `"tasks":{"updated":[{"id":"tt1","team_id":"` + own + `"}]}`,
			[]string{"tasks/tt1"}},
		{"move the user's task into the group", `"tasks":{"updated":[{"id":"task-` + own + `","team_id":"t1"}]}`,
			[]string{"tasks/task-" + own}},
		{"move the user's membership into the group", `"team_members":{"updated":[{"id":"m-` + own + `","team_id":"t1"}]}`,
			[]string{"team_members/m-" + own}},
		{"write the public table", `"tags":{"created":[{"id":"tag-%N","name":"x"}],"updated":[{"id":"tag-u-%N","name":"x"}],"deleted":["tag-d-%N"]}`,
			[]string{"tags/tag-%N", "tags/tag-u-%N"}},
	}
	n := 0
	for _, form := range []string{"/api/sync/push", "/sync"} {
		for _, a := range attempts {
			n++
			tag := fmt.Sprintf("%s-%d", user, n)
			changes := strings.ReplaceAll(a.changes, "%N", tag)
			mine := fmt.Sprintf("note-%s", tag)
			body := `{` + changes + `,"notes":{"created":[{"id":"` + mine + `","body":"mine"}]}}`
			var refused []string
			for _, r := range a.refused {
				refused = append(refused, strings.ReplaceAll(r, "%N", tag))
			}
			var r reply
			if form == "/sync" {
				r = e.do("POST", "/sync?last_pulled_at=0", hdr, []byte(body))
			} else {
				r = e.do("POST", form, hdr, []byte(`{"lastPulledAt":0,"changes":`+body+`}`))
			}
			what := fmt.Sprintf("%s %s: %s", user, form, a.name)
			if r.status != 200 {
				t.Fatalf("%s: %d %s", what, r.status, r.body)
			}
			var pr melonsync.PushResponse
			json.Unmarshal(r.body, &pr)
			var got []string
			for table, ids := range pr.RejectedIDs {
				for _, id := range ids {
					got = append(got, table+"/"+id)
				}
			}
			sort.Strings(got)
			sort.Strings(refused)
			// A deletion of a public row that does not exist may be ignored or refused.
			got = without(got, "tags/tag-d-"+tag)
			if fmt.Sprint(got) != fmt.Sprint(refused) {
				t.Errorf("%s: refused %v, want %v", what, got, refused)
			}
			check(what, r.body, pr.RejectedIDs, refused)
			writes = append(writes, pr.Timestamp)
			// The user's own note in the same push was applied.
			all, body2 := e.pullJSON(hdr, `{"lastPulledAt":null}`)
			live, _ := pulledIDs(all)
			if !containsStr(live, "notes/"+mine) {
				t.Errorf("%s: the user's own note %s was not applied", what, mine)
			}
			check(what+", then a first sync", body2, nil, nil)
		}
	}
	return writes
}

// eventStream follows a user's GET /api/sync/events.
type eventStream struct {
	user  string
	lines chan string
}

func (e *env) openEvents(t *testing.T, user string) *eventStream {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/sync/events", nil)
	req.Header.Set("Authorization", "Bearer "+e.token(user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s's event stream: %v %v", user, err, resp)
	}
	s := &eventStream{user: user, lines: make(chan string, 4096)}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	return s
}

// waitFor reads the stream until a change event at or after version v and returns the
// versions of every change event read.
func (s *eventStream) waitFor(t *testing.T, v int64) []int64 {
	t.Helper()
	var seen []int64
	event := ""
	deadline := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatalf("%s's event stream ended", s.user)
			}
			if name, ok := strings.CutPrefix(line, "event: "); ok {
				event = name
				continue
			}
			var ev struct {
				Timestamp int64 `json:"timestamp"`
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok && event == "changes" && json.Unmarshal([]byte(data), &ev) == nil {
				seen = append(seen, ev.Timestamp)
				if ev.Timestamp >= v {
					return seen
				}
			}
		case <-deadline:
			t.Fatalf("%s's event stream never reported version %d; saw %v", s.user, v, seen)
		}
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsInt(list []int64, v int64) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func without(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
