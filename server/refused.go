package server

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/melonsync/melonsync"
)

// RefusedError is what WriteTx.Apply returns when the database refused records of a
// table for their data: a constraint that the app's own SQL added (a foreign key, a
// unique index, a check, a trigger that raises). Reasons holds, by record id, the
// database's words (the constraint's name, never the statement). The transaction is
// rolled back; Push runs the push again without those records and refuses them one by
// one.
type RefusedError struct {
	Table   string
	Reasons map[string]string
}

// Error implements error.
func (e *RefusedError) Error() string {
	ids := make([]string, 0, len(e.Reasons))
	for id := range e.Reasons {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = id + ": " + e.Reasons[id]
	}
	return fmt.Sprintf("the database refused records of %s (%s)", e.Table, strings.Join(parts, "; "))
}

// refusedRounds bounds how often a push is run again without the records the
// database refused (each round finds the refused records of at least one table).
const refusedRounds = 8

// pushRefusing runs push, and when the database refuses records for their data runs
// it again without them, so that the rest of the push applies and the refused
// records are listed in RejectedIDs with their reasons in RejectedReasons — never a
// 500 that the client would retry forever. A push that keeps being refused after
// refusedRounds rounds answers invalid_request naming the table and records.
func (s *Service) pushRefusing(p *PushParams, push func(*PushParams) (*melonsync.PushResponse, error)) (*melonsync.PushResponse, error) {
	refused := map[string]map[string]string{} // table → id → reason
	cur := p
	for round := 0; ; round++ {
		resp, err := push(cur)
		var re *RefusedError
		if !errors.As(err, &re) {
			if err == nil && len(refused) > 0 {
				addRefused(resp, refused)
			}
			return resp, err
		}
		if round == refusedRounds-1 || len(re.Reasons) == 0 {
			return nil, refusedAnswer(re)
		}
		if refused[re.Table] == nil {
			refused[re.Table] = map[string]string{}
		}
		for id, why := range re.Reasons {
			refused[re.Table][id] = why
		}
		cur = withoutRecords(p, refused)
	}
}

// refusedAnswer is the invalid_request answer for records the database keeps refusing.
func refusedAnswer(re *RefusedError) *melonsync.Error {
	ids := make([]string, 0, len(re.Reasons))
	for id := range re.Reasons {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return &melonsync.Error{
		Code:    melonsync.EInvalid,
		Message: re.Error(),
		Details: map[string]any{"table": re.Table, "ids": ids, "reasons": re.Reasons},
	}
}

// addRefused lists the refused records in resp.
func addRefused(resp *melonsync.PushResponse, refused map[string]map[string]string) {
	if resp.RejectedIDs == nil {
		resp.RejectedIDs = map[string][]string{}
	}
	if resp.RejectedReasons == nil {
		resp.RejectedReasons = map[string]string{}
	}
	for table, reasons := range refused {
		ids := make([]string, 0, len(reasons))
		for id, why := range reasons {
			ids = append(ids, id)
			resp.RejectedReasons[id] = "refused by the database: " + why
		}
		sort.Strings(ids)
		resp.RejectedIDs[table] = append(resp.RejectedIDs[table], ids...)
	}
}

// withoutRecords returns p without the records listed in drop (table → id).
func withoutRecords(p *PushParams, drop map[string]map[string]string) *PushParams {
	out := &PushParams{LastPulledAt: p.LastPulledAt, Tables: make([]TablePush, 0, len(p.Tables))}
	for _, tp := range p.Tables {
		d := drop[tp.Table.Name]
		if len(d) == 0 {
			out.Tables = append(out.Tables, tp)
			continue
		}
		n := TablePush{Table: tp.Table}
		for _, r := range tp.Created {
			if _, ok := d[r.ID]; !ok {
				n.Created = append(n.Created, r)
			}
		}
		for _, r := range tp.Updated {
			if _, ok := d[r.ID]; !ok {
				n.Updated = append(n.Updated, r)
			}
		}
		for _, id := range tp.Deleted {
			if _, ok := d[id]; !ok {
				n.Deleted = append(n.Deleted, id)
			}
		}
		out.Tables = append(out.Tables, n)
	}
	return out
}
