package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// ProbeSpace checks with a small real write that the database has room to write
// again: it writes about 64 KiB (incompressible, so stored as written) into
// __melon_meta and removes it in the same transaction; growing the table and the
// WAL is what a full disk refuses. Errors: melonsync.ErrStorageFull (disk_full) when
// there is still no room.
func (s *Store) ProbeSpace(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO __melon_meta (key, value)
			SELECT 'space_probe', string_agg(md5(random()::text || g::text), '') FROM generate_series(1, 2048) g
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM __melon_meta WHERE key = 'space_probe'`)
		return err
	})
	return wrap("probe space", err)
}
