package server

import (
	"sort"

	"github.com/melonsync/melonsync/schema"
)

// This file applies the group rule of SPEC §6 to pulls; ACCESS.md says why it is
// right and what it costs.

// membership is what a pull knows of one user's groups of one kind.
type membership struct {
	now  map[string]bool // M(u, C): member in the pull's snapshot
	then map[string]bool // M(u, S): member at lastPulledAt
	ever map[string]bool // K(u): member at some time in [S, C]
}

func (m *membership) list(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// diff returns the groups in a but not in b.
func diff(a, b map[string]bool) []string {
	out := []string{}
	for g := range a {
		if !b[g] {
			out = append(out, g)
		}
	}
	sort.Strings(out)
	return out
}

// members keeps, for one pull, the caller's memberships of each group kind.
type members map[*schema.Group]*membership

func (mm members) of(tx ReadTx, g *schema.Group, user string, since int64) (*membership, error) {
	if m := mm[g]; m != nil {
		return m, nil
	}
	m, err := memberships(tx, g, user, since)
	if err == nil {
		mm[g] = m
	}
	return m, err
}

// rowState is what a pull needs of a row to judge it.
type rowState struct {
	deleted        bool
	version        int64
	createdVersion int64
	group, user    string
	owner          string
	createdDevice  string
	// firstMove is the row's first move after since, if any.
	firstMove *Move
}

// atSince returns the row's group and user at since and whether it existed then.
func (r *rowState) atSince(since int64) (group, user string, existed bool) {
	group, user = r.group, r.user
	if r.firstMove != nil {
		group, user = r.firstMove.FromGroup, r.firstMove.FromUser
	}
	return group, user, r.createdVersion <= since
}

// loadStates reads the rows of t with these ids (live rows and tombstones) into
// states, for those not there yet.
func loadStates(tx ReadTx, t *schema.Table, ids []string, states map[string]*rowState) error {
	var missing []string
	for _, id := range ids {
		if states[id] == nil {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	for _, deleted := range []bool{false, true} {
		err := tx.Scan(t, nil, Filter{Any: true, IDs: missing, Deleted: deleted}, func(r *Row) error {
			if states[r.ID] == nil {
				states[r.ID] = newState(r, deleted)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func newState(r *Row, deleted bool) *rowState {
	return &rowState{deleted: deleted, version: r.Version, createdVersion: r.CreatedVersion,
		group: r.Group, user: r.User, owner: r.Owner, createdDevice: r.CreatedDevice}
}

// firstMoves sets each state's first move after since.
func firstMoves(tx ReadTx, t *schema.Table, since int64, states map[string]*rowState) error {
	ids := make([]string, 0, len(states))
	for id := range states {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Strings(ids)
	return tx.Moves(t, MoveFilter{After: since, IDs: ids}, func(m Move) error {
		st := states[m.ID]
		if st != nil && (st.firstMove == nil || m.Version < st.firstMove.Version) {
			mv := m
			st.firstMove = &mv
		}
		return nil
	})
}

// memberships computes user's membership of groups of kind g now and, when since > 0,
// at since and in between, from the members table (rows, tombstones and moves) in
// this snapshot.
func memberships(tx ReadTx, g *schema.Group, user string, since int64) (*membership, error) {
	m := &membership{now: map[string]bool{}, then: map[string]bool{}, ever: map[string]bool{}}
	mt := g.Members
	states := map[string]*rowState{}
	err := tx.Scan(mt, nil, Filter{User: user}, func(r *Row) error {
		if r.Group != "" {
			m.now[r.Group] = true
			m.ever[r.Group] = true
		}
		if since > 0 && r.Version > since {
			states[r.ID] = newState(r, false)
		} else if since > 0 && r.Group != "" && r.CreatedVersion <= since {
			// Unchanged since before since: a member then too.
			m.then[r.Group] = true
		}
		return nil
	})
	if err != nil || since == 0 {
		return m, err
	}
	err = tx.Scan(mt, nil, Filter{User: user, Deleted: true, After: since}, func(r *Row) error {
		if states[r.ID] == nil {
			states[r.ID] = newState(r, true)
		}
		if r.Group != "" {
			m.ever[r.Group] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var moved []string
	err = tx.Moves(mt, MoveFilter{After: since, User: user}, func(mv Move) error {
		moved = append(moved, mv.ID)
		if mv.FromUser == user && mv.FromGroup != "" {
			m.ever[mv.FromGroup] = true
		}
		if mv.ToUser == user && mv.ToGroup != "" {
			m.ever[mv.ToGroup] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := loadStates(tx, mt, moved, states); err != nil {
		return nil, err
	}
	if err := firstMoves(tx, mt, since, states); err != nil {
		return nil, err
	}
	for _, st := range states {
		grp, usr, existed := st.atSince(since)
		if existed && usr == user && grp != "" {
			m.then[grp] = true
			m.ever[grp] = true
		}
	}
	return m, nil
}

// pullVerdict is what an incremental pull sends for one changed row.
type pullVerdict int

const (
	skip pullVerdict = iota
	sendCreated
	sendUpdated
	sendDeleted
)

// judge applies ACCESS.md's table to a row changed (or moved) after since.
func judge(c Caller, m *membership, st *rowState, since int64, inPage bool) pullVerdict {
	readNow := !st.deleted && st.group != "" && m.now[st.group] && inPage
	grpS, _, existed := st.atSince(since)
	readThen := existed && grpS != "" && m.then[grpS]
	own := ownCreation(c, &Row{CreatedDevice: st.createdDevice, Owner: st.owner})
	switch {
	case readNow && (readThen || own || c.CreatedAsUpdated):
		return sendUpdated
	case readNow:
		return sendCreated
	case readThen || (!existed && st.owner == c.User):
		return sendDeleted
	}
	return skip
}

// pullGroupTable writes one group table's part of a pull.
func (s *Service) pullGroupTable(tx ReadTx, c Caller, t *schema.Table, cols []schema.Column, win window, replacement, migTable bool, migCols []schema.Column, m *membership, enc *encoder) error {
	since := win.since
	whole := since == 0 || replacement || migTable
	pv, err := newPageView(tx, t, c.User, win.through)
	if err != nil {
		return err
	}
	pv.narrow(m) // the same for every table of the pull: m is shared by them
	now := m.list(m.now)
	if whole {
		// Every readable row (first sync, replacement, a table new to the client).
		f := Filter{Groups: now, CreatedThrough: win.through}
		if err := pv.movedLater(tx, t, f, nil); err != nil {
			return err
		}
		isCreated := func(r *Row) bool { return createdRule(c, r, since, migTable) }
		readable := func(r *Row) bool { return pv.readable(r.ID, r.Group) }
		if err := writeLive(tx, t, cols, enc, livePass(c, f, isCreated, readable)); err != nil {
			return err
		}
		enc.openDeleted()
		enc.raw(`]}`)
		return nil
	}

	// 1. Judge every row changed or moved since, in a group the user belonged to.
	ever := m.list(m.ever)
	states := map[string]*rowState{}
	for _, deleted := range []bool{false, true} {
		f := Filter{Groups: ever, After: since, Deleted: deleted}
		if deleted {
			f.Through = win.through
		} else {
			f.CreatedThrough = win.through
		}
		err := tx.Scan(t, nil, f, func(r *Row) error {
			states[r.ID] = newState(r, deleted)
			return nil
		})
		if err != nil {
			return err
		}
	}
	var moved []string
	if err := tx.Moves(t, MoveFilter{After: since, FromGroups: ever}, func(mv Move) error {
		moved = append(moved, mv.ID)
		return nil
	}); err != nil {
		return err
	}
	if err := loadStates(tx, t, moved, states); err != nil {
		return err
	}
	if win.through > 0 {
		for id, st := range states {
			// Created or deleted after this page: a later page judges it.
			if st.createdVersion > win.through || (st.deleted && st.version > win.through) {
				delete(states, id)
			}
		}
		if err := pv.movedLater(tx, t, Filter{}, states); err != nil {
			return err
		}
	}
	if err := firstMoves(tx, t, since, states); err != nil {
		return err
	}
	verdicts := make(map[string]pullVerdict, len(states))
	var deleted []string
	for id, st := range states {
		v := judge(c, m, st, since, pv.readable(id, st.group))
		verdicts[id] = v
		if v == sendDeleted {
			deleted = append(deleted, id)
		}
	}
	sort.Strings(deleted)

	// 2. Grants: every row of the groups joined since, unless judged above.
	joined := pv.joinable(diff(m.now, m.then))
	grant := func(r *Row) pullVerdict {
		if v, ok := verdicts[r.ID]; ok {
			return v
		}
		if c.CreatedAsUpdated || ownCreation(c, r) {
			return sendUpdated
		}
		return sendCreated
	}
	passes := []pass{{f: Filter{Groups: now, After: since, CreatedThrough: win.through},
		verdict: func(r *Row) pullVerdict { return verdicts[r.ID] }}}
	if len(joined) > 0 {
		passes = append(passes, pass{f: Filter{Groups: joined, CreatedThrough: win.through},
			verdict: func(r *Row) pullVerdict {
				if _, judged := verdicts[r.ID]; judged || !pv.readable(r.ID, r.Group) {
					return skip
				}
				return grant(r)
			}})
	}
	if err := writeLive(tx, t, cols, enc, passes...); err != nil {
		return err
	}
	if len(migCols) > 0 {
		// Rows the client had, whose new columns hold something.
		kept := diff(m.now, diffSet(m.now, m.then))
		f := Filter{Groups: kept, Through: since, NonDefault: migCols}
		if err := scanRecords(tx, t, cols, f, enc, nil); err != nil {
			return err
		}
	}
	enc.openDeleted()
	first := true
	for _, id := range deleted {
		if !first {
			enc.byte(',')
		}
		first = false
		enc.id(id)
	}
	// 3. Revocations: rows of the groups left since that did not change since.
	if left := diff(m.then, m.now); len(left) > 0 {
		if err := scanIDs(tx, t, Filter{Groups: left, Through: since}, enc, nil); err != nil {
			return err
		}
	}
	enc.raw(`]}`)
	return enc.err
}

// diffSet returns the set of groups in a but not in b.
func diffSet(a, b map[string]bool) map[string]bool {
	out := map[string]bool{}
	for g := range a {
		if !b[g] {
			out[g] = true
		}
	}
	return out
}
