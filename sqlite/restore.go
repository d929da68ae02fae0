package sqlite

import (
	"context"
	"fmt"
	"time"
)

// MarkRestored records that the file was just restored from a backup: timestamps
// handed out after the backup was taken belong to a history the store no longer has,
// so a device holding one must not pull incrementally from it. The clock moves to at
// least now + margin (beyond every timestamp the lost history can have handed out)
// and the purge horizon to the clock: every device's next pull is a replacement,
// after which it syncs incrementally again. It returns the new clock.
func (s *Store) MarkRestored(ctx context.Context, margin time.Duration) (int64, error) {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: mark restored: %w", err)
	}
	defer tx.Rollback()
	var clock int64
	if err := tx.QueryRowContext(ctx, `SELECT CAST("value" AS INTEGER) FROM "__melon_meta" WHERE "key" = 'clock'`).Scan(&clock); err != nil {
		return 0, fmt.Errorf("sqlite: mark restored: %w", err)
	}
	clock = max(clock+1, s.Now().Add(margin).UnixMilli())
	for _, key := range []string{"clock", "purged_through"} {
		if _, err := tx.ExecContext(ctx, `UPDATE "__melon_meta" SET "value" = CAST(max(CAST("value" AS INTEGER), ?) AS TEXT) WHERE "key" = ?`, clock, key); err != nil {
			return 0, fmt.Errorf("sqlite: mark restored: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: mark restored: %w", err)
	}
	return clock, nil
}
