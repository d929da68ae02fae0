package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/client"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/transport"
)

// users of the clients: two devices of alice, one of bob, one of carol.
var clientUsers = []string{"alice", "alice", "bob", "carol"}

// stats counts what the histories did.
type stats struct {
	histories, actions, syncs, failedSyncs, writes, steals int
	faults                                                 map[fault]int
}

func TestModelSQLite(t *testing.T) {
	st := &stats{faults: map[fault]int{}}
	runModel(t, "sqlite", 100, st, func(rt *rapid.T) func() (server.Store, error) {
		open, _ := sqliteOpener(rt, "melonsync-model-")
		return open
	})
}

func TestModelPostgres(t *testing.T) {
	testutil.PostgresDSN(t)
	st := &stats{faults: map[fault]int{}}
	runModel(t, "postgres", 60, st, func(rt *rapid.T) func() (server.Store, error) {
		open, _ := postgresOpener(rt, "melon_model")
		return open
	})
}

func runModel(t *testing.T, name string, defaultHistories int, st *stats, newStore func(*rapid.T) func() (server.Store, error)) {
	if testing.Short() {
		t.Skip("model test skipped in -short mode")
	}
	defer rapidDefaults(defaultHistories, 60)()
	sch, err := schema.Load("../examples/todo/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rapid.Check(t, func(rt *rapid.T) {
		h := newHistory(rt, sch, newStore(rt), st)
		rt.Repeat(map[string]func(*rapid.T){
			"create": h.create,
			"update": h.update,
			"delete": h.delete,
			"sync":   h.sync,
			"steal":  h.steal,
		})
		h.settle()
		h.check()
		st.histories++
	})
	var kinds []string
	for f, c := range st.faults {
		kinds = append(kinds, fmt.Sprintf("%s: %d", f, c))
	}
	sort.Strings(kinds)
	total := 0
	for _, c := range st.faults {
		total += c
	}
	msg := fmt.Sprintf("model test (%s): %d histories, %d actions, %d local writes, %d cross-user attempts, %d syncs (%d failed), %d faults injected [%s]; %s",
		name, st.histories, st.actions, st.writes, st.steals, st.syncs, st.failedSyncs, total, strings.Join(kinds, "; "), time.Since(start).Round(time.Millisecond))
	t.Log(msg)
	fmt.Println(msg)
}

// modelClient is one Go client: its database file, its transport and its fault plan.
type modelClient struct {
	idx    int
	user   string
	path   string
	db     *client.DB
	remote *transport.Client
	plan   *faultPlan
}

// history is one random history: a server, the clients, and what the model knows.
type history struct {
	rt      *rapid.T
	sch     *schema.Schema
	srv     *testServer
	clients []*modelClient
	st      *stats
	check0  *http.Client
	tokens  map[string]string
	ctx     context.Context

	accepted  []acceptedPush
	owner     map[string]string            // id → the user who created it
	valueUser map[string]string            // string value → the user who wrote it
	lastWrite map[string]any               // client|table|id|column → last value written there
	stolen    map[int]map[string]bool      // client → ids it created over another user's record
	created   map[string]map[string]string // user → id → table, of records a client created
	deletes   []localDelete
	seq       int
	// pol, when set, holds the conflict policies and the write hook of the history
	// (policy_model_test.go); the replay in expected follows them.
	pol *policyModel
}

func newHistory(rt *rapid.T, sch *schema.Schema, open func() (server.Store, error), st *stats) *history {
	auth, err := mhttp.NewAuth([]byte("model-test-secret-0123456789abcdef"))
	if err != nil {
		rt.Fatal(err)
	}
	h := &history{
		rt: rt, sch: sch, st: st, ctx: context.Background(),
		srv:       &testServer{open: open, sch: sch, auth: auth},
		tokens:    map[string]string{},
		owner:     map[string]string{},
		valueUser: map[string]string{},
		lastWrite: map[string]any{},
		stolen:    map[int]map[string]bool{},
		created:   map[string]map[string]string{},
	}
	if err := h.srv.start(); err != nil {
		rt.Fatal(err)
	}
	rt.Cleanup(h.srv.stop)
	base := http.DefaultTransport.(*http.Transport).Clone()
	h.check0 = &http.Client{Transport: &faultTransport{srv: h.srv, plan: &faultPlan{}, next: base, base: base}, Timeout: 30 * time.Second}
	dir, err := os.MkdirTemp("", "melonsync-model-clients-")
	if err != nil {
		rt.Fatal(err)
	}
	rt.Cleanup(func() { os.RemoveAll(dir) })
	for i, user := range clientUsers {
		if h.tokens[user] == "" {
			tok, err := auth.Mint(user, time.Hour)
			if err != nil {
				rt.Fatal(err)
			}
			h.tokens[user] = tok
		}
		c := newModelClient(rt, dir, i, user, h.tokens[user], sch, h.srv, func(next http.RoundTripper) http.RoundTripper {
			return &recordingTransport{client: i, user: user, next: next, log: func(p acceptedPush) { h.accepted = append(h.accepted, p) }}
		})
		h.clients = append(h.clients, c)
	}
	return h
}

func (h *history) value(user string) string {
	h.seq++
	v := fmt.Sprintf("%s-v%d", user, h.seq)
	h.valueUser[v] = user
	return v
}

func (h *history) pickClient(rt *rapid.T) *modelClient {
	return h.clients[rapid.IntRange(0, len(h.clients)-1).Draw(rt, "client")]
}

// values draws new values for some columns of table, written by c.
func (h *history) values(rt *rapid.T, c *modelClient, table string, all bool) map[string]any {
	vals := map[string]any{}
	for _, col := range h.sch.Table(table).Columns {
		if col.Name == "project_id" || col.Name == "task_id" {
			continue
		}
		if !all && !rapid.Bool().Draw(rt, "set "+col.Name) {
			continue
		}
		switch col.Type {
		case schema.String:
			vals[col.Name] = h.value(c.user)
		case schema.Number:
			vals[col.Name] = float64(rapid.IntRange(-1000, 1000).Draw(rt, col.Name))
		case schema.Boolean:
			vals[col.Name] = rapid.Bool().Draw(rt, col.Name)
		}
	}
	if len(vals) == 0 {
		vals["name"] = h.value(c.user)
	}
	return vals
}

func (h *history) noteWrites(c *modelClient, table, id string, vals map[string]any) {
	for col, v := range vals {
		h.lastWrite[fmt.Sprintf("%d|%s|%s|%s", c.idx, table, id, col)] = v
	}
	h.st.writes++
}

func (h *history) create(rt *rapid.T) {
	h.st.actions++
	c := h.pickClient(rt)
	table := rapid.SampledFrom([]string{"projects", "tasks"}).Draw(rt, "table")
	vals := h.values(rt, c, table, true)
	var id string
	err := c.db.Write(h.ctx, func(tx *client.Tx) error {
		rec, err := tx.Create(table, vals)
		if err == nil {
			id = rec["id"].(string)
		}
		return err
	})
	if err != nil {
		rt.Fatalf("create: %v", err)
	}
	h.owner[id] = c.user
	if h.created[c.user] == nil {
		h.created[c.user] = map[string]string{}
	}
	h.created[c.user][id] = table
	h.noteWrites(c, table, id, vals)
}

// localRecords returns c's records (marked-as-deleted ones only when withDeleted),
// table by table.
func localRecords(rt *rapid.T, c *modelClient, withDeleted bool) map[string][]client.Record {
	out := map[string][]client.Record{}
	err := c.db.Read(context.Background(), func(tx *client.Tx) error {
		for _, t := range []string{"projects", "tasks", "comments"} {
			recs, err := tx.Query(t, client.Query{IncludeDeleted: withDeleted})
			if err != nil {
				return err
			}
			sort.Slice(recs, func(i, j int) bool { return recs[i]["id"].(string) < recs[j]["id"].(string) })
			out[t] = recs
		}
		return nil
	})
	if err != nil {
		rt.Fatalf("read client %d: %v", c.idx, err)
	}
	return out
}

// pickLocal draws one of c's live records, or returns false when it has none.
func (h *history) pickLocal(rt *rapid.T, c *modelClient) (string, string, bool) {
	recs := localRecords(rt, c, false)
	var keys []string
	for _, t := range []string{"projects", "tasks"} {
		for _, r := range recs[t] {
			keys = append(keys, t+"/"+r["id"].(string))
		}
	}
	if len(keys) == 0 {
		return "", "", false
	}
	table, id, _ := strings.Cut(rapid.SampledFrom(keys).Draw(rt, "record"), "/")
	return table, id, true
}

func (h *history) update(rt *rapid.T) {
	h.st.actions++
	c := h.pickClient(rt)
	table, id, ok := h.pickLocal(rt, c)
	if !ok {
		return
	}
	vals := h.values(rt, c, table, false)
	changed := map[string]any{}
	err := c.db.Write(h.ctx, func(tx *client.Tx) error {
		before, err := tx.Find(table, id)
		if err != nil {
			return err
		}
		// Writing the value a column already holds changes nothing (as in
		// WatermelonDB): there is nothing to push.
		for col, v := range vals {
			if !reflect.DeepEqual(before[col], v) {
				changed[col] = v
			}
		}
		return tx.Update(table, id, vals)
	})
	if err != nil {
		rt.Fatalf("update: %v", err)
	}
	h.noteWrites(c, table, id, changed)
}

func (h *history) delete(rt *rapid.T) {
	h.st.actions++
	c := h.pickClient(rt)
	table, id, ok := h.pickLocal(rt, c)
	if !ok {
		return
	}
	if err := c.db.Write(h.ctx, func(tx *client.Tx) error { return tx.MarkAsDeleted(table, id) }); err != nil {
		rt.Fatalf("delete: %v", err)
	}
	h.deletes = append(h.deletes, localDelete{c.idx, table, id})
}

// localDelete is a record a client marked as deleted.
type localDelete struct {
	client    int
	table, id string
}

// steal: a client creates a record with the id of another user's record that is on
// the server. The server must refuse it, every time it is pushed.
func (h *history) steal(rt *rapid.T) {
	h.st.actions++
	c := h.pickClient(rt)
	var ids []string
	for _, p := range h.accepted {
		if p.user == c.user {
			continue
		}
		for table, tc := range p.changes {
			for _, r := range tc.Created {
				id := r["id"].(string)
				if h.owner[id] == p.user && !contains(p.rejected[table], id) {
					ids = append(ids, table+"/"+id)
				}
			}
		}
	}
	if len(ids) == 0 {
		return
	}
	sort.Strings(ids)
	table, id, _ := strings.Cut(rapid.SampledFrom(ids).Draw(rt, "victim"), "/")
	var exists bool
	c.db.Read(h.ctx, func(tx *client.Tx) error {
		_, err := tx.Find(table, id)
		exists = err == nil
		return nil
	})
	if exists {
		return
	}
	vals := h.values(rt, c, table, true)
	vals["id"] = id
	if err := c.db.Write(h.ctx, func(tx *client.Tx) error { _, err := tx.Create(table, vals); return err }); err != nil {
		rt.Fatalf("steal: %v", err)
	}
	if h.stolen[c.idx] == nil {
		h.stolen[c.idx] = map[string]bool{}
	}
	h.stolen[c.idx][id] = true
	h.st.steals++
}

var allFaults = []fault{noFault, noFault, noFault, dropRequest, dropResponse, restartBefore, restartAfter, killBeforeMark}

func (h *history) sync(rt *rapid.T) {
	h.st.actions++
	c := h.pickClient(rt)
	f := rapid.SampledFrom(allFaults).Draw(rt, "fault")
	op := rapid.SampledFrom([]string{"pull", "push"}).Draw(rt, "fault on")
	if f == killBeforeMark {
		op = "push"
	}
	h.runSync(rt, c, op, f)
}

var errKilled = errors.New(errInjectedText + string(killBeforeMark))

func (h *history) runSync(rt *rapid.T, c *modelClient, op string, f fault) error {
	h.st.syncs++
	opts := c.remote.Options()
	push := opts.PushChanges
	opts.PushChanges = func(ctx context.Context, req melonsync.PushRequest) (*melonsync.PushResponse, error) {
		resp, err := push(ctx, h.withChanged(rt, c, req))
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
	if f != noFault && (hit || (f == killBeforeMark && errors.Is(err, errKilled))) {
		h.st.faults[f]++
	}
	if f == killBeforeMark {
		// The process dies: close the file as it is and open it again.
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

// withChanged returns req with each updated record's local "_changed" added, as
// WatermelonDB sends it (the server ignores it; the model needs it).
func (h *history) withChanged(rt *rapid.T, c *modelClient, req melonsync.PushRequest) melonsync.PushRequest {
	return withLocalChanged(h.ctx, rt, c, req)
}

// withLocalChanged returns req with each updated record's "_changed" from c's
// database.
func withLocalChanged(ctx context.Context, rt *rapid.T, c *modelClient, req melonsync.PushRequest) melonsync.PushRequest {
	out := melonsync.PushRequest{LastPulledAt: req.LastPulledAt, Changes: melonsync.Changes{}}
	err := c.db.Read(ctx, func(tx *client.Tx) error {
		for table, tc := range req.Changes {
			n := *tc
			n.Updated = nil
			for _, r := range tc.Updated {
				local, err := tx.Find(table, r["id"].(string))
				if err != nil {
					return err
				}
				cp := melonsync.RawRecord{}
				for k, v := range r {
					cp[k] = v
				}
				cp["_changed"] = local["_changed"]
				n.Updated = append(n.Updated, cp)
			}
			out.Changes[table] = &n
		}
		return nil
	})
	if err != nil {
		rt.Fatalf("client %d: read _changed: %v", c.idx, err)
	}
	return out
}

// settle syncs every client, without faults, until nothing is left to push.
func (h *history) settle() {
	for round := 0; round < 6; round++ {
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
			if h.unsynced(c) > 0 {
				pending = true
			}
		}
		if !pending && round > 0 {
			return
		}
	}
	for _, c := range h.clients {
		if n := h.unsynced(c); n > 0 {
			h.rt.Fatalf("client %d still has %d unsynced record(s) after syncing without faults", c.idx, n)
		}
	}
}

// unsynced counts c's local changes, leaving out the records the server keeps
// refusing (created over another user's id).
func (h *history) unsynced(c *modelClient) int {
	n := 0
	for _, recs := range localRecords(h.rt, c, true) {
		for _, r := range recs {
			if r["_status"] != client.StatusSynced && !h.stolen[c.idx][r["id"].(string)] {
				n++
			}
		}
	}
	return n
}

// expected replays the accepted pushes of user as the protocol says the server
// applies them: created records whole, updated records' changed columns, deletions
// for good; refused ids not at all. It returns the live records and the deleted ids.
func (h *history) expected(user string) (map[string]map[string]melonsync.RawRecord, map[string]bool) {
	live := map[string]map[string]melonsync.RawRecord{}
	dead := map[string]bool{}
	for _, p := range h.accepted {
		if p.user != user {
			continue
		}
		for _, t := range h.sch.Tables {
			tc := p.changes[t.Name]
			if tc == nil {
				continue
			}
			if live[t.Name] == nil {
				live[t.Name] = map[string]melonsync.RawRecord{}
			}
			refused := p.rejected[t.Name]
			whole := func(r melonsync.RawRecord) {
				rec := melonsync.RawRecord{"id": r["id"]}
				for _, col := range t.Columns {
					rec[col.Name] = r[col.Name]
				}
				live[t.Name][r["id"].(string)] = rec
			}
			for _, r := range tc.Created {
				if id := r["id"].(string); !contains(refused, id) && !dead[id] {
					if r = h.pol.rewritten(r); h.pol.settled(p, t, "created", r, live[t.Name]) {
						continue
					}
					whole(r)
				}
			}
			for _, r := range tc.Updated {
				id := r["id"].(string)
				if contains(refused, id) || dead[id] {
					continue
				}
				if r = h.pol.rewritten(r); h.pol.settled(p, t, "updated", r, live[t.Name]) {
					continue
				}
				cur := live[t.Name][id]
				if cur == nil {
					whole(r) // an update of a record the server does not have creates it
					continue
				}
				changed, _ := r["_changed"].(string)
				for _, col := range strings.Split(changed, ",") {
					if col != "" {
						cur[col] = r[col]
					}
				}
			}
			for _, id := range tc.Deleted {
				if !contains(refused, id) {
					if h.pol.keeps(p, t, id) {
						continue
					}
					delete(live[t.Name], id)
					dead[id] = true
				}
			}
		}
	}
	return live, dead
}

func (h *history) check() {
	rt := h.rt
	allDead := map[string]bool{}
	for _, user := range []string{"alice", "bob", "carol"} {
		server, err := pullAll(h.srv, h.check0, h.tokens[user])
		if err != nil {
			rt.Fatalf("%s's server view: %v", user, err)
		}
		want, dead := h.expected(user)
		for id := range dead {
			allDead[id] = true
		}
		// 1. The server holds exactly what the accepted pushes say, column by column.
		for _, t := range h.sch.Tables {
			got, exp := server[t.Name], want[t.Name]
			if len(got) != len(exp) {
				rt.Fatalf("%s/%s: the server has %d records, the model %d\nserver %v\nmodel  %v", user, t.Name, len(got), len(exp), got, exp)
			}
			for id, e := range exp {
				g := got[id]
				if g == nil {
					rt.Fatalf("%s/%s#%s: accepted by the server but missing", user, t.Name, id)
				}
				for col, v := range e {
					if !reflect.DeepEqual(g[col], v) {
						rt.Fatalf("%s/%s#%s.%s: server %#v, model %#v (a lost update)", user, t.Name, id, col, g[col], v)
					}
				}
			}
		}
		for _, c := range h.clients {
			if c.user != user {
				continue
			}
			// 2. Every client of the user holds exactly the server's view (besides
			// the records the server keeps refusing).
			local := localRecords(rt, c, true)
			for _, t := range h.sch.Tables {
				n := 0
				for _, r := range local[t.Name] {
					id := r["id"].(string)
					if h.stolen[c.idx][id] {
						continue
					}
					n++
					s := server[t.Name][id]
					if s == nil {
						rt.Fatalf("client %d (%s) has %s#%s (%v), the server does not", c.idx, user, t.Name, id, r)
					}
					if r["_status"] != client.StatusSynced {
						rt.Fatalf("client %d: %s#%s is %v after settling", c.idx, t.Name, id, r["_status"])
					}
					for _, col := range t.Columns {
						if !reflect.DeepEqual(r[col.Name], s[col.Name]) {
							rt.Fatalf("client %d: %s#%s.%s = %#v, server %#v", c.idx, t.Name, id, col.Name, r[col.Name], s[col.Name])
						}
					}
				}
				if n != len(server[t.Name]) {
					rt.Fatalf("client %d (%s) has %d %s, the server %d", c.idx, user, n, t.Name, len(server[t.Name]))
				}
			}
		}
		// 3. Every client's last write to a column reached the server, unless the
		// record was deleted.
		for key, v := range h.lastWrite {
			parts := strings.SplitN(key, "|", 4)
			ci, table, id, col := parts[0], parts[1], parts[2], parts[3]
			c := h.clients[atoi(ci)]
			if c.user != user || dead[id] || h.stolen[c.idx][id] || h.pol.keptDeletion(id) {
				continue
			}
			if !h.pushedBy(c.idx, table, id, col, v) {
				rt.Fatalf("client %d's last write %s#%s.%s = %#v never reached the server\n%s", c.idx, table, id, col, v, h.trace(table, id))
			}
		}
	}
	// 6. Every local deletion reached the server (no lost delete).
	for _, d := range h.deletes {
		if h.stolen[d.client][d.id] {
			continue
		}
		found := false
		for _, p := range h.accepted {
			if tc := p.changes[d.table]; tc != nil && contains(tc.Deleted, d.id) && !contains(p.rejected[d.table], d.id) {
				found = true
				break
			}
		}
		if !found {
			rt.Fatalf("client %d deleted %s#%s, the deletion never reached the server\n%s", d.client, d.table, d.id, h.trace(d.table, d.id))
		}
	}
	for _, c := range h.clients {
		local := localRecords(rt, c, true)
		for table, recs := range local {
			for _, r := range recs {
				id := r["id"].(string)
				// 4. Nothing whose deletion the server accepted comes back.
				if allDead[id] && !h.stolen[c.idx][id] {
					rt.Fatalf("client %d: %s#%s was deleted, yet it is here: %v", c.idx, table, id, r)
				}
				// 5. No record or value of another user reaches a client.
				if h.owner[id] != c.user && !h.stolen[c.idx][id] {
					rt.Fatalf("client %d (%s) holds %s#%s of %s", c.idx, c.user, table, id, h.owner[id])
				}
				for col, v := range r {
					if s, ok := v.(string); ok && strings.HasPrefix(col, "_") == false && s != "" && h.valueUser[unhooked(s)] != c.user && col != "id" {
						rt.Fatalf("client %d (%s): %s#%s.%s = %q, written by %s", c.idx, c.user, table, id, col, s, h.valueUser[s])
					}
				}
			}
		}
	}
}

// trace describes what happened to table#id: every accepted push that named it and
// every client's copy.
func (h *history) trace(table, id string) string {
	var b strings.Builder
	for i, p := range h.accepted {
		tc := p.changes[table]
		if tc == nil {
			continue
		}
		for _, r := range tc.Created {
			if r["id"] == id {
				fmt.Fprintf(&b, "  push %d by client %d: created %v (refused: %v)\n", i, p.client, r, contains(p.rejected[table], id))
			}
		}
		for _, r := range tc.Updated {
			if r["id"] == id {
				fmt.Fprintf(&b, "  push %d by client %d: updated %v (refused: %v)\n", i, p.client, r, contains(p.rejected[table], id))
			}
		}
		if contains(tc.Deleted, id) {
			fmt.Fprintf(&b, "  push %d by client %d: deleted (refused: %v)\n", i, p.client, contains(p.rejected[table], id))
		}
	}
	for _, c := range h.clients {
		c.db.Read(h.ctx, func(tx *client.Tx) error {
			if r, err := tx.Find(table, id); err == nil {
				fmt.Fprintf(&b, "  client %d has %v\n", c.idx, r)
			}
			return nil
		})
	}
	return b.String()
}

// pushedBy reports whether an accepted push of client ci carried table#id with col
// changed to v.
func (h *history) pushedBy(ci int, table, id, col string, v any) bool {
	for _, p := range h.accepted {
		if p.client != ci || contains(p.rejected[table], id) {
			continue
		}
		tc := p.changes[table]
		if tc == nil {
			continue
		}
		for _, r := range tc.Created {
			if r["id"] == id && reflect.DeepEqual(r[col], v) {
				return true
			}
		}
		for _, r := range tc.Updated {
			changed, _ := r["_changed"].(string)
			if r["id"] == id && reflect.DeepEqual(r[col], v) && contains(strings.Split(changed, ","), col) {
				return true
			}
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
