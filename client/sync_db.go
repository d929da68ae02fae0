package client

import "context"

// This file adapts Synchronize to the database API of this package.

// isEmpty reports whether db holds no record (synced or not) and no local change.
func isEmpty(ctx context.Context, db *DB) (bool, error) {
	unsynced, err := db.HasUnsyncedChanges(ctx)
	if err != nil || unsynced {
		return false, err
	}
	empty := true
	err = db.Read(ctx, func(tx *Tx) error {
		for _, t := range db.Schema().Tables {
			n, err := tx.Count(t.Name, Query{})
			if err != nil {
				return err
			}
			if n > 0 {
				empty = false
				return nil
			}
		}
		return nil
	})
	return empty, err
}

func applyOptions(s Strategy, opts *SyncOptions) ApplyOptions {
	ao := ApplyOptions{
		Strategy:             s,
		SendCreatedAsUpdated: opts.SendCreatedAsUpdated,
		ConflictResolver:     opts.ConflictResolver,
	}
	if log := opts.Log; log != nil {
		ao.OnWarning = func(table, id, message string) { log.warn("%s", message) }
		ao.OnConflict = func(table string, local, remote, resolved Record) {
			log.update(func(l *SyncLog) {
				l.ResolvedConflicts = append(l.ResolvedConflicts, ResolvedConflict{Table: table, Local: local, Remote: remote, Resolved: resolved})
			})
		}
	}
	return ao
}
