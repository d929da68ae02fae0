package reliability_test

import (
	"fmt"
	"hash/fnv"
	"math"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

// The consistency checker of the concurrent histories (history_test.go); doc.go says
// what it checks and why that is exactly SPEC §3.

// hOp is one recorded request and its answer.
type hOp struct {
	user, device string
	kind         string // "pull" or "push"
	call, ret    int64  // nanoseconds since the history began
	// since is the request's lastPulledAt (0 for a pull's null).
	since int64
	// changes is what a push sent.
	changes melonsync.Changes
	// outcome: outOK (200), outConflict (409), outUnknown (a push whose answer was
	// lost or was 503: it may or may not have been applied).
	outcome   int
	pull      *melonsync.PullResponse
	pushTS    int64
	conflicts map[string][]string
}

const (
	outOK = iota
	outConflict
	outUnknown
)

// mrec is one record as the model holds it.
type mrec struct {
	table   string
	alive   bool
	vals    map[string]any
	created int    // step of the (re)creation
	creator string // device that pushed the creation
	last    int    // step of the last change (creation, update or deletion)
	lastDev string // device of the last change
}

// cut names the state a pull saw: the pull's timestamp and how many writes the model
// had applied then.
type cut struct {
	ts   int64
	step int
}

// hState is the model's state: immutable, each Step returns a new one.
type hState struct {
	step int
	recs map[string]*mrec // "table/id" → record
	cuts []cut            // sorted by ts
}

// historyModel is SPEC §3 as a sequential specification of one user's data.
type historyModel struct {
	sch *schema.Schema
}

func (m historyModel) porcupine() porcupine.Model {
	nd := porcupine.NondeterministicModel{
		Init: func() []any { return []any{&hState{recs: map[string]*mrec{}}} },
		Step: func(state, input, output any) []any {
			return m.step(state.(*hState), input.(*hOp))
		},
		Equal: func(a, b any) bool { return a.(*hState).equal(b.(*hState)) },
		Hash:  func(s any) uint64 { return s.(*hState).hash() },
		DescribeOperation: func(input, output any) string {
			return input.(*hOp).String()
		},
		DescribeState: func(s any) string { return s.(*hState).String() },
	}
	return nd.ToModel()
}

// cutStep returns the step the timestamp ts names in s (0 for ts 0: nothing seen).
func (s *hState) cutStep(ts int64) (int, bool) {
	if ts == 0 {
		return 0, true
	}
	i := sort.Search(len(s.cuts), func(i int) bool { return s.cuts[i].ts >= ts })
	if i < len(s.cuts) && s.cuts[i].ts == ts {
		return s.cuts[i].step, true
	}
	return 0, false
}

func (m historyModel) step(s *hState, op *hOp) []any {
	if op.kind == "pull" {
		if n, ok := m.pull(s, op); ok {
			return []any{n}
		}
		return nil
	}
	conflicts, next, ok := m.push(s, op)
	if !ok {
		return nil
	}
	switch op.outcome {
	case outOK:
		if len(conflicts) == 0 {
			return []any{next}
		}
	case outConflict:
		if sameIDs(conflicts, op.conflicts) {
			return []any{s}
		}
	case outUnknown:
		if len(conflicts) == 0 {
			return []any{s, next}
		}
		return []any{s}
	}
	return nil
}

// pull checks a pull's answer against s: with lastPulledAt null every live record as
// created; otherwise every record changed after the cut lastPulledAt names, created
// or updated by SPEC §3 pull rule 4, deleted ones by id. The answer's timestamp then
// names s, and cuts must stay monotone: a higher timestamp never names an older
// state, one timestamp never two states.
func (m historyModel) pull(s *hState, op *hOp) (*hState, bool) {
	since, ok := s.cutStep(op.since)
	if !ok {
		return nil, false // a lastPulledAt this user's pulls never handed out (yet)
	}
	if !m.answerMatches(s, op, since) {
		return nil, false
	}
	ts := op.pull.Timestamp
	i := sort.Search(len(s.cuts), func(i int) bool { return s.cuts[i].ts >= ts })
	if i < len(s.cuts) {
		if s.cuts[i].ts == ts {
			if s.cuts[i].step != s.step {
				return nil, false
			}
			return s, true
		}
		// Every cut with a higher timestamp must name this same state.
		for _, c := range s.cuts[i:] {
			if c.step != s.step {
				return nil, false
			}
		}
	}
	n := &hState{step: s.step, recs: s.recs, cuts: make([]cut, 0, len(s.cuts)+1)}
	n.cuts = append(append(append(n.cuts, s.cuts[:i]...), cut{ts, s.step}), s.cuts[i:]...)
	return n, true
}

func (m historyModel) answerMatches(s *hState, op *hOp, since int) bool {
	got := op.pull.Changes
	first := op.since == 0
	want := 0
	for key, r := range s.recs {
		table, id, _ := strings.Cut(key, "/")
		if !first && r.last <= since || first && !r.alive {
			continue
		}
		tc := got[table]
		if tc == nil {
			return false
		}
		want++
		switch {
		case !r.alive:
			if !containsID(tc.Deleted, id) {
				return false
			}
		case first || r.created > since && r.creator != op.device:
			if !m.sameRecord(r, findRecord(tc.Created, id)) {
				return false
			}
		default:
			if !m.sameRecord(r, findRecord(tc.Updated, id)) {
				return false
			}
		}
	}
	n := 0
	for _, tc := range got {
		if tc != nil {
			n += len(tc.Created) + len(tc.Updated) + len(tc.Deleted)
		}
	}
	return n == want // nothing more (and no id twice)
}

func (m historyModel) sameRecord(r *mrec, got melonsync.RawRecord) bool {
	if got == nil {
		return false
	}
	for _, col := range m.sch.Table(r.table).Columns {
		if !reflect.DeepEqual(got[col.Name], r.vals[col.Name]) {
			return false
		}
	}
	return true
}

// push runs a push on s as SPEC §3 push rules 2–5 say: it returns the ids that are
// conflicts (then nothing applies) and, when there are none, the state after it.
func (m historyModel) push(s *hState, op *hOp) (map[string][]string, *hState, bool) {
	since, ok := s.cutStep(op.since)
	if !ok {
		return nil, nil, false
	}
	changedSince := func(r *mrec) bool { return r.last > since && r.lastDev != op.device }
	conflicts := map[string][]string{}
	type write struct {
		key  string
		kind string
		rec  melonsync.RawRecord
	}
	var writes []write
	for _, t := range m.sch.Tables {
		tc := op.changes[t.Name]
		if tc == nil {
			continue
		}
		for _, r := range tc.Created {
			key := t.Name + "/" + r["id"].(string)
			cur := s.recs[key]
			switch {
			case cur == nil || !cur.alive && !changedSince(cur):
				writes = append(writes, write{key, "insert", r})
			case changedSince(cur):
				conflicts[t.Name] = append(conflicts[t.Name], r["id"].(string))
			default:
				writes = append(writes, write{key, "update", r})
			}
		}
		for _, r := range tc.Updated {
			key := t.Name + "/" + r["id"].(string)
			cur := s.recs[key]
			switch {
			case cur == nil:
				writes = append(writes, write{key, "insert", r})
			case !cur.alive || changedSince(cur):
				conflicts[t.Name] = append(conflicts[t.Name], r["id"].(string))
			default:
				writes = append(writes, write{key, "update", r})
			}
		}
		for _, id := range tc.Deleted {
			key := t.Name + "/" + id
			cur := s.recs[key]
			switch {
			case cur == nil || !cur.alive:
			case changedSince(cur):
				conflicts[t.Name] = append(conflicts[t.Name], id)
			default:
				writes = append(writes, write{key, "delete", nil})
			}
		}
	}
	if len(conflicts) > 0 || len(writes) == 0 {
		return conflicts, s, true
	}
	n := &hState{step: s.step + 1, recs: make(map[string]*mrec, len(s.recs)+len(writes)), cuts: s.cuts}
	for k, r := range s.recs {
		n.recs[k] = r
	}
	for _, w := range writes {
		table, _, _ := strings.Cut(w.key, "/")
		var r *mrec
		switch w.kind {
		case "insert":
			r = &mrec{table: table, alive: true, vals: map[string]any{}, created: n.step, creator: op.device}
			for _, col := range m.sch.Table(table).Columns {
				r.vals[col.Name] = col.Default()
			}
		case "update":
			cp := *n.recs[w.key]
			cp.vals = copyVals(cp.vals)
			r = &cp
		case "delete":
			cp := *n.recs[w.key]
			cp.alive = false
			r = &cp
		}
		for _, col := range m.sch.Table(table).Columns {
			if v, ok := w.rec[col.Name]; ok {
				r.vals[col.Name] = v
			}
		}
		r.last, r.lastDev = n.step, op.device
		n.recs[w.key] = r
	}
	return nil, n, true
}

func copyVals(v map[string]any) map[string]any {
	out := make(map[string]any, len(v))
	for k, x := range v {
		out[k] = x
	}
	return out
}

func (s *hState) equal(o *hState) bool {
	if s.step != o.step || len(s.recs) != len(o.recs) || len(s.cuts) != len(o.cuts) {
		return false
	}
	for i := range s.cuts {
		if s.cuts[i] != o.cuts[i] {
			return false
		}
	}
	for k, r := range s.recs {
		x := o.recs[k]
		if x == nil || r.alive != x.alive || r.created != x.created || r.creator != x.creator ||
			r.last != x.last || r.lastDev != x.lastDev || !reflect.DeepEqual(r.vals, x.vals) {
			return false
		}
	}
	return true
}

func (s *hState) hash() uint64 {
	h := uint64(s.step)*1000003 ^ uint64(len(s.cuts))
	for k, r := range s.recs {
		f := fnv.New64a()
		fmt.Fprint(f, k, r.alive, r.last, r.lastDev, r.created)
		h ^= f.Sum64()
	}
	return h
}

func (s *hState) String() string {
	keys := make([]string, 0, len(s.recs))
	for k := range s.recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "step %d, %d cuts; ", s.step, len(s.cuts))
	for _, k := range keys {
		r := s.recs[k]
		fmt.Fprintf(&b, "%s alive=%v last=%d(%s) name=%v; ", k, r.alive, r.last, r.lastDev, r.vals["name"])
	}
	return b.String()
}

func (op *hOp) String() string {
	switch op.kind {
	case "pull":
		return fmt.Sprintf("%s pull since %d → ts %d %s", op.device, op.since, op.pull.Timestamp, describeChanges(op.pull.Changes))
	default:
		out := map[int]string{outOK: fmt.Sprintf("ok ts %d", op.pushTS), outConflict: fmt.Sprintf("409 %v", op.conflicts), outUnknown: "unknown"}[op.outcome]
		return fmt.Sprintf("%s push lastPulledAt %d %s → %s", op.device, op.since, describeChanges(op.changes), out)
	}
}

func describeChanges(c melonsync.Changes) string {
	var parts []string
	for _, table := range sortedKeys(c) {
		tc := c[table]
		if tc == nil {
			continue
		}
		for _, r := range tc.Created {
			parts = append(parts, fmt.Sprintf("+%s/%v(%v)", table, r["id"], r["name"]))
		}
		for _, r := range tc.Updated {
			parts = append(parts, fmt.Sprintf("~%s/%v(%v)", table, r["id"], r["name"]))
		}
		for _, id := range tc.Deleted {
			parts = append(parts, fmt.Sprintf("-%s/%s", table, id))
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func findRecord(recs []melonsync.RawRecord, id string) melonsync.RawRecord {
	for _, r := range recs {
		if r["id"] == id {
			return r
		}
	}
	return nil
}

func containsID(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func sameIDs(a, b map[string][]string) bool {
	norm := func(m map[string][]string) map[string][]string {
		out := map[string][]string{}
		for t, ids := range m {
			if len(ids) == 0 {
				continue
			}
			cp := append([]string(nil), ids...)
			sort.Strings(cp)
			out[t] = cp
		}
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// undecided is in checkHistory's message when porcupine ran out of time.
const undecided = "the checker found no answer"

// checkHistory checks ops (all users') and returns what is wrong, or "" when the
// history is explained by SPEC §3. Each user's operations are checked on their own:
// users share no records, only the clock.
func checkHistory(sch *schema.Schema, ops []*hOp, timeout time.Duration) string {
	if msg := checkTimestamps(ops); msg != "" {
		return msg
	}
	byUser := map[string][]porcupine.Operation{}
	devices := map[string]int{}
	for _, op := range ops {
		if _, ok := devices[op.device]; !ok {
			devices[op.device] = len(devices)
		}
		ret := op.ret
		byUser[op.user] = append(byUser[op.user], porcupine.Operation{ClientId: devices[op.device], Input: op, Output: op, Call: op.call, Return: ret})
	}
	model := historyModel{sch}.porcupine()
	for _, user := range sortedKeys(byUser) {
		res, info := porcupine.CheckOperationsVerbose(model, byUser[user], timeout)
		switch res {
		case porcupine.Ok:
			continue
		case porcupine.Unknown:
			return fmt.Sprintf("%s: %s within %v (%d operations)", user, undecided, timeout, len(byUser[user]))
		}
		return fmt.Sprintf("%s's history is not explained by any serial order of its pushes:\n%s", user, explain(info))
	}
	return ""
}

// explain describes the longest partial linearization porcupine found and the
// operations that could not follow it.
func explain(info porcupine.LinearizationInfo) string {
	var b strings.Builder
	for _, part := range info.PartialLinearizationsOperations() {
		var longest []porcupine.Operation
		for _, l := range part {
			if len(l) > len(longest) {
				longest = l
			}
		}
		start := max(0, len(longest)-12)
		fmt.Fprintf(&b, "  … the last %d of %d operations explained:\n", len(longest)-start, len(longest))
		for _, op := range longest[start:] {
			fmt.Fprintf(&b, "    %s\n", op.Input.(*hOp))
		}
	}
	return b.String()
}

// checkTimestamps checks SPEC §3 pull rule 2 across users: every timestamp is a
// positive integer below 2^53, and a pull's is never smaller than one any earlier
// answer (pull or push, of any user) handed out before the pull was sent.
func checkTimestamps(ops []*hOp) string {
	type answer struct {
		ret int64
		ts  int64
		op  *hOp
	}
	var answers []answer
	for _, op := range ops {
		switch {
		case op.kind == "pull":
			answers = append(answers, answer{op.ret, op.pull.Timestamp, op})
		case op.outcome == outOK:
			answers = append(answers, answer{op.ret, op.pushTS, op})
		}
	}
	for _, a := range answers {
		if a.ts <= 0 || a.ts >= 1<<53 {
			return fmt.Sprintf("timestamp %d is not a positive integer below 2^53: %s", a.ts, a.op)
		}
	}
	sort.Slice(answers, func(i, j int) bool { return answers[i].ret < answers[j].ret })
	pulls := make([]*hOp, 0, len(ops))
	for _, op := range ops {
		if op.kind == "pull" {
			pulls = append(pulls, op)
		}
	}
	sort.Slice(pulls, func(i, j int) bool { return pulls[i].call < pulls[j].call })
	var best answer
	best.ts = math.MinInt64
	j := 0
	for _, p := range pulls {
		for j < len(answers) && answers[j].ret < p.call {
			if answers[j].ts > best.ts {
				best = answers[j]
			}
			j++
		}
		if p.pull.Timestamp < best.ts {
			return fmt.Sprintf("a pull's timestamp %d is smaller than %d, handed out before it was sent:\n  %s\n  then %s", p.pull.Timestamp, best.ts, best.op, p)
		}
	}
	return ""
}
