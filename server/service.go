package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

// Service applies the sync protocol's rules to a Store for one schema.
type Service struct {
	store  Store
	schema *schema.Schema
	feed   Feed
	hook   *writeHook // nil: no write hook (hook.go)
	// history: restores and gaps (history.go)
	history history
}

// New returns a Service over store for schema s. The store must have been prepared
// for s (Store.Prepare).
func New(store Store, s *schema.Schema) *Service {
	return &Service{store: store, schema: s}
}

// Schema returns the schema the service serves.
func (s *Service) Schema() *schema.Schema { return s.schema }

// Store returns the service's store.
func (s *Service) Store() Store { return s.store }

// Caller is who sends a request.
type Caller struct {
	// User is the authenticated user id (the JWT's sub).
	User string
	// Device is the X-Melon-Device header ("" when absent).
	Device string
	// CreatedAsUpdated is the X-Melon-Send-Created-As-Updated header.
	CreatedAsUpdated bool
}

// PullParams is a validated pull request.
type PullParams struct {
	// LastPulledAt is 0 for a first sync.
	LastPulledAt int64
	// SchemaVersion is the client's schema version (the server's when not sent).
	SchemaVersion int
	// Migration lists what the client's schema gained since its last sync (nil: none).
	Migration *melonsync.Migration
	// Replacement asks for a replacement answer even when an incremental one is
	// possible (an operator forced it for this device).
	Replacement bool
	// Stats, when set, is filled in by a successful Pull.
	Stats *PullStats
	// PageSize, when > 0, asks for a paged answer of about that many records
	// (PAGING.md); 0 answers everything at once.
	PageSize int
}

// PullStats is what a pull answered, for the sync log.
type PullStats struct {
	Timestamp int64
	// Strategy is "replacement" or "" (a migration pull is told by its params).
	Strategy string
	// Tables counts the records sent per table.
	Tables map[string]TableCounts
}

// TableCounts counts the records of one table by kind.
type TableCounts struct{ Created, Updated, Deleted int }

// Pull writes the JSON answer to a pull ({"changes": …, "timestamp": …}) to w,
// streaming it from one consistent snapshot of the store. A schema version that is
// not given is served as the server's. Errors: unauthorized without a user; conflict
// when the client's schema version is newer than the server's (SchemaAheadError: a
// rolling upgrade is under way and this process cannot serve it yet); store failures
// as they come (internal, unavailable). Nothing is written to w before the snapshot is
// open, but a failure after the answer started leaves w with a partial answer: the
// caller must not present it as complete.
func (s *Service) Pull(ctx context.Context, c Caller, p PullParams, w io.Writer) error {
	if c.User == "" {
		return melonsync.Errorf(melonsync.EUnauthorized, "no user")
	}
	sv := p.SchemaVersion
	if sv > s.schema.Version {
		return SchemaAheadError(sv, s.schema.Version)
	}
	if sv <= 0 {
		sv = s.schema.Version
	}
	migTables := map[string]bool{}
	migColumns := map[string][]schema.Column{}
	if m := p.Migration; m != nil {
		for _, name := range m.Tables {
			if t := s.schema.Table(name); t != nil && t.Since <= sv {
				migTables[name] = true
			}
		}
		for _, mc := range m.Columns {
			t := s.schema.Table(mc.Table)
			if t == nil || t.Since > sv {
				continue
			}
			for _, name := range mc.Columns {
				if col := t.Column(name); col != nil && col.Since <= sv {
					migColumns[t.Name] = append(migColumns[t.Name], *col)
				}
			}
		}
	}
	enc := newEncoder(w)
	err := s.store.Read(ctx, func(tx ReadTx) error {
		clock, err := tx.Clock()
		if err != nil {
			return err
		}
		since := p.LastPulledAt
		strategy, err := s.strategy(tx, p, clock)
		if err != nil {
			return err
		}
		tables := s.schema.TablesAt(sv)
		var pg *page
		if p.PageSize > 0 && strategy == "" {
			// A replacement answer must be whole (the client drops what it lacks).
			if pg, err = s.pageEnd(tx, c, tables, since, clock, p.PageSize); err != nil {
				return err
			}
		}
		through, ts := int64(0), clock
		if pg != nil && pg.more {
			through, ts = pg.through, pg.through
		}
		enc.raw(`{"changes":{`)
		memo := members{} // the caller's memberships, read once per pull
		for i, t := range tables {
			if i > 0 {
				enc.byte(',')
			}
			enc.str(t.Name)
			enc.raw(`:`)
			enc.counts = [3]int{}
			if err := s.pullTable(tx, c, t, t.ColumnsAt(sv), window{since, through}, strategy != "", migTables[t.Name], migColumns[t.Name], memo, enc); err != nil {
				return err
			}
			if p.Stats != nil && enc.counts != [3]int{} {
				if p.Stats.Tables == nil {
					p.Stats.Tables = map[string]TableCounts{}
				}
				p.Stats.Tables[t.Name] = TableCounts{enc.counts[kindCreated], enc.counts[kindUpdated], enc.counts[kindDeleted]}
			}
			if enc.err != nil {
				return enc.err
			}
		}
		enc.raw(`},"timestamp":`)
		enc.int(ts)
		if strategy != "" {
			enc.raw(`,"experimentalStrategy":`)
			enc.str(strategy)
		}
		if pg != nil {
			if err := pg.finish(tx, c, tables); err != nil {
				return err
			}
			pg.encode(enc)
		}
		enc.raw("}")
		if p.Stats != nil {
			p.Stats.Timestamp, p.Stats.Strategy = ts, strategy
		}
		return enc.flush()
	})
	if err != nil && !errors.As(err, new(*melonsync.Error)) {
		return fmt.Errorf("pull: %w", err)
	}
	return err
}

// ReasonSchemaAhead is details.reason of the conflict answered to a pull whose schema
// version is newer than the server's.
const ReasonSchemaAhead = "schema_version_ahead"

// SchemaAheadRetry is how many seconds a client refused with SchemaAheadError is told
// to wait (Retry-After) before trying again.
const SchemaAheadRetry = 5

// SchemaAheadError is the answer to a pull from a client whose schema version is newer
// than this server's: during a rolling upgrade an old process must not answer it, or
// the timestamp it hands out would make the client skip the newer tables and columns
// for good. It is a conflict (409) — "sync again later" — with details.reason
// ReasonSchemaAhead and both versions; another process (or this one, upgraded) will
// serve the retry.
func SchemaAheadError(client, server int) *melonsync.Error {
	return &melonsync.Error{
		Code: melonsync.EConflict,
		Message: fmt.Sprintf("schemaVersion %d is newer than this server's schema (version %d): a server upgrade is in progress; try again later",
			client, server),
		Details: map[string]any{
			"reason":              ReasonSchemaAhead,
			"schemaVersion":       client,
			"serverSchemaVersion": server,
			"retryAfter":          SchemaAheadRetry,
		},
	}
}

// pullTable writes {"created":[…],"updated":[…],"deleted":[…]} for one table.
func (s *Service) pullTable(tx ReadTx, c Caller, t *schema.Table, cols []schema.Column, win window, replacement, migTable bool, migCols []schema.Column, memo members, enc *encoder) error {
	if t.Rule.Kind == schema.GroupRule {
		m, err := memo.of(tx, t.Rule.Group, c.User, win.since)
		if err != nil {
			return err
		}
		return s.pullGroupTable(tx, c, t, cols, win, replacement, migTable, migCols, m, enc)
	}
	since := win.since
	scope := Filter{Owner: c.User}
	if t.Rule.Kind == schema.Public {
		scope = Filter{Any: true}
	}
	// whole: every live record is sent (first sync, replacement, new table).
	whole := since == 0 || replacement || migTable
	isCreated := func(r *Row) bool { return createdRule(c, r, since, migTable) }
	live := scope
	if !whole {
		live.After = since
	}
	live.CreatedThrough = win.through
	if err := writeLive(tx, t, cols, enc, livePass(c, live, isCreated, nil)); err != nil {
		return err
	}
	if len(migCols) > 0 && !whole {
		// Records the client already had, whose new columns hold something.
		f := scope
		f.Through = since
		f.NonDefault = migCols
		if err := scanRecords(tx, t, cols, f, enc, nil); err != nil {
			return err
		}
	}
	enc.openDeleted()
	if since > 0 && !migTable && !replacement {
		f := scope
		f.Deleted = true
		f.After = since
		f.Through = win.through
		if err := scanIDs(tx, t, f, enc, nil); err != nil {
			return err
		}
	}
	enc.raw(`]}`)
	return nil
}

// livePass is the pass that sorts the live rows f selects, of those keep accepts
// (nil: all), into created and updated by isCreated (CreatedAsUpdated: all updated).
func livePass(c Caller, f Filter, isCreated, keep func(*Row) bool) pass {
	return pass{f: f, updatedOnly: c.CreatedAsUpdated, verdict: func(r *Row) pullVerdict {
		switch {
		case keep != nil && !keep(r):
			return skip
		case c.CreatedAsUpdated:
			return sendUpdated
		case isCreated(r):
			return sendCreated
		}
		return sendUpdated
	}}
}

// createdRule applies SPEC §3 pull rule 4 to a live row changed after since: first
// syncs and new tables get "created"; a row created at or before since is "updated";
// a later one is "updated" when this device (without a device: this user) pushed its
// creation, else "created".
func createdRule(c Caller, r *Row, since int64, migTable bool) bool {
	if since == 0 || migTable {
		return true
	}
	if r.CreatedVersion <= since {
		return false
	}
	return !ownCreation(c, r)
}

// ownCreation reports whether the caller pushed r's creation: its device when the
// request names one, else its user.
func ownCreation(c Caller, r *Row) bool {
	if c.Device != "" {
		return r.CreatedDevice == c.Device
	}
	return r.Owner == c.User
}

// scanRecords writes, comma-separated after whatever the current array holds, the
// rows of t matching f for which keep (nil: every row) is true.
func scanRecords(tx ReadTx, t *schema.Table, cols []schema.Column, f Filter, enc *encoder, keep func(*Row) bool) error {
	first := enc.lastWas('[')
	return tx.Scan(t, cols, f, func(r *Row) error {
		if keep != nil && !keep(r) {
			return nil
		}
		if !first {
			enc.byte(',')
		}
		first = false
		enc.record(r, cols)
		return enc.err
	})
}

// scanIDs writes the ids of the rows of t matching f (keep as for scanRecords).
func scanIDs(tx ReadTx, t *schema.Table, f Filter, enc *encoder, keep func(*Row) bool) error {
	first := enc.lastWas('[')
	return tx.Scan(t, nil, f, func(r *Row) error {
		if keep != nil && !keep(r) {
			return nil
		}
		if !first {
			enc.byte(',')
		}
		first = false
		enc.id(r.ID)
		return enc.err
	})
}
