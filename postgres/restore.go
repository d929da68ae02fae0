package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// MarkRestored records that the database was just restored from a backup:
// timestamps handed out after the backup was taken belong to a history the store no
// longer has, so a device holding one must not pull incrementally from it. It
// allocates a version of at least now + margin (beyond every timestamp the lost
// history can have handed out), behind the closed gate, and raises the purge horizon to
// it: every device's next pull is a replacement, after which it syncs incrementally
// again. It returns the new clock. Run it with every server stopped.
func (s *Store) MarkRestored(ctx context.Context, margin time.Duration) (int64, error) {
	var v int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		floor := time.Now().Add(margin).UnixMilli()
		clock, err := closeGate(ctx, tx)
		if err != nil {
			return err
		}
		if err := raiseClock(ctx, tx, clock, floor-1); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT __melon_version($1, current_schema())`, s.instance).Scan(&v); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE __melon_meta SET value = greatest(value::bigint, $1)::text WHERE key = 'purged_through'`, v)
		return err
	})
	if err != nil {
		return 0, wrap("mark restored", err)
	}
	return v, nil
}
