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
// history can have handed out), under the clock lock, and raises the purge horizon to
// it: every device's next pull is a replacement, after which it syncs incrementally
// again. It returns the new clock. Run it with every server stopped.
func (s *Store) MarkRestored(ctx context.Context, margin time.Duration) (int64, error) {
	var v int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		floor := time.Now().Add(margin).UnixMilli()
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('melonsync:clock:' || $1, 0))`, s.instance); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT setval('__melon_version_seq', greatest((SELECT last_value FROM __melon_version_seq), $1::bigint - 1))`, floor); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT __melon_version($1, current_schema())`, s.instance).Scan(&v); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE __melon_meta SET value = greatest(value::bigint, $1)::text WHERE key = 'purged_through'`, v)
		return err
	})
	if err != nil {
		return 0, wrap("mark restored", err)
	}
	return v, nil
}
