package server

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

// Push applies a validated push in one transaction: all of it or nothing.
//
// Records owned by another user are refused one by one (RejectedIDs) and never
// touched. A record changed on the server after p.LastPulledAt (unless the change came
// from the caller's own device: a retried push whose answer was lost) is settled by its
// table's conflict policy (policy.go, ResolvedIDs); under the default policy, reject,
// and for records deleted on the server, it aborts the whole push with a conflict
// error listing the ids. Errors: conflict; internal for store failures.
//
// With a write hook (SetWriteHook), the hook is asked first (hook.go): the records it
// rejects are refused with its reasons (RejectedReasons), its rewritten values are
// written instead of the pushed ones, and a hook failure answers unavailable with
// nothing written.
//
// Records the database refuses for their data (a constraint the app's own SQL added)
// are refused one by one too, with the database's reason in RejectedReasons, and the
// rest of the push applies (refused.go).
func (s *Service) Push(ctx context.Context, c Caller, p *PushParams) (*melonsync.PushResponse, error) {
	if c.User == "" {
		return nil, melonsync.Errorf(melonsync.EUnauthorized, "no user")
	}
	if s.hook != nil {
		return s.pushWithHook(ctx, c, p)
	}
	return s.push(ctx, c, p, nil)
}

// push writes p in one transaction (see Push); guard, when not nil, abandons the
// transaction if a record the write hook was shown changed since (hook.go). Records
// the database refuses are left out and refused (refused.go).
func (s *Service) push(ctx context.Context, c Caller, p *PushParams, guard *hookGuard) (*melonsync.PushResponse, error) {
	return s.pushRefusing(p, func(p *PushParams) (*melonsync.PushResponse, error) { return s.pushOnce(ctx, c, p, guard) })
}

// pushOnce is push without the handling of refused records.
func (s *Service) pushOnce(ctx context.Context, c Caller, p *PushParams, guard *hookGuard) (*melonsync.PushResponse, error) {
	resp := &melonsync.PushResponse{OK: true}
	wrote, gapped := false, false
	var plan []planned
	write := s.store.Write
	if gw, ok := s.store.(GroupWriter); ok && p.records() <= groupedPushMax {
		write = gw.WriteGrouped
	}
	err := write(ctx, func(tx WriteTx) error {
		// A store may run this again after an aborted attempt: start afresh.
		resp.RejectedIDs, resp.ResolvedIDs, resp.Timestamp, wrote, gapped, plan = nil, nil, 0, false, false, nil
		seen := s.history.highest.Load() // before the clock is read (history.go)
		// The look-ups first: a store may read the clock with them, in one round
		// trip with the transaction's start.
		metas, err := lookupPushed(tx, p, guard)
		if err != nil {
			return err
		}
		if err := checkClock(tx, p); err != nil {
			return err
		}
		may, err := s.writeRights(tx, c, p, metas)
		if err != nil {
			return err
		}
		st := pushState{conflicts: map[string][]string{}, rejected: map[string][]string{}, resolved: map[string][]string{}}
		for i := range p.Tables {
			if err := s.planTable(tx, c, p, &p.Tables[i], metas[i], may, &st); err != nil {
				return err
			}
		}
		conflicts, rejected, resolved := st.conflicts, st.rejected, st.resolved
		plan = st.plan
		if len(conflicts) > 0 {
			return melonsync.ConflictError(conflicts)
		}
		if len(rejected) > 0 {
			resp.RejectedIDs = rejected
		}
		if len(resolved) > 0 {
			resp.ResolvedIDs = resolved
		}
		if len(plan) == 0 {
			clock, err := tx.Clock()
			resp.Timestamp = clock
			return err
		}
		clock, err := tx.Clock() // the clock before this transaction's version
		if err != nil {
			return err
		}
		if gapped, err = s.markGap(tx, clock, seen); err != nil {
			return err
		}
		// Apply takes the version with its first write (a store may save a round
		// trip that way); the version is then the push's timestamp. Nothing else
		// may touch tx after applyPlan: it may have committed.
		if err := applyPlan(tx, plan); err != nil {
			return err
		}
		v, err := tx.Version()
		if err != nil {
			return err
		}
		resp.Timestamp = v
		wrote = true
		return nil
	})
	if err != nil {
		if errors.As(err, new(*melonsync.Error)) || errors.Is(err, errHookStale) {
			return nil, err
		}
		return nil, fmt.Errorf("push: %w", err)
	}
	if gapped {
		s.history.resumed.Store(true)
	}
	s.history.saw(resp.Timestamp)
	if resp.Timestamp > 0 && wrote {
		s.deliver(ctx, changesOf(c, resp.Timestamp, plan))
	}
	return resp, nil
}

// groupedPushMax is the most records a push may hold to be committed with others
// (GroupWriter): a large push would hold a group's smaller ones back.
const groupedPushMax = 100

// records counts the records p names.
func (p *PushParams) records() int {
	n := 0
	for i := range p.Tables {
		tp := &p.Tables[i]
		n += len(tp.Created) + len(tp.Updated) + len(tp.Deleted)
	}
	return n
}

// pushState is what one attempt of a push collects, table by table.
type pushState struct {
	conflicts, rejected, resolved map[string][]string
	plan                          []planned
}

// changedSince says whether a row's last change is one the client has not seen.
func changedSince(c Caller, p *PushParams, m Meta) bool {
	if m.Version <= p.LastPulledAt {
		return false
	}
	return c.Device == "" || m.Device != c.Device
}

// lookupPushed reads the metadata of every row a push names, table by table (and
// lets the write hook's guard check them).
func lookupPushed(tx WriteTx, p *PushParams, guard *hookGuard) ([]map[string]Meta, error) {
	tables := make([]*schema.Table, len(p.Tables))
	ids := make([][]string, len(p.Tables))
	for i := range p.Tables {
		tp := &p.Tables[i]
		tables[i] = tp.Table
		ids[i] = make([]string, 0, len(tp.Created)+len(tp.Updated)+len(tp.Deleted))
		for _, r := range tp.Created {
			ids[i] = append(ids[i], r.ID)
		}
		for _, r := range tp.Updated {
			ids[i] = append(ids[i], r.ID)
		}
		ids[i] = append(ids[i], tp.Deleted...)
	}
	var metas []map[string]Meta
	if btx, ok := tx.(TablesWriteTx); ok {
		var err error
		if metas, err = btx.LookupTables(tables, ids); err != nil {
			return nil, err
		}
	} else {
		metas = make([]map[string]Meta, len(tables))
		for i, t := range tables {
			var err error
			if metas[i], err = tx.Lookup(t, ids[i]); err != nil {
				return nil, err
			}
		}
	}
	for i, t := range tables {
		if err := guard.check(t, metas[i]); err != nil {
			return nil, err
		}
	}
	return metas, nil
}

// applyPlan performs the planned ops, table by table (at once where the store can,
// and commits with them where it can: nothing may touch tx after it).
func applyPlan(tx WriteTx, plan []planned) error {
	if btx, ok := tx.(TablesWriteTx); ok {
		tables := make([]*schema.Table, len(plan))
		ops := make([][]Op, len(plan))
		for i, pl := range plan {
			tables[i], ops[i] = pl.tp.Table, pl.ops
		}
		if ctx, ok := tx.(CommitWriteTx); ok {
			return ctx.ApplyTablesAndCommit(tables, ops)
		}
		return btx.ApplyTables(tables, ops)
	}
	for _, pl := range plan {
		if err := tx.Apply(pl.tp.Table, pl.ops); err != nil {
			return err
		}
	}
	return nil
}

// planTable decides what becomes of each record of one table of a push: written
// (ops), refused one by one (no right to write it), a conflict (changed on the server
// since lastPulledAt and deleted, or the table's policy says so) or settled by the
// table's policy. It adds the outcome to st.
func (s *Service) planTable(tx WriteTx, c Caller, p *PushParams, tp *TablePush, metas map[string]Meta, may *rights, st *pushState) error {
	t := tp.Table
	ops := make([]Op, 0, len(tp.Created)+len(tp.Updated)+len(tp.Deleted)) // one allocation, not a doubling per power of two
	var contest contested                                                 // changed on the server since lastPulledAt: the table's policy decides
	reject := func(id string) { st.rejected[t.Name] = append(st.rejected[t.Name], id) }
	conflict := func(id string) { st.conflicts[t.Name] = append(st.conflicts[t.Name], id) }
	insert := func(r PushedRecord) {
		ops = append(ops, Op{Kind: OpInsert, ID: r.ID, Values: r.Values, Owner: c.User, Device: c.Device,
			Group: t.GroupOf(r.ID, r.Values), User: t.MemberOf(r.Values)})
	}
	update := func(r PushedRecord, m Meta) {
		ops = append(ops, Op{Kind: OpUpdate, ID: r.ID, Values: r.Values, Set: r.Set, Device: c.Device,
			OldGroup: m.Group, Group: newGroup(t, r, m, true), OldUser: m.User, User: newUser(t, r, m, true)})
	}
	for _, r := range tp.Created {
		m, ok := metas[r.ID]
		switch {
		case !may.write(t, m, ok, &r):
			reject(r.ID)
		case !ok:
			insert(r)
		case changedSince(c, p, m) && m.Deleted:
			conflict(r.ID) // deleted after lastPulledAt: never resurrected
		case changedSince(c, p, m):
			contest.created = append(contest.created, r)
		case m.Deleted:
			insert(r) // deleted at or before lastPulledAt: the client saw it; re-create
		default:
			update(r, m)
		}
	}
	for _, r := range tp.Updated {
		m, ok := metas[r.ID]
		switch {
		case !may.write(t, m, ok, &r):
			reject(r.ID)
		case !ok:
			insert(r)
		case m.Deleted:
			conflict(r.ID) // the client must pull the deletion
		case changedSince(c, p, m):
			contest.updated = append(contest.updated, r)
		default:
			update(r, m)
		}
	}
	for _, id := range tp.Deleted {
		m, ok := metas[id]
		switch {
		case !ok:
		case !may.write(t, m, ok, nil):
			reject(id)
		case m.Deleted:
		case changedSince(c, p, m):
			contest.deleted = append(contest.deleted, id)
		default:
			ops = append(ops, Op{Kind: OpDelete, ID: id, Device: c.Device, OldGroup: m.Group, OldUser: m.User})
		}
	}
	settled, err := settle(tx, t, s.schema.Policy(t.Name), &contest)
	if err != nil {
		return err
	}
	ops = append(ops, withGroups(t, metas, settled.ops)...)
	if len(settled.conflicts) > 0 {
		st.conflicts[t.Name] = append(st.conflicts[t.Name], settled.conflicts...)
	}
	if len(settled.resolved) > 0 {
		st.resolved[t.Name] = settled.resolved
	}
	if len(ops) > 0 {
		st.plan = append(st.plan, planned{tp, ops})
	}
	return nil
}

// checkClock refuses a push whose lastPulledAt is above the server's clock: the
// client never got that timestamp from this store (a restored backup, another
// server, a forged value), so its view of the data cannot be checked for conflicts.
// Every pushed record is a conflict; the client pulls (getting a replacement answer)
// and pushes again.
func checkClock(tx WriteTx, p *PushParams) error {
	clock, err := tx.Clock()
	if err != nil {
		return err
	}
	if p.LastPulledAt <= clock {
		return nil
	}
	ids := map[string][]string{}
	for _, tp := range p.Tables {
		for _, r := range tp.Created {
			ids[tp.Table.Name] = append(ids[tp.Table.Name], r.ID)
		}
		for _, r := range tp.Updated {
			ids[tp.Table.Name] = append(ids[tp.Table.Name], r.ID)
		}
		ids[tp.Table.Name] = append(ids[tp.Table.Name], tp.Deleted...)
	}
	e := melonsync.ConflictError(ids)
	e.Message = fmt.Sprintf("lastPulledAt %d is later than the server's clock %d: this server never handed it out; pull and try again", p.LastPulledAt, clock)
	e.Details["reason"] = "last_pulled_at_ahead"
	e.Details["serverClock"] = clock
	return e
}

// planned is what a push writes to one table.
type planned struct {
	tp  *TablePush
	ops []Op
}

// changesOf says whose data a committed push changed, for live updates: the pusher
// (owner tables), the groups of group tables' rows before and after, the users that
// membership rows named before and after, everyone for public tables.
func changesOf(c Caller, v int64, plan []planned) []Change {
	out := []Change{{Version: v, User: c.User, Device: c.Device}}
	seen := map[Change]bool{}
	add := func(ch Change) {
		if !seen[ch] {
			seen[ch] = true
			out = append(out, ch)
		}
	}
	for _, pl := range plan {
		t := pl.tp.Table
		if t.Rule.Kind == schema.Owner {
			continue
		}
		for _, op := range pl.ops {
			for _, g := range []string{op.OldGroup, op.Group} {
				if g != "" || t.Rule.Kind == schema.Public {
					add(Change{Version: v, Table: t.Name, Group: g, Device: c.Device})
				}
			}
			for _, u := range []string{op.OldUser, op.User} {
				if u != "" {
					add(Change{Version: v, User: u, Device: c.Device})
				}
			}
		}
	}
	return out
}

// rights answers, for one push, whether the pushing user may write a record (SPEC §6;
// ACCESS.md "Pushes"). Group membership is the membership committed before the push,
// plus the groups this push founds.
type rights struct {
	user   string
	member map[*schema.Group]map[string]bool
}

// writeRights reads the pushing user's memberships of every group kind the push
// touches and works out which groups the push founds (the first-member rule).
func (s *Service) writeRights(tx WriteTx, c Caller, p *PushParams, metas []map[string]Meta) (*rights, error) {
	rt := &rights{user: c.User, member: map[*schema.Group]map[string]bool{}}
	for i := range p.Tables {
		g := p.Tables[i].Table.Rule.Group
		if g == nil || rt.member[g] != nil {
			continue
		}
		groups, err := tx.Memberships(g, c.User)
		if err != nil {
			return nil, err
		}
		set := make(map[string]bool, len(groups))
		for _, id := range groups {
			set[id] = true
		}
		rt.member[g] = set
	}
	for i := range p.Tables {
		tp := &p.Tables[i]
		t := tp.Table
		g := t.Rule.MembersOf
		if g == nil || !t.Rule.Writable() {
			continue
		}
		// New membership rows naming the pusher, of groups they are not in.
		var found []string
		seen := map[string]bool{}
		for _, list := range [][]PushedRecord{tp.Created, tp.Updated} {
			for _, r := range list {
				if m, ok := metas[i][r.ID]; ok && !m.Deleted {
					continue
				}
				grp := t.GroupOf(r.ID, r.Values)
				if grp == "" || t.MemberOf(r.Values) != c.User || rt.member[g][grp] || seen[grp] {
					continue
				}
				seen[grp] = true
				found = append(found, grp)
			}
		}
		sort.Strings(found)
		for _, grp := range found {
			free, err := tx.Unclaimed(g, grp)
			if err != nil {
				return nil, err
			}
			if free {
				rt.member[g][grp] = true
			}
		}
	}
	return rt, nil
}

// write reports whether the user may push r (nil: a deletion) to a row whose
// metadata is m when exists.
func (rt *rights) write(t *schema.Table, m Meta, exists bool, r *PushedRecord) bool {
	switch t.Rule.Kind {
	case schema.Public:
		return false
	case schema.Owner:
		return !exists || m.Owner == rt.user
	}
	if t.Rule.ReadOnly {
		return false
	}
	member := rt.member[t.Rule.Group]
	if r == nil {
		return !exists || m.Deleted || member[m.Group]
	}
	to := newGroup(t, *r, m, exists)
	switch {
	case to == "" || !member[to]:
		return false // no group, or a group the user is not in (a move included)
	case exists && !m.Deleted:
		return member[m.Group]
	case exists && m.Deleted && m.Group != "" && m.Group != to:
		// Re-creating a deleted row in another group would hide the deletion from
		// the old group's members.
		return false
	}
	return true
}

// newGroup returns the group a row has after r is applied: the pushed by column, or
// the row's group when r leaves that column out of an update.
func newGroup(t *schema.Table, r PushedRecord, m Meta, exists bool) string {
	if t.Rule.Kind != schema.GroupRule {
		return ""
	}
	if exists && !m.Deleted && t.Rule.By != "id" {
		if i := columnIndex(t, t.Rule.By); i >= 0 && i < len(r.Set) && !r.Set[i] {
			return m.Group
		}
	}
	return t.GroupOf(r.ID, r.Values)
}

// newUser is newGroup for the user column of a members table.
func newUser(t *schema.Table, r PushedRecord, m Meta, exists bool) string {
	g := t.Rule.MembersOf
	if g == nil {
		return ""
	}
	if exists && !m.Deleted {
		if i := columnIndex(t, g.UserCol); i >= 0 && i < len(r.Set) && !r.Set[i] {
			return m.User
		}
	}
	return t.MemberOf(r.Values)
}

func columnIndex(t *schema.Table, name string) int {
	for i, c := range t.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// withGroups fills in the groups and users of ops a conflict policy settled on rows
// Lookup saw (metas).
func withGroups(t *schema.Table, metas map[string]Meta, ops []Op) []Op {
	if t.Rule.Kind != schema.GroupRule {
		return ops
	}
	for i := range ops {
		op := &ops[i]
		m := metas[op.ID]
		op.OldGroup, op.OldUser = m.Group, m.User
		if op.Kind == OpUpdate {
			r := PushedRecord{ID: op.ID, Values: op.Values, Set: op.Set}
			op.Group, op.User = newGroup(t, r, m, true), newUser(t, r, m, true)
		}
	}
	return ops
}
