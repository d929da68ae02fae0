package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

// Write hooks (SPEC §9): before a push is written, the app's backend sees it and may
// refuse records (with reasons) or rewrite their values.
//
// The hook is asked BEFORE the store's write transaction starts, so a slow backend
// holds no lock and stalls no other user's writes. That opens a window: a pushed
// record may change on the server between the hook's answer and the transaction. The
// transaction therefore re-checks: if any record the hook was shown changed after the
// clock read just before the hook was called, the hook's verdict may rest on stale
// facts, so the transaction is abandoned (nothing written) and the hook is asked
// again, at most hookAttempts times; after that the push answers 503 and the client
// retries later.

// HookCaller delivers one hook request body to the app's backend and returns the
// body of its 2xx answer. Any failure (unreachable, timeout, non-2xx) is an error.
type HookCaller interface {
	Call(ctx context.Context, body []byte) ([]byte, error)
}

// hookAttempts bounds how often one push asks the hook when the records it was
// shown keep changing meanwhile.
const hookAttempts = 3

// errHookStale aborts a write transaction whose hook verdict may be stale.
var errHookStale = errors.New("records changed while the write hook was asked")

// writeHook is a configured hook: who to call and which tables it sees.
type writeHook struct {
	caller HookCaller
	tables map[string]bool // nil: every table
}

// SetWriteHook makes every push that carries records of tables (every table when
// tables is empty) ask caller before it is written. It fails for a table the schema
// does not have. Call it before serving.
func (s *Service) SetWriteHook(caller HookCaller, tables []string) error {
	if caller == nil {
		s.hook = nil
		return nil
	}
	h := &writeHook{caller: caller}
	for _, name := range tables {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if s.schema.Table(name) == nil {
			return fmt.Errorf("write hook: unknown table %q", name)
		}
		if h.tables == nil {
			h.tables = map[string]bool{}
		}
		h.tables[name] = true
	}
	s.hook = h
	return nil
}

func (h *writeHook) sees(t *schema.Table) bool { return h.tables == nil || h.tables[t.Name] }

// pushWithHook asks the hook about p, then writes what it allows (see the note above).
func (s *Service) pushWithHook(ctx context.Context, c Caller, p *PushParams) (*melonsync.PushResponse, error) {
	body, shown := s.hookRequest(c, p)
	if len(shown) == 0 {
		return s.push(ctx, c, p, nil)
	}
	for attempt := 1; ; attempt++ {
		clock, err := s.Clock(ctx)
		if err != nil {
			return nil, fmt.Errorf("push: %w", err)
		}
		raw, err := s.hook.caller.Call(ctx, body)
		if err != nil {
			return nil, hookFailed(err.Error())
		}
		v, err := parseVerdict(s.schema, raw, shown)
		if err != nil {
			return nil, hookFailed(err.Error())
		}
		resp, err := s.push(ctx, c, v.apply(p), &hookGuard{clock: clock, hook: s.hook})
		if errors.Is(err, errHookStale) {
			if attempt < hookAttempts {
				continue
			}
			return nil, melonsync.Errorf(melonsync.EUnavailable, "the pushed records kept changing while the write hook was asked; try again later")
		}
		if err != nil {
			return nil, err
		}
		v.report(resp)
		return resp, nil
	}
}

// hookFailed is the 503 answer for a hook that failed: nothing was written.
func hookFailed(why string) error {
	return &melonsync.Error{
		Code:    melonsync.EUnavailable,
		Message: "the app's write hook did not accept the push (" + why + "); nothing was written, try again later",
		Details: map[string]any{"hook": why},
	}
}

// hookGuard re-checks, inside the write transaction, that no record shown to the
// hook changed after clock.
type hookGuard struct {
	clock int64
	hook  *writeHook
}

func (g *hookGuard) check(t *schema.Table, metas map[string]Meta) error {
	if g == nil || !g.hook.sees(t) {
		return nil
	}
	for _, m := range metas {
		if m.Version > g.clock {
			return errHookStale
		}
	}
	return nil
}

// hookKey names a record in a push: table and id.
type hookKey struct{ table, id string }

// hookRecordKind says how a record was pushed.
type hookRecordKind int

const (
	hookCreated hookRecordKind = iota
	hookUpdated
	hookDeleted
)

// hookRequest encodes {"user", "device", "lastPulledAt", "changes"} with the records
// of the tables the hook sees, and returns which records it holds.
func (s *Service) hookRequest(c Caller, p *PushParams) ([]byte, map[hookKey]hookRecordKind) {
	shown := map[hookKey]hookRecordKind{}
	changes := map[string]map[string]any{}
	for _, tp := range p.Tables {
		t := tp.Table
		if !s.hook.sees(t) {
			continue
		}
		created := make([]map[string]any, 0, len(tp.Created))
		for _, r := range tp.Created {
			created = append(created, hookRecord(t, r))
			shown[hookKey{t.Name, r.ID}] = hookCreated
		}
		updated := make([]map[string]any, 0, len(tp.Updated))
		for _, r := range tp.Updated {
			updated = append(updated, hookRecord(t, r))
			shown[hookKey{t.Name, r.ID}] = hookUpdated
		}
		deleted := append([]string{}, tp.Deleted...)
		for _, id := range tp.Deleted {
			shown[hookKey{t.Name, id}] = hookDeleted
		}
		changes[t.Name] = map[string]any{"created": created, "updated": updated, "deleted": deleted}
	}
	body, _ := json.Marshal(struct {
		User         string                    `json:"user"`
		Device       string                    `json:"device"`
		LastPulledAt int64                     `json:"lastPulledAt"`
		Changes      map[string]map[string]any `json:"changes"`
	}{c.User, c.Device, p.LastPulledAt, changes})
	return body, shown
}

// hookRecord is a pushed record as the hook sees it: its id, the columns it carried
// (sanitized) and its "_changed" list when it had one.
func hookRecord(t *schema.Table, r PushedRecord) map[string]any {
	m := map[string]any{"id": r.ID}
	var changed []string
	for i, c := range t.Columns {
		if r.Set[i] {
			m[c.Name] = r.Values[i]
		}
		if r.Changed != nil && r.Changed[i] {
			changed = append(changed, c.Name)
		}
	}
	if r.Changed != nil {
		m["_changed"] = strings.Join(changed, ",")
	}
	return m
}

// verdict is the hook's checked answer.
type verdict struct {
	rejected map[string][]string
	reasons  map[string]string
	// rewrites holds, per record, the columns the hook rewrote (Set) and their values.
	rewrites map[hookKey]PushedRecord
}

// parseVerdict checks the hook's answer {"rejected": {table: [ids]}, "reasons": {id:
// text}, "changes": {table: {"created"|"updated": [records]}}} against the records it
// was shown. An empty answer accepts everything. Rejecting or rewriting a record the
// push did not carry, an unknown column, or anything that is not that JSON is an
// error (the push answers 503).
func parseVerdict(s *schema.Schema, raw []byte, shown map[hookKey]hookRecordKind) (*verdict, error) {
	v := &verdict{rejected: map[string][]string{}, reasons: map[string]string{}, rewrites: map[hookKey]PushedRecord{}}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return v, nil
	}
	var ans struct {
		Rejected map[string][]string                     `json:"rejected"`
		Reasons  map[string]string                       `json:"reasons"`
		Changes  map[string]map[string][]json.RawMessage `json:"changes"`
	}
	if raw[0] != '{' {
		return nil, errors.New("its answer is not a JSON object")
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		return nil, fmt.Errorf("its answer is not the expected JSON: %s", jsonErr(err))
	}
	rejected := map[hookKey]bool{}
	for table, ids := range ans.Rejected {
		for _, id := range ids {
			k := hookKey{table, id}
			if _, ok := shown[k]; !ok {
				return nil, fmt.Errorf("it rejected %s %q, which the push did not carry", truncate(table), truncate(id))
			}
			if !rejected[k] {
				rejected[k] = true
				v.rejected[table] = append(v.rejected[table], id)
			}
		}
	}
	for id, why := range ans.Reasons {
		for k := range rejected {
			if k.id == id {
				v.reasons[id] = why
				break
			}
		}
	}
	for table, parts := range ans.Changes {
		t := s.Table(table)
		for part, recs := range parts {
			if part != "created" && part != "updated" {
				if len(recs) == 0 {
					continue
				}
				return nil, fmt.Errorf("its changes.%s.%s: only created and updated records can be rewritten", truncate(table), truncate(part))
			}
			for _, rec := range recs {
				r, err := rewrite(t, table, rec, shown)
				if err != nil {
					return nil, err
				}
				if !rejected[hookKey{table, r.ID}] {
					v.rewrites[hookKey{table, r.ID}] = r
				}
			}
		}
	}
	return v, nil
}

// rewrite checks one rewritten record: a created or updated record of the push, with
// columns of its table only (values are sanitized as pushed values are).
func rewrite(t *schema.Table, table string, raw json.RawMessage, shown map[hookKey]hookRecordKind) (PushedRecord, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return PushedRecord{}, fmt.Errorf("its changes.%s holds something that is not a record", truncate(table))
	}
	id, _ := m["id"].(string)
	kind, ok := shown[hookKey{table, id}]
	if t == nil || !ok || kind == hookDeleted {
		return PushedRecord{}, fmt.Errorf("it rewrote %s %q, which the push did not create or update", truncate(table), truncate(id))
	}
	r := PushedRecord{ID: id, Values: make([]any, len(t.Columns)), Set: make([]bool, len(t.Columns))}
	for k, val := range m {
		if k == "id" || k == "_status" || k == "_changed" {
			continue
		}
		i := t.ColumnIndex(k)
		if i < 0 {
			return PushedRecord{}, fmt.Errorf("it rewrote %s.%s, which is not a column", truncate(table), truncate(k))
		}
		r.Values[i] = t.Columns[i].Sanitize(val)
		r.Set[i] = true
	}
	return r, nil
}

// apply returns p without the rejected records and with the rewritten values. p is
// not changed (the hook may be asked again).
func (v *verdict) apply(p *PushParams) *PushParams {
	if len(v.rejected) == 0 && len(v.rewrites) == 0 {
		return p
	}
	out := &PushParams{LastPulledAt: p.LastPulledAt}
	for _, tp := range p.Tables {
		t := tp.Table
		gone := map[string]bool{}
		for _, id := range v.rejected[t.Name] {
			gone[id] = true
		}
		n := TablePush{Table: t}
		n.Created = v.applyRecords(t, tp.Created, gone)
		n.Updated = v.applyRecords(t, tp.Updated, gone)
		for _, id := range tp.Deleted {
			if !gone[id] {
				n.Deleted = append(n.Deleted, id)
			}
		}
		if len(n.Created)+len(n.Updated)+len(n.Deleted) > 0 {
			out.Tables = append(out.Tables, n)
		}
	}
	return out
}

func (v *verdict) applyRecords(t *schema.Table, recs []PushedRecord, gone map[string]bool) []PushedRecord {
	var out []PushedRecord
	for _, r := range recs {
		if gone[r.ID] {
			continue
		}
		if w, ok := v.rewrites[hookKey{t.Name, r.ID}]; ok {
			r = PushedRecord{ID: r.ID, Values: append([]any(nil), r.Values...), Set: append([]bool(nil), r.Set...), Changed: append([]bool(nil), r.Changed...)}
			for i := range w.Set {
				if w.Set[i] {
					r.Values[i], r.Set[i] = w.Values[i], true
					if r.Changed != nil {
						r.Changed[i] = true
					}
				}
			}
		}
		out = append(out, r)
	}
	return out
}

// report adds the hook's rejections and reasons to a push answer.
func (v *verdict) report(resp *melonsync.PushResponse) {
	for table, ids := range v.rejected {
		if resp.RejectedIDs == nil {
			resp.RejectedIDs = map[string][]string{}
		}
		resp.RejectedIDs[table] = append(resp.RejectedIDs[table], ids...)
	}
	for id, why := range v.reasons {
		if resp.RejectedReasons == nil {
			resp.RejectedReasons = map[string]string{}
		}
		resp.RejectedReasons[id] = why // beside the database's refusals, if any
	}
}

// HookFunc is a HookCaller in one function (tests, and hooks that run in-process).
type HookFunc func(ctx context.Context, body []byte) ([]byte, error)

// Call calls f.
func (f HookFunc) Call(ctx context.Context, body []byte) ([]byte, error) { return f(ctx, body) }
