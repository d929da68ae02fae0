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
// touched. Any record changed on the server after p.LastPulledAt aborts the whole
// push with a conflict error listing the ids — unless the change came from the
// caller's own device (a retried push whose answer was lost). Errors: conflict;
// internal for store failures.
func (s *Service) Push(ctx context.Context, c Caller, p *PushParams) (*melonsync.PushResponse, error) {
	if c.User == "" {
		return nil, melonsync.Errorf(melonsync.EUnauthorized, "no user")
	}
	resp := &melonsync.PushResponse{OK: true}
	wrote := false
	err := s.store.Write(ctx, func(tx WriteTx) error {
		// A store may run this again after an aborted attempt: start afresh.
		resp.RejectedIDs, resp.Timestamp, wrote = nil, 0, false
		conflicts := map[string][]string{}
		rejected := map[string][]string{}
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
			var ops []Op
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
				case changedSince(m):
					conflict(r.ID)
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
					conflict(r.ID)
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
					conflict(id)
				default:
					ops = append(ops, Op{Kind: OpDelete, ID: id, Device: c.Device})
				}
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
		if errors.As(err, new(*melonsync.Error)) {
			return nil, err
		}
		return nil, fmt.Errorf("push: %w", err)
	}
	if resp.Timestamp > 0 && wrote {
		s.feed.Publish(c.User, resp.Timestamp, c.Device)
	}
	return resp, nil
}
