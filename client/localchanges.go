package client

import (
	"context"
	"fmt"

	"github.com/melonsync/melonsync"
)

// LocalChanges are the local changes to push, as FetchLocalChanges found them
// (WatermelonDB's SyncLocalChanges).
type LocalChanges struct {
	// Changes has an entry for every table of the schema (with empty, non-nil lists
	// when nothing changed): records created and updated locally, without "_status"
	// and "_changed", and the ids of records marked as deleted. It may be encoded and
	// sent as is; MarkAsSynced does not read it.
	Changes melonsync.Changes
	// Count is the number of created, updated and deleted records in Changes.
	Count int

	// fetched keeps a private copy of every record as fetched (with _status and
	// _changed), to tell later whether it changed since.
	fetched map[string]*fetchedTable
	tables  []string // schema order
}

type fetchedTable struct {
	records []Record // created and updated, as fetched
	deleted []string
}

// Empty reports whether there is nothing to push.
func (lc *LocalChanges) Empty() bool { return lc == nil || lc.Count == 0 }

// FetchLocalChanges returns every local change not yet synced, read from one snapshot:
// per table the records with _status "created", those with "updated" and the ids of
// those with "deleted" (WatermelonDB's fetchLocalChanges).
func (db *DB) FetchLocalChanges(ctx context.Context) (*LocalChanges, error) {
	lc := &LocalChanges{Changes: melonsync.Changes{}, fetched: map[string]*fetchedTable{}}
	err := db.Read(ctx, func(tx *Tx) error {
		for _, t := range db.schema.Tables {
			ti := db.tables[t.Name]
			tc := &melonsync.TableChanges{Created: []melonsync.RawRecord{}, Updated: []melonsync.RawRecord{}, Deleted: []string{}}
			ft := &fetchedTable{}
			for _, status := range []string{StatusCreated, StatusUpdated} {
				recs, err := tx.queryRecords(ti, ti.selectSQL+` where "_status" = ?`, status)
				if err != nil {
					return err
				}
				for _, r := range recs {
					ft.records = append(ft.records, r)
					// Sent whole, _status and _changed included, as WatermelonDB sends
					// them: a server's client-wins policy merges by the _changed list.
					out := copyRecord(r)
					if status == StatusCreated {
						tc.Created = append(tc.Created, out)
					} else {
						tc.Updated = append(tc.Updated, out)
					}
				}
			}
			ids, err := tx.queryIDs(`select "id" from "` + t.Name + `" where "_status" = 'deleted'`)
			if err != nil {
				return fmt.Errorf("client: fetch local changes of %s: %w", t.Name, err)
			}
			tc.Deleted = append(tc.Deleted, ids...)
			ft.deleted = ids
			lc.Changes[t.Name] = tc
			lc.fetched[t.Name] = ft
			lc.tables = append(lc.tables, t.Name)
			lc.Count += len(tc.Created) + len(tc.Updated) + len(tc.Deleted)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lc, nil
}

// MarkAsSynced records that the changes in lc were pushed (WatermelonDB's
// markLocalChangesAsSynced), in one write transaction: every created or updated record
// that is still exactly as fetched (all columns, _status and _changed) becomes "synced"
// with an empty _changed; records marked as deleted are destroyed permanently. Records
// changed or destroyed since the fetch are left alone (their new changes are pushed next
// time), and so are the ids listed in rejected (table → ids: the server's
// experimentalRejectedIds), which stay unsynced.
func (db *DB) MarkAsSynced(ctx context.Context, lc *LocalChanges, rejected map[string][]string) error {
	if lc == nil || lc.Count == 0 {
		return nil
	}
	return db.Write(ctx, func(tx *Tx) error {
		for _, table := range lc.tables {
			ft := lc.fetched[table]
			ti, err := db.table(table)
			if err != nil {
				return err
			}
			skip := make(map[string]bool, len(rejected[table]))
			for _, id := range rejected[table] {
				skip[id] = true
			}
			for _, snap := range ft.records {
				id := snap["id"].(string)
				if skip[id] {
					continue
				}
				cur, err := tx.find(ti, id)
				if err != nil {
					if isNotFound(err) {
						continue
					}
					return err
				}
				if !ti.recordsEqual(cur, snap) {
					continue
				}
				if _, err := tx.exec(`update "`+table+`" set "_status" = 'synced', "_changed" = '' where "id" is ?`, id); err != nil {
					return fmt.Errorf("client: mark %s#%s as synced: %w", table, id, err)
				}
				tx.note(table, id, ChangeUpdated, true)
			}
			for _, id := range ft.deleted {
				if skip[id] {
					continue
				}
				res, err := tx.exec(`delete from "`+table+`" where "id" is ? and "_status" = 'deleted'`, id)
				if err != nil {
					return fmt.Errorf("client: destroy deleted %s#%s: %w", table, id, err)
				}
				if n, _ := res.RowsAffected(); n > 0 {
					tx.note(table, id, ChangeDeleted, true)
				}
			}
		}
		return nil
	})
}

// HasUnsyncedChanges reports whether any record is created, updated or marked as deleted
// locally and not yet synced (WatermelonDB's hasUnsyncedChanges).
func (db *DB) HasUnsyncedChanges(ctx context.Context) (bool, error) {
	found := false
	err := db.Read(ctx, func(tx *Tx) error {
		for _, t := range db.schema.Tables {
			var n int
			q := `select exists (select 1 from "` + t.Name + `" where "_status" in ('created', 'updated', 'deleted'))`
			if err := tx.tx.QueryRowContext(tx.ctx, q).Scan(&n); err != nil {
				return fmt.Errorf("client: has unsynced changes: %w", err)
			}
			if n != 0 {
				found = true
				return nil
			}
		}
		return nil
	})
	return found, err
}
