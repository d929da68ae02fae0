package reliability_test

// The model test with conflict policies and a write hook (SPEC §9): every history
// draws a policy for each table and a hook that refuses some records (once each),
// rewrites some names and now and then fails. Conflicts come from interleaved syncs:
// another device of the same user syncs between a device's pull and its push. The
// replay in history.expected follows the policies (the push answer's resolvedIds say
// which records a policy settled) and the hook's rewrites; the checks of the plain
// model then hold as they are: the server holds exactly what the accepted pushes,
// the policies and the hook allow, column by column; every device converges; nothing
// is half-applied.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/client"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// hookMark ends every name the model's hook rewrote.
const hookMark = "~h"

// unhooked returns a value as a client wrote it, before the hook rewrote it.
func unhooked(s string) string { return strings.TrimSuffix(s, hookMark) }

// policyModel is one history's conflict policies and write hook.
type policyModel struct {
	sch *schema.Schema
	// rewriteMod > 0: the hook rewrites names whose sequence number it divides.
	// rejectMod > 0: the hook refuses, the first time it sees them, records whose
	// (table, id, name) hash it divides. failEvery > 0: every failEvery-th call fails.
	rewriteMod, rejectMod, failEvery int

	mu      sync.Mutex
	failing bool
	calls   int
	seen    map[string]bool
	kept    map[string]bool // ids whose pushed deletion a policy settled by keeping the record
	st      *policyStats
}

type policyStats struct {
	mu                                                    sync.Mutex
	histories, races, resolved, rejected, rewritten, fail int
	policies                                              map[string]int
}

func (st *policyStats) add(f func(st *policyStats)) {
	st.mu.Lock()
	f(st)
	st.mu.Unlock()
}

// hookRename is the model hook's rewrite of a name, and whether it rewrites it.
func (m *policyModel) hookRename(name string) (string, bool) {
	if m.rewriteMod <= 0 || strings.HasSuffix(name, hookMark) {
		return name, false
	}
	i := strings.LastIndex(name, "-v")
	if i < 0 {
		return name, false
	}
	n, err := strconv.Atoi(name[i+2:])
	if err != nil || n%m.rewriteMod != 0 {
		return name, false
	}
	return name + hookMark, true
}

// call is the write hook.
func (m *policyModel) call(ctx context.Context, body []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.failing && m.failEvery > 0 && m.calls%m.failEvery == 0 {
		m.st.add(func(st *policyStats) { st.fail++ })
		return nil, errors.New("status 500")
	}
	var req struct {
		Changes map[string]struct {
			Created []map[string]any `json:"created"`
			Updated []map[string]any `json:"updated"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	rejected := map[string][]string{}
	reasons := map[string]string{}
	changes := map[string]map[string][]map[string]any{}
	for table, parts := range req.Changes {
		for kind, recs := range map[string][]map[string]any{"created": parts.Created, "updated": parts.Updated} {
			for _, r := range recs {
				id, _ := r["id"].(string)
				name, ok := r["name"].(string)
				if !ok {
					continue
				}
				key := table + "|" + id + "|" + name
				if !m.seen[key] {
					m.seen[key] = true
					h := fnv.New32a()
					h.Write([]byte(key))
					if m.rejectMod > 0 && h.Sum32()%uint32(m.rejectMod) == 0 {
						rejected[table] = append(rejected[table], id)
						reasons[id] = "not yet: " + name
						continue
					}
				}
				if renamed, ok := m.hookRename(name); ok {
					if changes[table] == nil {
						changes[table] = map[string][]map[string]any{}
					}
					changes[table][kind] = append(changes[table][kind], map[string]any{"id": id, "name": renamed})
					m.st.add(func(st *policyStats) { st.rewritten++ })
				}
			}
		}
	}
	return json.Marshal(map[string]any{"rejected": rejected, "reasons": reasons, "changes": changes})
}

// rewritten returns a pushed record as the hook rewrote it (nil model: as is). A
// rewritten column counts as changed by the device, as the server counts it.
func (m *policyModel) rewritten(r melonsync.RawRecord) melonsync.RawRecord {
	if m == nil {
		return r
	}
	name, _ := r["name"].(string)
	renamed, ok := m.hookRename(name)
	if !ok {
		return r
	}
	out := melonsync.RawRecord{}
	for k, v := range r {
		out[k] = v
	}
	out["name"] = renamed
	if ch, ok := out["_changed"].(string); ok && !contains(strings.Split(ch, ","), "name") {
		out["_changed"] = strings.TrimPrefix(ch+",name", ",")
	}
	return out
}

// settled replays a created or updated record that the table's policy settled,
// and reports whether it did (false: replay it as any other record).
func (m *policyModel) settled(p acceptedPush, t *schema.Table, kind string, r melonsync.RawRecord, live map[string]melonsync.RawRecord) bool {
	if m == nil || !contains(p.resolved[t.Name], r["id"].(string)) {
		return false
	}
	pol := m.sch.Policy(t.Name)
	switch pol.Kind {
	case schema.PolicyServerWins:
		return true // the server's record stays
	case schema.PolicyLastWriteWins:
		id := r["id"].(string)
		mine, _ := r[pol.Column].(float64)
		theirs, ok := live[id][pol.Column].(float64)
		if _, sent := r[pol.Column].(float64); sent && (!ok || mine > theirs) {
			rec := melonsync.RawRecord{"id": id}
			for _, col := range t.Columns {
				rec[col.Name] = r[col.Name]
			}
			live[id] = rec
		}
		return true
	default: // client-wins: the device's changed columns, as any update
		return false
	}
}

// keeps reports whether a pushed deletion was settled by keeping the server's record.
func (m *policyModel) keeps(p acceptedPush, t *schema.Table, id string) bool {
	if m == nil || !contains(p.resolved[t.Name], id) {
		return false
	}
	k := m.sch.Policy(t.Name).Kind
	if k == schema.PolicyServerWins || k == schema.PolicyLastWriteWins {
		m.kept[id] = true
		return true
	}
	return false
}

// keptDeletion reports whether a device's deletion of id was settled by keeping the
// server's record: the device's earlier writes to it were given up with the deletion.
func (m *policyModel) keptDeletion(id string) bool { return m != nil && m.kept[id] }

// race edits one record on two devices of alice, then syncs the first while the
// second syncs between its pull and its push: a conflict at the first one's push.
func (h *history) race(rt *rapid.T) {
	h.st.actions++
	a, b := h.clients[0], h.clients[1]
	if rapid.Bool().Draw(rt, "swap") {
		a, b = b, a
	}
	shared := map[string]bool{}
	for table, recs := range localRecords(rt, b, false) {
		for _, r := range recs {
			shared[table+"/"+r["id"].(string)] = true
		}
	}
	var keys []string
	for table, recs := range localRecords(rt, a, false) {
		for _, r := range recs {
			if k := table + "/" + r["id"].(string); shared[k] && table != "comments" {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) > 0 {
		sort.Strings(keys)
		table, id, _ := strings.Cut(rapid.SampledFrom(keys).Draw(rt, "shared record"), "/")
		for _, c := range []*modelClient{a, b} {
			vals := h.values(rt, c, table, false)
			changed := map[string]any{}
			err := c.db.Write(h.ctx, func(tx *client.Tx) error {
				before, err := tx.Find(table, id)
				if err != nil {
					return err
				}
				for col, v := range vals {
					if !reflect.DeepEqual(before[col], v) {
						changed[col] = v // writing the value a column holds changes nothing
					}
				}
				return tx.Update(table, id, vals)
			})
			if err != nil {
				rt.Fatalf("race update: %v", err)
			}
			h.noteWrites(c, table, id, changed)
		}
	}
	h.st.syncs++
	h.pol.st.add(func(st *policyStats) { st.races++ })
	opts := a.remote.Options()
	push := opts.PushChanges
	opts.PushChanges = func(ctx context.Context, req melonsync.PushRequest) (*melonsync.PushResponse, error) {
		resp, err := push(ctx, h.withChanged(rt, a, req))
		if err == nil {
			n := 0
			for _, ids := range resp.ResolvedIDs {
				n += len(ids)
			}
			h.pol.st.add(func(st *policyStats) { st.resolved += n })
		}
		return resp, err
	}
	once := false
	opts.OnDidPullChanges = func(ctx context.Context, _ client.PulledInfo) error {
		if !once {
			once = true
			h.runSync(rt, b, "", noFault)
		}
		return nil
	}
	log := &client.SyncLog{}
	opts.Log = log
	if err := client.Synchronize(h.ctx, a.db, opts); err != nil {
		h.st.failedSyncs++
		if errors.Is(err, client.ErrProgrammer) || errors.Is(err, client.ErrInvalidData) || errors.Is(err, client.ErrAuth) {
			rt.Fatalf("client %d: sync failed with %v", a.idx, err)
		}
	}
	h.pol.st.add(func(st *policyStats) {
		for _, ids := range log.RejectedIDs {
			st.rejected += len(ids)
		}
	})
}

// settleAll syncs every client, with the hook's failures off, until a whole round
// pushes nothing; then every device has pulled every push.
func (h *history) settleAll() {
	h.pol.mu.Lock()
	h.pol.failing = false
	h.pol.mu.Unlock()
	for round := 0; round < 10; round++ {
		pushed := false
		for _, c := range h.clients {
			var err error
			for attempt := 0; attempt < 4; attempt++ {
				before := h.unsynced(c)
				if err = h.runSync(h.rt, c, "", noFault); err == nil {
					pushed = pushed || before > 0
					break
				}
			}
			if err != nil {
				h.rt.Fatalf("client %d cannot sync without faults: %v", c.idx, err)
			}
		}
		if !pushed {
			return
		}
	}
	h.rt.Fatalf("the clients still push after 10 rounds of syncs")
}

func TestPolicyModelSQLite(t *testing.T) {
	runPolicyModel(t, "sqlite", 40, func(rt *rapid.T) func() (server.Store, error) {
		open, _ := sqliteOpener(rt, "melonsync-policy-model-")
		return open
	})
}

func TestPolicyModelPostgres(t *testing.T) {
	testutil.PostgresDSN(t)
	runPolicyModel(t, "postgres", 20, func(rt *rapid.T) func() (server.Store, error) {
		open, _ := postgresOpener(rt, "melon_pmodel")
		return open
	})
}

var policyKinds = []string{schema.PolicyReject, schema.PolicyClientWins, schema.PolicyServerWins, schema.PolicyLastWriteWins}

func runPolicyModel(t *testing.T, name string, defaultHistories int, newStore func(*rapid.T) func() (server.Store, error)) {
	if testing.Short() {
		t.Skip("model test skipped in -short mode")
	}
	defer rapidDefaults(defaultHistories, 50)()
	st := &stats{faults: map[fault]int{}}
	pst := &policyStats{policies: map[string]int{}}
	start := time.Now()
	rapid.Check(t, func(rt *rapid.T) {
		sch, err := schema.Load("../examples/todo/schema.json")
		if err != nil {
			rt.Fatal(err)
		}
		pols := map[string]schema.Policy{}
		for _, table := range []string{"projects", "tasks"} {
			p := schema.Policy{Kind: rapid.SampledFrom(policyKinds).Draw(rt, "policy of "+table)}
			if p.Kind == schema.PolicyLastWriteWins {
				p.Column = "position"
			}
			pols[table] = p
			pst.add(func(st *policyStats) { st.policies[p.String()]++ })
		}
		if err := sch.SetPolicies(pols); err != nil {
			rt.Fatal(err)
		}
		h := newHistory(rt, sch, newStore(rt), st)
		h.pol = &policyModel{sch: sch, failing: true, seen: map[string]bool{}, kept: map[string]bool{}, st: pst,
			rewriteMod: rapid.SampledFrom([]int{0, 3, 5}).Draw(rt, "hook rewrites"),
			rejectMod:  rapid.SampledFrom([]int{0, 2, 4}).Draw(rt, "hook rejects"),
			failEvery:  rapid.SampledFrom([]int{0, 5, 9}).Draw(rt, "hook fails"),
		}
		h.srv.onStart = func(svc *server.Service, _ <-chan struct{}) {
			svc.SetWriteHook(server.HookFunc(h.pol.call), nil)
		}
		if err := h.srv.restart(); err != nil {
			rt.Fatal(err)
		}
		rt.Repeat(map[string]func(*rapid.T){
			"create": h.create,
			"update": h.update,
			"delete": h.delete,
			"sync":   h.sync,
			"steal":  h.steal,
			"race":   h.race,
		})
		h.settleAll()
		h.check()
		pst.add(func(st *policyStats) { st.histories++ })
	})
	var kinds []string
	for k, c := range pst.policies {
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, c))
	}
	sort.Strings(kinds)
	msg := fmt.Sprintf("policy model test (%s): %d histories, %d actions, %d syncs (%d failed), %d interleaved syncs, %d records settled by a policy, %d refused by the hook in interleaved syncs, %d names rewritten, %d hook failures; tables per policy [%s]; %s",
		name, pst.histories, st.actions, st.syncs, st.failedSyncs, pst.races, pst.resolved, pst.rejected, pst.rewritten, pst.fail, strings.Join(kinds, "; "), time.Since(start).Round(time.Millisecond))
	t.Log(msg)
	fmt.Println(msg)
	if pst.histories > 10 && pst.resolved == 0 {
		t.Errorf("no conflict was ever settled by a policy: the test does not exercise them")
	}
}
