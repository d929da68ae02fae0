package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/melonsync/melonsync"
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
	wrote := false
	err := s.store.Write(ctx, func(tx WriteTx) error {
		// A store may run this again after an aborted attempt: start afresh.
		resp.RejectedIDs, resp.ResolvedIDs, resp.Timestamp, wrote = nil, nil, 0, false
		if err := checkClock(tx, p); err != nil {
			return err
		}
		conflicts := map[string][]string{}
		rejected := map[string][]string{}
		resolved := map[string][]string{}
		type planned struct {
			tp  *TablePush
			ops []Op
		}
		var plan []planned
		// changedSince says whether a row's last change is one the client has not seen.
		changedSince := func(m Meta) bool {
			if m.Version <= p.LastPulledAt {
				return false
			}
			return c.Device == "" || m.Device != c.Device
		}
		for i := range p.Tables {
			tp := &p.Tables[i]
			t := tp.Table
			ids := make([]string, 0, len(tp.Created)+len(tp.Updated)+len(tp.Deleted))
			for _, r := range tp.Created {
				ids = append(ids, r.ID)
			}
			for _, r := range tp.Updated {
				ids = append(ids, r.ID)
			}
			ids = append(ids, tp.Deleted...)
			metas, err := tx.Lookup(t, ids)
			if err != nil {
				return err
			}
			if err := guard.check(t, metas); err != nil {
				return err
			}
			var ops []Op
			var contest contested // changed on the server since lastPulledAt: the table's policy decides
			reject := func(id string) { rejected[t.Name] = append(rejected[t.Name], id) }
			conflict := func(id string) { conflicts[t.Name] = append(conflicts[t.Name], id) }
			insert := func(r PushedRecord) {
				ops = append(ops, Op{Kind: OpInsert, ID: r.ID, Values: r.Values, Owner: c.User, Device: c.Device})
			}
			update := func(r PushedRecord) {
				ops = append(ops, Op{Kind: OpUpdate, ID: r.ID, Values: r.Values, Set: r.Set, Device: c.Device})
			}
			for _, r := range tp.Created {
				m, ok := metas[r.ID]
				switch {
				case !ok:
					insert(r)
				case m.Owner != c.User:
					reject(r.ID)
				case changedSince(m) && m.Deleted:
					conflict(r.ID) // deleted after lastPulledAt: never resurrected
				case changedSince(m):
					contest.created = append(contest.created, r)
				case m.Deleted:
					insert(r) // deleted at or before lastPulledAt: the client saw it; re-create
				default:
					update(r)
				}
			}
			for _, r := range tp.Updated {
				m, ok := metas[r.ID]
				switch {
				case !ok:
					insert(r)
				case m.Owner != c.User:
					reject(r.ID)
				case m.Deleted:
					conflict(r.ID) // the client must pull the deletion
				case changedSince(m):
					contest.updated = append(contest.updated, r)
				default:
					update(r)
				}
			}
			for _, id := range tp.Deleted {
				m, ok := metas[id]
				switch {
				case !ok:
				case m.Owner != c.User:
					reject(id)
				case m.Deleted:
				case changedSince(m):
					contest.deleted = append(contest.deleted, id)
				default:
					ops = append(ops, Op{Kind: OpDelete, ID: id, Device: c.Device})
				}
			}
			settled, err := settle(tx, t, s.schema.Policy(t.Name), &contest)
			if err != nil {
				return err
			}
			ops = append(ops, settled.ops...)
			if len(settled.conflicts) > 0 {
				conflicts[t.Name] = append(conflicts[t.Name], settled.conflicts...)
			}
			if len(settled.resolved) > 0 {
				resolved[t.Name] = settled.resolved
			}
			if len(ops) > 0 {
				plan = append(plan, planned{tp, ops})
			}
		}
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
		v, err := tx.Version()
		if err != nil {
			return err
		}
		resp.Timestamp = v
		wrote = true
		for _, pl := range plan {
			if err := tx.Apply(pl.tp.Table, pl.ops); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if errors.As(err, new(*melonsync.Error)) || errors.Is(err, errHookStale) {
			return nil, err
		}
		return nil, fmt.Errorf("push: %w", err)
	}
	if resp.Timestamp > 0 && wrote {
		s.feed.Publish(c.User, resp.Timestamp)
	}
	return resp, nil
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
