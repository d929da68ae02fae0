package client

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/melonsync/melonsync/internal/sqlitedb"
)

// Streamed apply: a pull answer given as a body (PullResult.Body) is applied while it
// is decoded, in batches of a few hundred records, so that memory does not grow with
// the answer, with the outcome of ApplyRemoteChanges on the decoded changes.
//
// ApplyRemoteChanges takes every decision from the state before any change. Applied
// batch by batch, a record's decision is taken from the state when its batch comes,
// which is the same state unless the answer already changed that record: so every id
// of the answer goes into a temporary table, and an id met a second time (a server
// bug; WatermelonDB's outcome then depends on its batching) fails the sync before
// anything is kept. The same table holds what a replacement keeps: once the whole
// answer (and its experimentalStrategy, which may come after the changes) is read,
// the local records the replacement covers that the answer did not hold are
// destroyed with one statement per table, records created locally excepted.

const (
	streamBatch = 500 // records applied together (one query for their local state)
	seenTable   = `temp."__melon_seen"`
)

type pendingKind uint8

const (
	pendingCreated pendingKind = iota
	pendingUpdated
	pendingDeleted
)

type pending struct {
	kind pendingKind
	id   string
	raw  Record
}

// applySink is the pullSink of a streamed apply.
type applySink struct {
	tx       *Tx
	ctx      context.Context
	opts     *ApplyOptions
	progress func(Progress)
	ti       *tableInfo // the table of batch
	batch    []pending
	present  []*tableInfo    // tables the answer has, in answer order
	created  map[string]int  // created records per table (sendCreatedAsUpdated warning)
	warned   map[string]bool // unknown tables
	seenSet  map[string]bool // tables in present
	n        int
	reported int
}

func (s *applySink) wantTable(table string) bool {
	ti := s.tx.db.tables[table]
	if ti == nil {
		if !s.warned[table] {
			s.warned[table] = true
			s.opts.warn(table, "", "the server sent changes of table %q, which the schema does not have; skipped", table)
		}
		return false
	}
	if !s.seenSet[table] {
		s.seenSet[table] = true
		s.present = append(s.present, ti)
	}
	return true
}

func (s *applySink) record(table string, created bool, rec Record) error {
	if err := checkRemoteRaw(table, rec); err != nil {
		return err
	}
	kind := pendingUpdated
	if created {
		kind = pendingCreated
		s.created[table]++
	}
	return s.add(table, pending{kind: kind, id: rec["id"].(string), raw: rec})
}

func (s *applySink) deleted(table, id string) error {
	return s.add(table, pending{kind: pendingDeleted, id: id})
}

func (s *applySink) add(table string, p pending) error {
	if s.ti == nil || s.ti.t.Name != table {
		if err := s.flush(); err != nil {
			return err
		}
		s.ti = s.tx.db.tables[table]
	}
	s.batch = append(s.batch, p)
	if len(s.batch) >= streamBatch {
		return s.flush()
	}
	return nil
}

// flush applies the pending batch.
func (s *applySink) flush() error {
	if len(s.batch) == 0 {
		return nil
	}
	ti, batch := s.ti, s.batch
	s.batch = s.batch[:0]
	if err := s.markSeen(ti, batch); err != nil {
		return err
	}
	ids := make([]string, len(batch))
	for i, p := range batch {
		ids[i] = p.id
	}
	recs, err := s.tx.fetchByIDs(ti, ids)
	if err != nil {
		return err
	}
	st := &localState{local: map[string]Record{}, locallyDeleted: map[string]bool{}}
	for _, r := range recs {
		st.add(r)
	}
	for _, p := range batch {
		if err := s.tx.applyOne(ti, p, st, s.opts); err != nil {
			return err
		}
	}
	clear(batch)
	s.n += len(batch)
	for s.n-s.reported >= progressEvery {
		s.reported += progressEvery
		if err := s.ctx.Err(); err != nil {
			return err
		}
		if s.progress != nil {
			s.progress(Progress{Phase: "applying", Records: s.reported, Total: -1})
		}
	}
	return nil
}

// markSeen records the ids of a batch, failing on an id the answer already had.
func (s *applySink) markSeen(ti *tableInfo, batch []pending) error {
	const one = `insert into ` + seenTable + ` ("tbl", "id", "keep") values (?, ?, ?)`
	args := make([]any, 0, 3*len(batch))
	for _, p := range batch {
		args = append(args, ti.t.Name, p.id, sqlitedb.Bind(p.kind != pendingDeleted))
	}
	_, err := s.tx.exec(one+strings.Repeat(", (?, ?, ?)", len(batch)-1), args...)
	if err != nil && isPrimaryKeyConflict(err) {
		// The failed statement left nothing: find the first id already seen.
		for i, p := range batch {
			if _, err := s.tx.exec(one, args[3*i:3*i+3]...); err != nil {
				if isPrimaryKeyConflict(err) {
					return duplicateError(ti, p.id)
				}
				return fmt.Errorf("client: apply remote changes: %w", err)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("client: apply remote changes: %w", err)
	}
	return nil
}

func duplicateError(ti *tableInfo, id string) error {
	return invalidData("pull", "the pull answer lists record %s#%s more than once", ti.t.Name, id)
}

// applyOne applies one remote change as applyPlan does, from st, the local state of
// its batch before the batch was applied.
func (tx *Tx) applyOne(ti *tableInfo, p pending, st *localState, opts *ApplyOptions) error {
	table, id := ti.t.Name, p.id
	local, deleted := st.local[id], st.locallyDeleted[id]
	switch p.kind {
	case pendingCreated:
		switch {
		case local != nil:
			opts.warn(table, id, "the server wants to create record %s#%s, but it already exists locally; updating it instead (a previous sync may have failed half way)", table, id)
			return tx.updateFromRemote(ti, local, p.raw, opts)
		case deleted:
			opts.warn(table, id, "the server wants to create record %s#%s, but it exists locally and is marked as deleted; destroying the local record and creating it again", table, id)
			if err := tx.destroyRow(table, id, false); err != nil {
				return err
			}
		}
		return tx.insertSynced(ti, p.raw, id)
	case pendingUpdated:
		switch {
		case local != nil:
			return tx.updateFromRemote(ti, local, p.raw, opts)
		case deleted:
			return nil // deleted locally: the deletion will be pushed
		}
		if !opts.SendCreatedAsUpdated {
			opts.warn(table, id, "the server wants to update record %s#%s, but it does not exist locally; creating it", table, id)
		}
		return tx.insertSynced(ti, p.raw, id)
	default:
		if local != nil || deleted {
			return tx.destroyRow(table, id, false)
		}
		return nil
	}
}

// streamApply decodes the pull answer r and applies it in tx. scope is the
// ReplacementScope the PullFunc set (the answer cannot carry one).
func (tx *Tx) streamApply(ctx context.Context, r io.Reader, base ApplyOptions, scope map[string][]Condition, progress func(Progress)) (*streamResult, error) {
	if _, err := tx.exec(`create temp table if not exists "__melon_seen" ("tbl" text not null, "id" text not null, "keep" integer not null, primary key ("tbl", "id")) without rowid`); err != nil {
		return nil, fmt.Errorf("client: apply remote changes: %w", err)
	}
	// Warnings and conflicts are told once the whole answer is applied: a failure
	// keeps nothing, and tells nothing of what was rolled back.
	var told []func()
	if w := base.OnWarning; w != nil {
		base.OnWarning = func(table, id, msg string) { told = append(told, func() { w(table, id, msg) }) }
	}
	if c := base.OnConflict; c != nil {
		base.OnConflict = func(table string, local, remote, resolved Record) {
			told = append(told, func() { c(table, local, remote, resolved) })
		}
	}
	sink := &applySink{tx: tx, ctx: ctx, opts: &base, progress: progress,
		created: map[string]int{}, warned: map[string]bool{}, seenSet: map[string]bool{}}
	if progress != nil {
		progress(Progress{Phase: "applying", Records: 0, Total: -1})
	}
	sr, err := streamPullResponse(ctx, r, sink)
	if err != nil {
		return nil, err
	}
	if err := sink.flush(); err != nil {
		return nil, err
	}
	sr.Strategy.ReplacementScope = scope
	if err := checkStrategy(sr.Strategy); err != nil {
		return nil, err
	}
	for _, ti := range sink.present {
		if n := sink.created[ti.t.Name]; base.SendCreatedAsUpdated && n > 0 {
			base.warn(ti.t.Name, "", "sendCreatedAsUpdated is set, and yet the server sent %d record(s) of %s as created", n, ti.t.Name)
		}
		if sr.Strategy.For(ti.t.Name) == StrategyReplacement {
			if err := tx.sweep(ti, sr.Strategy); err != nil {
				return nil, err
			}
		}
	}
	if _, err := tx.exec(`drop table ` + seenTable); err != nil {
		return nil, fmt.Errorf("client: apply remote changes: %w", err)
	}
	for _, tell := range told {
		tell()
	}
	if progress != nil {
		progress(Progress{Phase: "applied", Records: sr.Records, Total: sr.Records})
	}
	return sr, nil
}

// sweep destroys, after a replacement answer of ti was applied, the local records the
// replacement covers that the answer did not hold, except records created locally.
// A _status that is not one of WatermelonDB's reads as "created" (sanitizedRaw), so
// such a record is kept too.
func (tx *Tx) sweep(ti *tableInfo, s Strategy) error {
	table := ti.t.Name
	where := ` where "_status" in ('synced', 'updated', 'deleted') and "id" not in (select "id" from ` + seenTable + ` where "tbl" = ? and "keep")`
	args := []any{table}
	if conds, ok := s.ReplacementScope[table]; ok {
		w, a, err := Query{Where: conds, IncludeDeleted: true}.sql(ti)
		if err != nil {
			return err
		}
		where += ` and "id" in (select "id" from "` + table + `"` + w + `)`
		args = append(args, a...)
	}
	ids, err := tx.tx.QueryContext(tx.ctx, `select "id" from "`+table+`"`+where, args...)
	if err != nil {
		return fmt.Errorf("client: apply remote changes to %s: %w", table, err)
	}
	for ids.Next() {
		var id string
		if err := ids.Scan(&id); err != nil {
			ids.Close()
			return fmt.Errorf("client: apply remote changes to %s: %w", table, err)
		}
		tx.note(table, id, ChangeDeleted, true)
	}
	ids.Close()
	if err := ids.Err(); err != nil {
		return fmt.Errorf("client: apply remote changes to %s: %w", table, err)
	}
	if _, err := tx.tx.ExecContext(tx.ctx, `delete from "`+table+`"`+where, args...); err != nil {
		return fmt.Errorf("client: apply remote changes to %s: %w", table, err)
	}
	return nil
}
