package reliability_test

// The access-rule model test (SPEC §6): four Go clients of three users share teams of
// the teams example schema. Random histories create teams, invite, remove and leave
// (and join again), move tasks between teams, write rows the user may not write
// (another team's, the public table, a move into a team the user is not in), and, on
// stores that sync plain SQL, have "the app's backend" write public rows and
// memberships with SQL — all with the faults of the plain model test. A replay model
// follows every accepted push and SQL write in commit order and checks, as they
// happen, that the server refused exactly the records the rules refuse, and that every
// pull answer and every event reaches only users who may read what it carries; at the
// end, every device holds exactly the rows its user may read, with their latest
// values, and nothing of a team its user left.

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"pgregory.net/rapid"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/client"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

var accessUsers = []string{"alice", "bob", "carol"}

// groupTables are the tables of the "team" group kind, with the column naming the
// team ("" for teams: their own id).
var groupTables = map[string]string{"teams": "", "team_members": "team_id", "projects": "team_id", "tasks": "team_id"}

var accessTables = []string{"teams", "team_members", "projects", "tasks", "tags", "notes"}

// backendSQL runs plain SQL on the store, as the app's own backend would; nil when the
// store does not sync plain SQL writes.
type backendSQL func(query string, args ...any) error

func TestAccessModelSQLite(t *testing.T) {
	st := &accessStats{faults: map[fault]int{}}
	runAccessModel(t, "sqlite", 40, st, func(rt *rapid.T) (func() (server.Store, error), backendSQL) {
		open, path := sqliteOpener(rt, "melonsync-access-model-")
		return open, sqliteBackend(rt, open, path)
	})
}

func TestAccessModelPostgres(t *testing.T) {
	testutil.PostgresDSN(t)
	st := &accessStats{faults: map[fault]int{}}
	runAccessModel(t, "postgres", 12, st, func(rt *rapid.T) (func() (server.Store, error), backendSQL) {
		open, dsn := postgresOpener(rt, "melon_amodel")
		backend := func(query string, args ...any) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			_, err = conn.Exec(ctx, query, args...)
			return err
		}
		return open, backend
	})
}

// sqliteBackend returns plain SQL on the server's SQLite file when that store syncs
// plain SQL writes (it keeps triggers on the synced tables), else nil.
func sqliteBackend(rt *rapid.T, open func() (server.Store, error), path string) backendSQL {
	sch, err := schema.Load("../examples/teams/schema.json")
	if err != nil {
		rt.Fatal(err)
	}
	s, err := open()
	if err != nil {
		rt.Fatal(err)
	}
	if err := s.Prepare(context.Background(), sch); err != nil {
		rt.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		rt.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'tags'`).Scan(&n); err != nil || n == 0 {
		return nil
	}
	return func(query string, args ...any) error {
		db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			return err
		}
		defer db.Close()
		query = strings.NewReplacer("$1", "?1", "$2", "?2", "$3", "?3", "$4", "?4").Replace(query)
		_, err = db.Exec(query, args...)
		return err
	}
}

type accessStats struct {
	histories, actions, syncs, failedSyncs, pulls, pushes, refused, grants, revocations, moves, sqlWrites, events int
	faults                                                                                                        map[fault]int
	noBackend                                                                                                     bool
}

func runAccessModel(t *testing.T, name string, defaultHistories int, st *accessStats, newStore func(*rapid.T) (func() (server.Store, error), backendSQL)) {
	if testing.Short() {
		t.Skip("model test skipped in -short mode")
	}
	defer rapidDefaults(defaultHistories, 70)()
	sch, err := schema.Load("../examples/teams/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rapid.Check(t, func(rt *rapid.T) {
		open, backend := newStore(rt)
		if backend == nil {
			st.noBackend = true
		}
		h := newAccessHistory(rt, sch, open, backend, st)
		actions := map[string]func(*rapid.T){
			"createTeam": h.createTeam,
			"invite":     h.invite,
			"leave":      h.leave,
			"remove":     h.remove,
			"create":     h.createRow,
			"intrude":    h.intrude,
			"update":     h.update,
			"move":       h.move,
			"move2":      h.move,
			"delete":     h.deleteRow,
			"writeTag":   h.writeTag,
			"sync":       h.sync,
			"sync2":      h.sync,
		}
		if backend != nil {
			actions["backendTag"] = h.backendTag
			actions["backendMember"] = h.backendMember
		}
		for k, fn := range actions {
			fn := fn
			actions[k] = func(rt *rapid.T) {
				fn(rt)
				h.failNow()
			}
		}
		rt.Repeat(actions)
		h.settle()
		h.check()
		st.histories++
	})
	var kinds []string
	total := 0
	for f, c := range st.faults {
		kinds = append(kinds, fmt.Sprintf("%s: %d", f, c))
		total += c
	}
	sort.Strings(kinds)
	msg := fmt.Sprintf("access model test (%s): %d histories, %d actions, %d syncs (%d failed), %d pushes checked (%d records refused), %d pulls checked, %d records pulled as created (grants among them), %d revocations pulled, %d moves, %d backend SQL writes, %d events checked, %d faults [%s]; %s",
		name, st.histories, st.actions, st.syncs, st.failedSyncs, st.pushes, st.refused, st.pulls, st.grants, st.revocations, st.moves, st.sqlWrites, st.events, total, strings.Join(kinds, "; "), time.Since(start).Round(time.Millisecond))
	if st.noBackend {
		msg += " (this store does not sync plain SQL writes: no backend writes)"
	}
	t.Log(msg)
	fmt.Println(msg)
}

// mrow is a row as the model knows the server holds it.
type mrow struct {
	vals    map[string]any
	deleted bool
	owner   string // notes: the creator
}

// accessHistory is one random history of the access model test.
type accessHistory struct {
	rt      *rapid.T
	sch     *schema.Schema
	srv     *testServer
	backend backendSQL
	clients []*modelClient
	st      *accessStats
	check0  *http.Client
	tokens  map[string]string
	ctx     context.Context

	mu       sync.Mutex
	rows     map[string]map[string]*mrow // table → id → row, in commit order of the log
	failures []string
	seq      int
	teamIDs  []string // every team id any client ever used
	// lastRefused: client → table/id refused by its last accepted push.
	lastRefused map[int]map[string]bool
	// localCreated: client → ids it created locally.
	localCreated map[int]map[string]bool
	// published: user → versions the user may be told of (events).
	published map[string]map[int64]bool
	events    map[string][]int64
	// applied counts the pushes that wrote something.
	applied int
	// log is every push, pull and SQL write, in order, for failure messages.
	log []string
}

// logf notes a step of the history; the caller holds h.mu.
func (h *accessHistory) logf(format string, args ...any) {
	h.log = append(h.log, fmt.Sprintf(format, args...))
}

// story returns the log lines that name id, and writes the whole log to a file
// whose name it gives.
func (h *accessHistory) story(id string) string {
	var b, all strings.Builder
	for i, l := range h.log {
		fmt.Fprintf(&all, "%d: %s\n", i, l)
		if strings.Contains(l, id) {
			fmt.Fprintf(&b, "  %d: %s\n", i, l)
		}
	}
	if f, err := os.CreateTemp("", "melonsync-access-model-*.log"); err == nil {
		f.WriteString(all.String())
		f.Close()
		fmt.Fprintf(&b, "  (the whole history: %s)\n", f.Name())
	}
	return b.String()
}

func newAccessHistory(rt *rapid.T, sch *schema.Schema, open func() (server.Store, error), backend backendSQL, st *accessStats) *accessHistory {
	auth, err := mhttp.NewAuth([]byte("access-model-secret-0123456789abcdef"))
	if err != nil {
		rt.Fatal(err)
	}
	h := &accessHistory{
		rt: rt, sch: sch, st: st, ctx: context.Background(), backend: backend,
		tokens:       map[string]string{},
		rows:         map[string]map[string]*mrow{},
		lastRefused:  map[int]map[string]bool{},
		localCreated: map[int]map[string]bool{},
		published:    map[string]map[int64]bool{},
		events:       map[string][]int64{},
	}
	for _, t := range accessTables {
		h.rows[t] = map[string]*mrow{}
	}
	h.srv = &testServer{open: open, sch: sch, auth: auth, onStart: h.subscribe}
	if err := h.srv.start(); err != nil {
		rt.Fatal(err)
	}
	rt.Cleanup(h.srv.stop)
	base := http.DefaultTransport.(*http.Transport).Clone()
	h.check0 = &http.Client{Transport: &faultTransport{srv: h.srv, plan: &faultPlan{}, next: base, base: base}, Timeout: 30 * time.Second}
	dir, err := os.MkdirTemp("", "melonsync-access-clients-")
	if err != nil {
		rt.Fatal(err)
	}
	rt.Cleanup(func() { os.RemoveAll(dir) })
	for i, user := range clientUsers {
		if h.tokens[user] == "" {
			if h.tokens[user], err = auth.Mint(user, time.Hour); err != nil {
				rt.Fatal(err)
			}
		}
		c := newModelClient(rt, dir, i, user, h.tokens[user], sch, h.srv, func(next http.RoundTripper) http.RoundTripper {
			return &accessRecorder{h: h, client: i, user: user, next: next}
		})
		h.clients = append(h.clients, c)
		h.localCreated[i] = map[string]bool{}
	}
	return h
}

// subscribe follows every user's change feed of a (re)started server.
func (h *accessHistory) subscribe(svc *server.Service, stop <-chan struct{}) {
	for _, u := range accessUsers {
		ch, cancel := svc.Feed().Subscribe(u, "")
		go func(u string) {
			defer cancel()
			for {
				select {
				case v := <-ch:
					h.mu.Lock()
					h.events[u] = append(h.events[u], v)
					h.mu.Unlock()
				case <-stop:
					return
				}
			}
		}(u)
	}
}

// fail notes a failure; the caller holds h.mu.
func (h *accessHistory) fail(format string, args ...any) {
	h.failures = append(h.failures, fmt.Sprintf(format, args...))
}

// failNow ends the history at the first failure the recorder or the feed noted.
func (h *accessHistory) failNow() {
	h.mu.Lock()
	f := h.failures
	h.mu.Unlock()
	if len(f) > 0 {
		h.rt.Fatalf("%s", strings.Join(f, "\n"))
	}
}

// ---------------------------------------------------------------------------------------
// The rules, as the model applies them to its rows

// groupOf returns the team a row of a group table belongs to ("" for none).
func groupOf(table, id string, vals map[string]any) string {
	col, ok := groupTables[table]
	if !ok {
		return ""
	}
	if col == "" {
		return id
	}
	s, _ := vals[col].(string)
	return s
}

// membersOf returns the users who are members of team g.
func (h *accessHistory) membersOf(g string) map[string]bool {
	out := map[string]bool{}
	for _, r := range h.rows["team_members"] {
		if !r.deleted && g != "" && r.vals["team_id"] == g {
			if u, _ := r.vals["user_id"].(string); u != "" {
				out[u] = true
			}
		}
	}
	return out
}

// teamsOf returns the teams user is a member of.
func (h *accessHistory) teamsOf(user string) map[string]bool {
	out := map[string]bool{}
	for _, r := range h.rows["team_members"] {
		if !r.deleted && r.vals["user_id"] == user {
			if g, _ := r.vals["team_id"].(string); g != "" {
				out[g] = true
			}
		}
	}
	return out
}

// fresh reports whether no live row of any table of the team kind names g.
func (h *accessHistory) fresh(g string) bool {
	for table := range groupTables {
		for id, r := range h.rows[table] {
			if !r.deleted && groupOf(table, id, r.vals) == g {
				return false
			}
		}
	}
	return true
}

// readable reports whether user may read table#id as the model has it now.
func (h *accessHistory) readable(user, table, id string) bool {
	r := h.rows[table][id]
	if r == nil || r.deleted {
		return false
	}
	switch table {
	case "tags":
		return true
	case "notes":
		return r.owner == user
	}
	g := groupOf(table, id, r.vals)
	return g != "" && h.teamsOf(user)[g]
}

// view returns every row user may read, by table and id.
func (h *accessHistory) view(user string) map[string]map[string]map[string]any {
	out := map[string]map[string]map[string]any{}
	for _, t := range accessTables {
		out[t] = map[string]map[string]any{}
		for id, r := range h.rows[t] {
			if h.readable(user, t, id) {
				out[t][id] = r.vals
			}
		}
	}
	return out
}

// applyPush replays one push the server answered 200 to: it decides, from the rows
// committed before the push, which records the rules refuse, compares that with the
// server's answer, and applies the rest. It returns the users the push may be told to.
func (h *accessHistory) applyPush(ci int, user string, changes melonsync.Changes, refused map[string][]string, version int64) {
	h.st.pushes++
	members := h.teamsOf(user)
	// First member: a fresh team whose membership row naming the pusher is created.
	claimed := map[string]bool{}
	if tc := changes["team_members"]; tc != nil {
		for _, r := range append(append([]melonsync.RawRecord{}, tc.Created...), tc.Updated...) {
			id, _ := r["id"].(string)
			g, _ := r["team_id"].(string)
			if h.rows["team_members"][id] == nil && g != "" && r["user_id"] == user && h.fresh(g) {
				claimed[g] = true
			}
		}
	}
	may := func(g string) bool { return g != "" && (members[g] || claimed[g]) }
	type op struct {
		table, id string
		rec       melonsync.RawRecord // nil: delete
		whole     bool
	}
	var ops []op
	got := map[string]bool{} // table/id the server refused
	for table, ids := range refused {
		for _, id := range ids {
			got[table+"/"+id] = true
		}
	}
	want := map[string]bool{} // table/id the model refuses
	touched := map[string]bool{}
	audience := map[string]bool{user: true}
	// touch notes who may hear of a change to a row with these values.
	touch := func(table, id string, vals map[string]any) {
		switch table {
		case "tags":
			for _, u := range accessUsers {
				audience[u] = true
			}
		case "notes":
		default:
			g := groupOf(table, id, vals)
			touched[g] = true
			for u := range h.membersOf(g) {
				audience[u] = true
			}
			if table == "team_members" {
				if u, _ := vals["user_id"].(string); u != "" {
					audience[u] = true
				}
			}
		}
	}
	for _, table := range accessTables {
		tc := changes[table]
		if tc == nil {
			continue
		}
		_, isGroup := groupTables[table]
		decide := func(id string, rec melonsync.RawRecord, created bool) {
			cur := h.rows[table][id]
			key := table + "/" + id
			allowed := false
			switch {
			case table == "tags":
				allowed = rec == nil && cur == nil // a delete of nothing is ignored
			case table == "notes":
				allowed = cur == nil || cur.owner == user
			case isGroup:
				switch {
				case rec == nil && cur == nil:
					allowed = true // ignored
				case rec == nil:
					allowed = may(groupOf(table, id, cur.vals))
				case cur == nil:
					allowed = may(groupOf(table, id, rec))
				case cur.deleted && created:
					allowed = !got[key] // a create over a tombstone: either answer is the rules'
					if !allowed {
						want[key] = true
						return
					}
				default:
					newVals := rec
					if _, has := rec[groupTables[table]]; !has && groupTables[table] != "" {
						newVals = cur.vals
					}
					allowed = may(groupOf(table, id, cur.vals)) && may(groupOf(table, id, newVals))
				}
			}
			if rec != nil && cur != nil && cur.deleted && !created && allowed {
				h.fail("push %d of client %d: updated %s, deleted on the server and writable, yet the push was not a conflict", version, ci, key)
			}
			if !allowed {
				want[key] = true
				return
			}
			if rec == nil && (cur == nil || cur.deleted) {
				return
			}
			ops = append(ops, op{table, id, rec, created || cur == nil || cur.deleted})
		}
		for _, r := range tc.Created {
			decide(r["id"].(string), r, true)
		}
		for _, r := range tc.Updated {
			decide(r["id"].(string), r, false)
		}
		for _, id := range tc.Deleted {
			decide(id, nil, false)
		}
	}
	h.lastRefused[ci] = got
	h.st.refused += len(got)
	cb, _ := json.Marshal(changes)
	h.logf("push by client %d (%s) at %d: %s; refused %v", ci, user, version, cb, keys(got))
	for key := range got {
		if !want[key] {
			h.fail("push %d of client %d (%s): the server refused %s, which the rules allow\n%s", version, ci, user, key, h.describe(changes))
		}
	}
	for key := range want {
		if !got[key] {
			h.fail("push %d of client %d (%s): the server accepted %s, which the rules refuse (%s is in teams %v)\n%s", version, ci, user, key, user, keys(members), h.describe(changes))
		}
	}
	// Apply, noting who may hear of it: members of the groups before and after.
	for _, o := range ops {
		cur := h.rows[o.table][o.id]
		if cur != nil && !cur.deleted {
			touch(o.table, o.id, cur.vals)
		}
		switch {
		case o.rec == nil:
			cur.deleted = true
		case o.whole:
			vals := map[string]any{}
			for _, col := range h.sch.Table(o.table).Columns {
				vals[col.Name] = col.Sanitize(o.rec[col.Name])
			}
			owner := user
			if cur != nil && !cur.deleted && cur.owner != "" {
				owner = cur.owner
			}
			h.rows[o.table][o.id] = &mrow{vals: vals, owner: owner}
		default:
			if g := groupTables[o.table]; g != "" && o.rec[g] != nil && o.rec[g] != cur.vals[g] {
				h.st.moves++
			}
			changed, _ := o.rec["_changed"].(string)
			for _, col := range strings.Split(changed, ",") {
				if c := h.sch.Table(o.table).Column(col); c != nil {
					cur.vals[col] = c.Sanitize(o.rec[col])
				}
			}
			// The group column always takes the pushed value (a move).
			if g := groupTables[o.table]; g != "" {
				if v, ok := o.rec[g]; ok {
					cur.vals[g] = v
				}
			}
		}
		if r := h.rows[o.table][o.id]; r != nil {
			touch(o.table, o.id, r.vals)
		}
	}
	// Members after the push of every group it changed may hear of it too.
	for g := range touched {
		for u := range h.membersOf(g) {
			audience[u] = true
		}
	}
	if len(ops) > 0 {
		h.applied++
		h.publish(version, audience)
	}
}

func (h *accessHistory) publish(version int64, audience map[string]bool) {
	for u := range audience {
		if h.published[u] == nil {
			h.published[u] = map[int64]bool{}
		}
		h.published[u][version] = true
	}
}

func (h *accessHistory) describe(changes melonsync.Changes) string {
	b, _ := json.Marshal(changes)
	var s strings.Builder
	fmt.Fprintf(&s, "  push: %s\n  memberships before it:", b)
	for id, r := range h.rows["team_members"] {
		if !r.deleted {
			fmt.Fprintf(&s, " %s=%v@%v", id, r.vals["user_id"], r.vals["team_id"])
		}
	}
	return s.String()
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkPull checks a pull answer against the model at the moment it was served
// (nothing else runs meanwhile): every live record is readable by the user, with the
// model's values; no deleted id is still readable; no id twice.
func (h *accessHistory) checkPull(ci int, user string, body []byte, lastPulledAt int64) {
	h.st.pulls++
	var pr melonsync.PullResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		h.fail("client %d: pull answer is not JSON: %v", ci, err)
		return
	}
	h.logf("pull by client %d (%s) since %d → %d: %s", ci, user, lastPulledAt, pr.Timestamp, summarize(pr))
	for table, tc := range pr.Changes {
		seen := map[string]bool{}
		for kind, recs := range map[string][]melonsync.RawRecord{"created": tc.Created, "updated": tc.Updated} {
			for _, r := range recs {
				id, _ := r["id"].(string)
				if seen[id] {
					h.fail("client %d (%s): a pull lists %s#%s twice", ci, user, table, id)
				}
				seen[id] = true
				if !h.readable(user, table, id) {
					h.fail("client %d (%s): a pull (since %d) sent %s#%s in %s, which %s may not read (teams %v): %v", ci, user, lastPulledAt, table, id, kind, user, keys(h.teamsOf(user)), r)
					continue
				}
				if kind == "created" && lastPulledAt > 0 {
					h.st.grants++
				}
				for col, v := range h.rows[table][id].vals {
					if !reflect.DeepEqual(r[col], v) {
						h.fail("client %d (%s): a pull sent %s#%s.%s = %#v, the model has %#v", ci, user, table, id, col, r[col], v)
					}
				}
			}
		}
		for _, id := range tc.Deleted {
			if seen[id] {
				h.fail("client %d (%s): a pull lists %s#%s as live and deleted", ci, user, table, id)
			}
			if h.readable(user, table, id) {
				h.fail("client %d (%s): a pull lists %s#%s in deleted, yet %s may read it", ci, user, table, id, user)
			}
			if r := h.rows[table][id]; r != nil && !r.deleted {
				h.st.revocations++
			}
		}
	}
}

// accessRecorder checks every push answer and pull answer against the model as the
// server sends it (below the fault injection, so answers that are then lost count).
type accessRecorder struct {
	h      *accessHistory
	client int
	user   string
	next   http.RoundTripper
}

func (r *accessRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	op := opOf(req)
	if op == "" || req.Body == nil {
		return r.next.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := r.next.RoundTrip(req)
	if err != nil || resp.StatusCode != 200 {
		return resp, err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(answer))
		if err != nil {
			return nil, err
		}
		if answer, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	}
	h := r.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if op == "pull" {
		var sent struct {
			LastPulledAt *int64 `json:"lastPulledAt"`
		}
		json.Unmarshal(body, &sent)
		var since int64
		if sent.LastPulledAt != nil {
			since = *sent.LastPulledAt
		}
		h.checkPull(r.client, r.user, answer, since)
		return resp, nil
	}
	var sent struct {
		Changes melonsync.Changes `json:"changes"`
	}
	var got melonsync.PushResponse
	if json.Unmarshal(body, &sent) != nil || json.Unmarshal(answer, &got) != nil {
		h.failures = append(h.failures, fmt.Sprintf("client %d: undecodable push or answer: %s", r.client, answer))
		return resp, nil
	}
	h.applyPush(r.client, r.user, sent.Changes, got.RejectedIDs, got.Timestamp)
	return resp, nil
}

// ---------------------------------------------------------------------------------------
// Actions

func (h *accessHistory) value(user string) string {
	h.seq++
	return fmt.Sprintf("%s-v%d", user, h.seq)
}

func (h *accessHistory) pick(rt *rapid.T) *modelClient {
	return h.clients[rapid.IntRange(0, len(h.clients)-1).Draw(rt, "client")]
}

// local returns c's live records of table.
func (h *accessHistory) local(c *modelClient, table string) []client.Record {
	var recs []client.Record
	err := c.db.Read(h.ctx, func(tx *client.Tx) error {
		var err error
		recs, err = tx.Query(table, client.Query{})
		return err
	})
	if err != nil {
		h.rt.Fatalf("client %d: read %s: %v", c.idx, table, err)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i]["id"].(string) < recs[j]["id"].(string) })
	return recs
}

// localTeams returns the team ids c has rows of teams for.
func (h *accessHistory) localTeams(c *modelClient) []string {
	var out []string
	for _, r := range h.local(c, "teams") {
		out = append(out, r["id"].(string))
	}
	return out
}

func (h *accessHistory) write(c *modelClient, what string, fn func(tx *client.Tx) error) {
	h.st.actions++
	if err := c.db.Write(h.ctx, fn); err != nil {
		h.rt.Fatalf("client %d: %s: %v", c.idx, what, err)
	}
}

func (h *accessHistory) create(c *modelClient, tx *client.Tx, table string, vals map[string]any) string {
	rec, err := tx.Create(table, vals)
	if err != nil {
		h.rt.Fatalf("client %d: create %s: %v", c.idx, table, err)
	}
	id := rec["id"].(string)
	h.localCreated[c.idx][id] = true
	return id
}

func (h *accessHistory) rowValues(rt *rapid.T, c *modelClient, table string) map[string]any {
	switch table {
	case "projects":
		return map[string]any{"name": h.value(c.user), "position": float64(rapid.IntRange(0, 9).Draw(rt, "position"))}
	case "tasks":
		return map[string]any{"name": h.value(c.user), "is_done": rapid.Bool().Draw(rt, "done"), "position": float64(rapid.IntRange(0, 9).Draw(rt, "position"))}
	case "notes":
		return map[string]any{"body": h.value(c.user)}
	case "teams":
		return map[string]any{"name": h.value(c.user), "created_at": float64(h.seq)}
	case "tags":
		return map[string]any{"name": h.value(c.user)}
	}
	return map[string]any{"role": h.value(c.user)}
}

// createTeam: a team, its first member (the creator) and maybe a project and a task,
// in one local transaction (the first-member rule).
func (h *accessHistory) createTeam(rt *rapid.T) {
	c := h.pick(rt)
	extra := rapid.IntRange(0, 2).Draw(rt, "first rows")
	h.write(c, "create a team", func(tx *client.Tx) error {
		team := h.create(c, tx, "teams", h.rowValues(rt, c, "teams"))
		h.teamIDs = append(h.teamIDs, team)
		h.create(c, tx, "team_members", map[string]any{"team_id": team, "user_id": c.user, "role": "owner"})
		for i := 0; i < extra; i++ {
			vals := h.rowValues(rt, c, "tasks")
			vals["team_id"] = team
			h.create(c, tx, "tasks", vals)
		}
		return nil
	})
}

// invite: a member (as far as the device knows) adds another user to a team.
func (h *accessHistory) invite(rt *rapid.T) {
	c := h.pick(rt)
	teams := h.localTeams(c)
	if len(teams) == 0 {
		return
	}
	team := rapid.SampledFrom(teams).Draw(rt, "team")
	user := rapid.SampledFrom(accessUsers).Draw(rt, "invitee")
	h.write(c, "invite", func(tx *client.Tx) error {
		h.create(c, tx, "team_members", map[string]any{"team_id": team, "user_id": user, "role": "member"})
		return nil
	})
}

// membership deletes a membership row the device has: the user's own (leave) or
// another user's (remove).
func (h *accessHistory) membership(rt *rapid.T, own bool) {
	c := h.pick(rt)
	var ids []string
	for _, r := range h.local(c, "team_members") {
		if (r["user_id"] == c.user) == own {
			ids = append(ids, r["id"].(string))
		}
	}
	if len(ids) == 0 {
		return
	}
	id := rapid.SampledFrom(ids).Draw(rt, "membership")
	h.write(c, "delete a membership", func(tx *client.Tx) error { return tx.MarkAsDeleted("team_members", id) })
}

func (h *accessHistory) leave(rt *rapid.T)  { h.membership(rt, true) }
func (h *accessHistory) remove(rt *rapid.T) { h.membership(rt, false) }

// createRow: a project or task in a team the device has, or a private note.
func (h *accessHistory) createRow(rt *rapid.T) {
	c := h.pick(rt)
	table := rapid.SampledFrom([]string{"projects", "tasks", "notes"}).Draw(rt, "table")
	vals := h.rowValues(rt, c, table)
	if table != "notes" {
		teams := h.localTeams(c)
		if len(teams) == 0 {
			return
		}
		vals["team_id"] = rapid.SampledFrom(teams).Draw(rt, "team")
	}
	h.write(c, "create "+table, func(tx *client.Tx) error { h.create(c, tx, table, vals); return nil })
}

// intrude: a task (or a membership of the device's own user) in any team ever made,
// member or not.
func (h *accessHistory) intrude(rt *rapid.T) {
	c := h.pick(rt)
	if len(h.teamIDs) == 0 {
		return
	}
	team := rapid.SampledFrom(h.teamIDs).Draw(rt, "team")
	table := rapid.SampledFrom([]string{"tasks", "team_members"}).Draw(rt, "table")
	vals := h.rowValues(rt, c, table)
	vals["team_id"] = team
	if table == "team_members" {
		vals["user_id"] = c.user
	}
	h.write(c, "intrude", func(tx *client.Tx) error { h.create(c, tx, table, vals); return nil })
}

// pickLocal draws one of c's live records of these tables.
func (h *accessHistory) pickLocal(rt *rapid.T, c *modelClient, tables ...string) (string, client.Record, bool) {
	var keys []string
	recs := map[string]client.Record{}
	for _, t := range tables {
		for _, r := range h.local(c, t) {
			k := t + "/" + r["id"].(string)
			keys = append(keys, k)
			recs[k] = r
		}
	}
	if len(keys) == 0 {
		return "", nil, false
	}
	k := rapid.SampledFrom(keys).Draw(rt, "record")
	table, _, _ := strings.Cut(k, "/")
	return table, recs[k], true
}

func (h *accessHistory) update(rt *rapid.T) {
	c := h.pick(rt)
	table, r, ok := h.pickLocal(rt, c, "teams", "projects", "tasks", "notes", "tags")
	if !ok {
		return
	}
	vals := h.rowValues(rt, c, table)
	h.write(c, "update", func(tx *client.Tx) error { return tx.Update(table, r["id"].(string), vals) })
}

// move: a task or project to another team (one the device has, or any team ever made).
func (h *accessHistory) move(rt *rapid.T) {
	c := h.pick(rt)
	table, r, ok := h.pickLocal(rt, c, "projects", "tasks")
	if !ok {
		return
	}
	var targets []string
	switch rapid.IntRange(0, 2).Draw(rt, "target kind") {
	case 0: // a team the device has
		targets = h.localTeams(c)
	case 1: // any team ever made
		targets = h.teamIDs
	default: // a team the user is in on the server (the move is allowed when the row's team is one too)
		h.mu.Lock()
		targets = keys(h.teamsOf(c.user))
		h.mu.Unlock()
	}
	if len(targets) == 0 {
		return
	}
	to := rapid.SampledFrom(targets).Draw(rt, "to")
	if to == r["team_id"] {
		return
	}
	h.write(c, "move", func(tx *client.Tx) error { return tx.Update(table, r["id"].(string), map[string]any{"team_id": to}) })
}

func (h *accessHistory) deleteRow(rt *rapid.T) {
	c := h.pick(rt)
	table, r, ok := h.pickLocal(rt, c, "teams", "projects", "tasks", "notes", "tags")
	if !ok {
		return
	}
	h.write(c, "delete", func(tx *client.Tx) error { return tx.MarkAsDeleted(table, r["id"].(string)) })
}

// writeTag: a client creates a row of the public table (always refused).
func (h *accessHistory) writeTag(rt *rapid.T) {
	c := h.pick(rt)
	h.write(c, "create a tag", func(tx *client.Tx) error { h.create(c, tx, "tags", h.rowValues(rt, c, "tags")); return nil })
}

// backendSQL writes: the app's backend inserts, updates or deletes a public tag, or
// adds or removes a member, with plain SQL on the store.
func (h *accessHistory) sqlWrite(what, table, id string, apply func(), query string, args ...any) {
	h.st.actions++
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.backend(query, args...); err != nil {
		h.rt.Fatalf("backend %s: %s: %v", what, query, err)
	}
	h.st.sqlWrites++
	h.logf("backend SQL on %s#%s: %s %v", table, id, query, args)
	var before map[string]any
	if r := h.rows[table][id]; r != nil && !r.deleted {
		before = r.vals
	}
	apply()
	audience := map[string]bool{}
	if table == "tags" {
		for _, u := range accessUsers {
			audience[u] = true
		}
	} else {
		for _, vals := range []map[string]any{before, h.rows[table][id].vals} {
			if vals != nil {
				for u := range h.membersOf(groupOf(table, id, vals)) {
					audience[u] = true
				}
				if u, _ := vals["user_id"].(string); u != "" {
					audience[u] = true
				}
			}
		}
	}
	// The version of a plain SQL write is not known here: any event after it is fine
	// for its audience (checked loosely, see checkEvents).
	h.publish(-1, audience)
}

func (h *accessHistory) backendTag(rt *rapid.T) {
	var live []string
	for id, r := range h.rows["tags"] {
		if !r.deleted {
			live = append(live, id)
		}
	}
	sort.Strings(live)
	kind := rapid.SampledFrom([]string{"insert", "update", "delete"}).Draw(rt, "sql")
	if kind != "insert" && len(live) == 0 {
		kind = "insert"
	}
	switch kind {
	case "insert":
		h.seq++
		id, name := fmt.Sprintf("tag%d", h.seq), fmt.Sprintf("backend-tag-%d", h.seq)
		h.sqlWrite("insert", "tags", id, func() {
			h.rows["tags"][id] = &mrow{vals: map[string]any{"name": name, "color": nil}, owner: "backend"}
		}, `INSERT INTO tags (id, __owner, name) VALUES ($1, 'backend', $2)`, id, name)
	case "update":
		id := rapid.SampledFrom(live).Draw(rt, "tag")
		h.seq++
		color := fmt.Sprintf("#%06d", h.seq)
		h.sqlWrite("update", "tags", id, func() { h.rows["tags"][id].vals["color"] = color },
			`UPDATE tags SET color = $1 WHERE id = $2`, color, id)
	case "delete":
		id := rapid.SampledFrom(live).Draw(rt, "tag")
		h.sqlWrite("delete", "tags", id, func() { h.rows["tags"][id].deleted = true }, `DELETE FROM tags WHERE id = $1`, id)
	}
}

func (h *accessHistory) backendMember(rt *rapid.T) {
	var live []string
	for id, r := range h.rows["team_members"] {
		if !r.deleted {
			live = append(live, id)
		}
	}
	sort.Strings(live)
	if len(live) > 0 && rapid.Bool().Draw(rt, "remove") {
		id := rapid.SampledFrom(live).Draw(rt, "membership")
		h.sqlWrite("remove a member", "team_members", id, func() { h.rows["team_members"][id].deleted = true },
			`DELETE FROM team_members WHERE id = $1`, id)
		return
	}
	if len(h.teamIDs) == 0 {
		return
	}
	team := rapid.SampledFrom(h.teamIDs).Draw(rt, "team")
	user := rapid.SampledFrom(accessUsers).Draw(rt, "user")
	h.seq++
	id := fmt.Sprintf("bm%d", h.seq)
	h.sqlWrite("add a member", "team_members", id, func() {
		h.rows["team_members"][id] = &mrow{vals: map[string]any{"team_id": team, "user_id": user, "role": "backend"}, owner: "backend"}
	}, `INSERT INTO team_members (id, __owner, team_id, user_id, role) VALUES ($1, 'backend', $2, $3, 'backend')`, id, team, user)
}

func (h *accessHistory) sync(rt *rapid.T) {
	h.st.actions++
	c := h.pick(rt)
	f := rapid.SampledFrom(allFaults).Draw(rt, "fault")
	op := rapid.SampledFrom([]string{"pull", "push"}).Draw(rt, "fault on")
	if f == killBeforeMark {
		op = "push"
	}
	h.runSync(rt, c, op, f)
}

func (h *accessHistory) runSync(rt *rapid.T, c *modelClient, op string, f fault) error {
	h.st.syncs++
	opts := c.remote.Options()
	push := opts.PushChanges
	opts.PushChanges = func(ctx context.Context, req melonsync.PushRequest) (*melonsync.PushResponse, error) {
		resp, err := push(ctx, withLocalChanged(h.ctx, rt, c, req))
		if err == nil && f == killBeforeMark {
			return nil, errKilled
		}
		return resp, err
	}
	if f != killBeforeMark {
		c.plan.set(op, f)
	}
	err := client.Synchronize(h.ctx, c.db, opts)
	hit := c.plan.hit
	c.plan.set("", noFault)
	if f != noFault && (hit || (f == killBeforeMark && err != nil)) {
		h.st.faults[f]++
	}
	if f == killBeforeMark {
		c.db.Close()
		db, oerr := client.Open(c.path, h.sch)
		if oerr != nil {
			rt.Fatalf("client %d: reopen after a kill: %v", c.idx, oerr)
		}
		c.db = db
	}
	if err != nil {
		h.st.failedSyncs++
		if errors.Is(err, client.ErrProgrammer) || errors.Is(err, client.ErrInvalidData) || errors.Is(err, client.ErrAuth) {
			rt.Fatalf("client %d: sync failed with %v", c.idx, err)
		}
	}
	return err
}

// settle syncs every client, without faults, until nothing is left to push but the
// records the server refuses.
func (h *accessHistory) settle() {
	for round := 0; round < 8; round++ {
		h.mu.Lock()
		applied := h.applied
		h.mu.Unlock()
		pending := false
		for _, c := range h.clients {
			var err error
			for attempt := 0; attempt < 4; attempt++ {
				if err = h.runSync(h.rt, c, "", noFault); err == nil {
					break
				}
			}
			if err != nil {
				h.rt.Fatalf("client %d cannot sync without faults: %v", c.idx, err)
			}
			h.failNow()
			if len(h.pending(c)) > 0 {
				pending = true
			}
		}
		h.mu.Lock()
		quiet := h.applied == applied
		h.mu.Unlock()
		// Done when a whole round of syncs wrote nothing: every device has pulled
		// every write.
		if !pending && quiet {
			return
		}
	}
	for _, c := range h.clients {
		if p := h.pending(c); len(p) > 0 {
			h.rt.Fatalf("client %d still has unsynced records the server does not refuse: %v", c.idx, p)
		}
	}
}

// pending lists c's unsynced records that its last push did not have refused.
func (h *accessHistory) pending(c *modelClient) []string {
	var out []string
	err := c.db.Read(h.ctx, func(tx *client.Tx) error {
		for _, t := range accessTables {
			recs, err := tx.Query(t, client.Query{IncludeDeleted: true})
			if err != nil {
				return err
			}
			for _, r := range recs {
				key := t + "/" + r["id"].(string)
				if r["_status"] != client.StatusSynced && !h.lastRefused[c.idx][key] {
					out = append(out, key)
				}
			}
		}
		return nil
	})
	if err != nil {
		h.rt.Fatal(err)
	}
	return out
}

// check compares, after settling, the server's view of every user and every device
// with the model, and the events every user was sent with what they may hear of.
func (h *accessHistory) check() {
	rt := h.rt
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, user := range accessUsers {
		server, err := pullAll(h.srv, h.check0, h.tokens[user])
		if err != nil {
			rt.Fatalf("%s's server view: %v", user, err)
		}
		want := h.view(user)
		// 1. The server serves the user exactly the rows the rules let them read.
		for _, t := range accessTables {
			for id, vals := range want[t] {
				got := server[t][id]
				if got == nil {
					rt.Fatalf("%s may read %s#%s (%v), the server does not send it", user, t, id, vals)
				}
				for col, v := range vals {
					if !reflect.DeepEqual(got[col], v) {
						rt.Fatalf("%s: %s#%s.%s: server %#v, model %#v", user, t, id, col, got[col], v)
					}
				}
			}
			for id, r := range server[t] {
				if want[t][id] == nil {
					rt.Fatalf("the server sends %s %s#%s (%v), which the rules do not let them read (teams %v)", user, t, id, r, keys(h.teamsOf(user)))
				}
			}
		}
		// 2. Every device of the user holds exactly that, besides records of its own
		// that the server keeps refusing.
		for _, c := range h.clients {
			if c.user != user {
				continue
			}
			err := c.db.Read(h.ctx, func(tx *client.Tx) error {
				for _, t := range accessTables {
					recs, err := tx.Query(t, client.Query{IncludeDeleted: true})
					if err != nil {
						return err
					}
					have := map[string]bool{}
					for _, r := range recs {
						id := r["id"].(string)
						have[id] = true
						key := t + "/" + id
						if r["_status"] != client.StatusSynced {
							switch {
							case !h.lastRefused[c.idx][key]:
								rt.Fatalf("client %d: %s is %v after settling and not refused", c.idx, key, r["_status"])
							case want[t][id] == nil && (r["_status"] != client.StatusCreated || !h.localCreated[c.idx][id]):
								rt.Fatalf("client %d (%s) still holds %s (%v), which %s may no longer read (teams %v)", c.idx, user, key, r, user, keys(h.teamsOf(user)))
							}
							continue
						}
						if want[t][id] == nil {
							rt.Fatalf("client %d (%s) holds %s (%v), which %s may not read (teams %v)\n%s", c.idx, user, key, r, user, keys(h.teamsOf(user)), h.story(id))
						}
						for col, v := range want[t][id] {
							if !reflect.DeepEqual(r[col], v) {
								rt.Fatalf("client %d: %s.%s = %#v, the model (and server) %#v\n%s", c.idx, key, col, r[col], v, h.story(id))
							}
						}
					}
					for id := range want[t] {
						if !have[id] {
							rt.Fatalf("client %d (%s) lacks %s#%s, which %s may read\n%s", c.idx, user, t, id, user, h.story(id))
						}
					}
				}
				return nil
			})
			if err != nil {
				rt.Fatal(err)
			}
		}
	}
	h.checkEvents()
}

// checkEvents: every change event a user was sent is for a push whose rows (before or
// after it) the user may read, or a plain SQL write that may concern them.
func (h *accessHistory) checkEvents() {
	for _, u := range accessUsers {
		for _, v := range h.events[u] {
			h.st.events++
			if !h.published[u][v] && !h.published[u][-1] {
				h.rt.Fatalf("%s was sent a change event at version %d, of a write that does not concern them (their versions: %v)", u, v, keys64(h.published[u]))
			}
		}
	}
}

func keys64(m map[int64]bool) []int64 {
	var out []int64
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// summarize lists a pull answer's ids: table{c:created u:updated d:deleted}.
func summarize(pr melonsync.PullResponse) string {
	var parts []string
	for _, t := range accessTables {
		tc := pr.Changes[t]
		if tc == nil || len(tc.Created)+len(tc.Updated)+len(tc.Deleted) == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s{c:%v u:%v d:%v}", t, ids(tc.Created), ids(tc.Updated), tc.Deleted))
	}
	return strings.Join(parts, " ")
}

func ids(recs []melonsync.RawRecord) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, fmt.Sprint(r["id"]))
	}
	return out
}
