package server

import (
	"github.com/melonsync/melonsync/schema"
)

// Conflict policies (SPEC §9): what a push does with a record that changed on the
// server after the client's lastPulledAt, when the change was not the pushing
// device's own.
//
// The push's checks come first (a record the user may not write is rejected before
// any policy sees it), and a record deleted on the server is never settled here: it
// stays a conflict, so that the client pulls the deletion. What the policies settle
// is written with a new version and no device, so every device — the pusher too —
// pulls the settled record as "updated", and a retried push of the same change
// (whose answer was lost) meets the conflict again and is settled the same way,
// instead of passing as the device's own change.

// contested collects one table's pushed changes that met a newer live server record.
type contested struct {
	created []PushedRecord
	updated []PushedRecord
	deleted []string
}

func (c *contested) empty() bool {
	return len(c.created)+len(c.updated)+len(c.deleted) == 0
}

// settlement is what a policy decided for one table's contested changes.
type settlement struct {
	ops       []Op
	conflicts []string // left to the client: 409
	resolved  []string // settled by the policy
}

// settle applies table t's policy to its contested changes.
func settle(tx WriteTx, t *schema.Table, pol schema.Policy, c *contested) (settlement, error) {
	var out settlement
	if c.empty() {
		return out, nil
	}
	switch pol.Kind {
	case schema.PolicyClientWins:
		for _, r := range c.created {
			out.write(r, r.Set) // a creation sets every column it sends
		}
		for _, r := range c.updated {
			out.write(r, clientColumns(r))
		}
		for _, id := range c.deleted {
			out.ops = append(out.ops, Op{Kind: OpDelete, ID: id})
			out.resolved = append(out.resolved, id)
		}
	case schema.PolicyServerWins:
		for _, r := range append(c.created, c.updated...) {
			out.keep(t, r.ID)
		}
		for _, id := range c.deleted {
			out.keep(t, id)
		}
	case schema.PolicyLastWriteWins:
		if err := out.lastWriteWins(tx, t, pol.Column, c); err != nil {
			return out, err
		}
	default: // reject
		for _, r := range append(c.created, c.updated...) {
			out.conflicts = append(out.conflicts, r.ID)
		}
		out.conflicts = append(out.conflicts, c.deleted...)
	}
	return out, nil
}

// clientColumns returns the columns client-wins takes from a pushed update: those
// in its "_changed" list that it carries, or every column it carries when it has no
// "_changed" (WatermelonDB's per-column merge, done on the server).
func clientColumns(r PushedRecord) []bool {
	if r.Changed == nil {
		return r.Set
	}
	set := make([]bool, len(r.Set))
	for i := range set {
		set[i] = r.Set[i] && r.Changed[i]
	}
	return set
}

// write settles r by writing the columns in set over the server's record.
func (s *settlement) write(r PushedRecord, set []bool) {
	s.ops = append(s.ops, Op{Kind: OpUpdate, ID: r.ID, Values: r.Values, Set: set})
	s.resolved = append(s.resolved, r.ID)
}

// keep settles a change by keeping the server's record: its values stay, but it gets
// a new version so that the pushing device pulls it back.
func (s *settlement) keep(t *schema.Table, id string) {
	s.ops = append(s.ops, Op{Kind: OpUpdate, ID: id, Values: make([]any, len(t.Columns)), Set: make([]bool, len(t.Columns))})
	s.resolved = append(s.resolved, id)
}

// lastWriteWins keeps whole the side whose col is larger; a tie, or a side without a
// number, keeps the server's. A pushed deletion carries no col, so it cannot be shown
// to be newer: the server's record stays.
func (s *settlement) lastWriteWins(tx WriteTx, t *schema.Table, col string, c *contested) error {
	i := t.ColumnIndex(col)
	recs := append(append([]PushedRecord(nil), c.created...), c.updated...)
	ids := make([]string, len(recs))
	for k, r := range recs {
		ids[k] = r.ID
	}
	server, err := tx.Values(t, []schema.Column{t.Columns[i]}, ids)
	if err != nil {
		return err
	}
	for _, r := range recs {
		var mine any
		if r.Set[i] {
			mine = r.Values[i]
		}
		var theirs any
		if v, ok := server[r.ID]; ok {
			theirs = v[0]
		}
		if newer(mine, theirs) {
			s.write(r, r.Set)
		} else {
			s.keep(t, r.ID)
		}
	}
	for _, id := range c.deleted {
		s.keep(t, id)
	}
	return nil
}

// newer reports whether number a is larger than b; a non-number is never larger, and
// any number is larger than a non-number.
func newer(a, b any) bool {
	x, ok := a.(float64)
	if !ok {
		return false
	}
	y, ok := b.(float64)
	if !ok {
		return true
	}
	return x > y
}
