package server

import (
	"sort"

	"github.com/melonsync/melonsync/schema"
)

// This file cuts a pull into pages (PullParams.PageSize); PAGING.md says why the
// pages add up to exactly what one unpaged pull returns.

// window is the part of the history one pull answers: the changes after since, and,
// for a page (through > 0), only the rows created at or before through.
type window struct {
	since, through int64
}

// page is a paged pull's bound and what it tells the client.
type page struct {
	through   int64 // the answer's timestamp
	more      bool  // through < clock: another page follows
	remaining int64 // estimate of the records the next pages bring
}

// pageEnd chooses the page's timestamp: the creation version of about the size-th
// record created after since (all records of one version stay together).
func (s *Service) pageEnd(tx ReadTx, c Caller, tables []*schema.Table, since, clock int64, size int) (*page, error) {
	var created []int64
	groups := map[*schema.Group][]string{}
	for _, t := range tables {
		f, err := readScope(tx, c, t, groups)
		if err != nil {
			return nil, err
		}
		f.After, f.CreatedAfter, f.ByCreated, f.Limit = since, since, true, size+1
		err = tx.Scan(t, nil, f, func(r *Row) error {
			created = append(created, r.CreatedVersion)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(created) <= size {
		return &page{through: clock}, nil
	}
	sort.Slice(created, func(i, j int) bool { return created[i] < created[j] })
	through := created[size-1]
	if through < clock {
		// A page must not end before a loss of access (see lastLoss).
		loss, err := lastLoss(tx, c, tables, through)
		if err != nil {
			return nil, err
		}
		through = max(through, loss)
	}
	if through >= clock {
		return &page{through: clock}, nil
	}
	return &page{through: through, more: true}, nil
}

// lastLoss returns the version of the last change after through that took a row
// away from the caller: a membership ended or moved, or a row moved out of the
// caller's groups (0: none). A page ending at through would hold what the caller read
// at through and still reads now; the next page starts from through and takes the
// device to hold everything readable at through — which a loss in between would
// make false. So a page never ends before a loss; gains (joins, rows moved in) are
// fine, a later page brings them.
func lastLoss(tx ReadTx, c Caller, tables []*schema.Table, through int64) (int64, error) {
	var last int64
	seen := map[*schema.Group]*membership{}
	for _, t := range tables {
		g := t.Rule.Group
		if t.Rule.Kind != schema.GroupRule || g == nil {
			continue
		}
		m := seen[g]
		if m == nil {
			var err error
			if m, err = memberships(tx, g, c.User, through); err != nil {
				return 0, err
			}
			seen[g] = m
			err = tx.Scan(g.Members, nil, Filter{User: c.User, After: through, Deleted: true}, func(r *Row) error {
				last = max(last, r.Version)
				return nil
			})
			if err != nil {
				return 0, err
			}
			err = tx.Moves(g.Members, MoveFilter{After: through, User: c.User}, func(mv Move) error {
				if mv.FromUser == c.User {
					last = max(last, mv.Version)
				}
				return nil
			})
			if err != nil {
				return 0, err
			}
		}
		err := tx.Moves(t, MoveFilter{After: through, FromGroups: m.list(m.ever)}, func(mv Move) error {
			last = max(last, mv.Version)
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return last, nil
}

// readScope is the filter of the rows of t the caller reads now; groups caches the
// caller's groups of each kind.
func readScope(tx ReadTx, c Caller, t *schema.Table, groups map[*schema.Group][]string) (Filter, error) {
	switch t.Rule.Kind {
	case schema.Public:
		return Filter{Any: true}, nil
	case schema.GroupRule:
		g := t.Rule.Group
		if _, ok := groups[g]; !ok {
			m, err := memberships(tx, g, c.User, 0)
			if err != nil {
				return Filter{}, err
			}
			groups[g] = m.list(m.now)
		}
		return Filter{Groups: groups[g]}, nil
	}
	return Filter{Owner: c.User}, nil
}

// finish estimates what the next pages bring: the readable rows changed after the
// page's timestamp.
func (p *page) finish(tx ReadTx, c Caller, tables []*schema.Table) error {
	if !p.more {
		return nil
	}
	groups := map[*schema.Group][]string{}
	for _, t := range tables {
		f, err := readScope(tx, c, t, groups)
		if err != nil {
			return err
		}
		f.After = p.through
		n, err := tx.Count(t, f)
		if err != nil {
			return err
		}
		p.remaining += n
	}
	return nil
}

// encode writes the page's fields of the answer.
func (p *page) encode(enc *encoder) {
	more := "false"
	if p.more {
		more = "true"
	}
	enc.raw(`,"hasMore":` + more + `,"experimentalHasMore":` + more + `,"remaining":`)
	enc.int(p.remaining)
}

// pageView is what a page ending at through knows of one group table: the
// caller's groups at through, and the rows that changed group since then.
// A nil *pageView (no paging) lets everything through.
type pageView struct {
	through int64
	at      map[string]bool   // groups the caller read at through
	later   map[string]string // rows moved after through → their group at through
}

func newPageView(tx ReadTx, t *schema.Table, user string, through int64) (*pageView, error) {
	if through == 0 {
		return nil, nil
	}
	at, err := memberships(tx, t.Rule.Group, user, through)
	if err != nil {
		return nil, err
	}
	return &pageView{through: through, at: at.then, later: map[string]string{}}, nil
}

// readable says whether a row now in group belongs in the page: its group at
// through must have been readable then. A row moved after through (from a group the
// caller did not read: pageEnd lets no page end before a move out of the caller's
// groups) is judged by where it was at through, so that the next page, which starts
// there, agrees with this one.
func (v *pageView) readable(id, group string) bool {
	if v == nil {
		return true
	}
	if g, ok := v.later[id]; ok {
		group = g
	}
	return v.at[group]
}

// narrow limits m's current groups to those also read at through: the page answers
// as of through, so a group left by then is revoked, and one joined after it is
// left to the page whose window holds the join (where it comes whole, as a grant).
func (v *pageView) narrow(m *membership) {
	if v == nil {
		return
	}
	for g := range m.now {
		if !v.at[g] {
			delete(m.now, g)
		}
	}
}

// joinable keeps the groups joined by through.
func (v *pageView) joinable(groups []string) []string {
	if v == nil {
		return groups
	}
	out := []string{}
	for _, g := range groups {
		if v.at[g] {
			out = append(out, g)
		}
	}
	return out
}

// movedLater records the rows of t, among those matching f (or, when f is zero, the
// keys of states), that changed group after through, with their group at through.
func (v *pageView) movedLater(tx ReadTx, t *schema.Table, f Filter, states map[string]*rowState) error {
	if v == nil {
		return nil
	}
	var ids []string
	if states != nil {
		for id, st := range states {
			if st.version > v.through {
				ids = append(ids, id)
			}
		}
	} else {
		f.After = max(f.After, v.through)
		err := tx.Scan(t, nil, f, func(r *Row) error {
			ids = append(ids, r.ID)
			return nil
		})
		if err != nil {
			return err
		}
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Strings(ids)
	return tx.Moves(t, MoveFilter{After: v.through, IDs: ids}, func(m Move) error {
		if _, seen := v.later[m.ID]; !seen { // moves come oldest first per row
			v.later[m.ID] = m.FromGroup
		}
		return nil
	})
}
