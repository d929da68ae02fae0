package sqlite

import (
	"fmt"
	"time"
)

// gapTables holds the gaps of the store's history (server/history.go): versions
// between "after" and "before" (both excluded) that no history of this file handed
// out, and when the gap was recorded (ms since the epoch). One row per process start; rows wholly below the purge horizon are dropped.
var gapTables = []string{
	`CREATE TABLE IF NOT EXISTS "__melon_gaps" ("after" INTEGER NOT NULL, "before" INTEGER NOT NULL, "at" INTEGER NOT NULL,
		PRIMARY KEY ("after", "before"))`,
}

// InGap reports whether v lies in a recorded gap.
func (r *readTx) InGap(v int64) (bool, error) {
	var in bool
	if err := r.tx.QueryRowContext(r.ctx, `SELECT EXISTS (SELECT 1 FROM "__melon_gaps" WHERE "after" < ?1 AND "before" > ?1)`, v).Scan(&in); err != nil {
		return false, fmt.Errorf("sqlite: gaps: %w", err)
	}
	return in, nil
}

// MarkGap records the gap between after and this transaction's version, and drops
// the gaps the purge horizon has passed.
func (w *writeTx) MarkGap(after int64) error {
	v, err := w.Version()
	if err != nil {
		return err
	}
	if v <= after+1 {
		return nil // nothing in between
	}
	if _, err := w.tx.ExecContext(w.ctx, `INSERT OR IGNORE INTO "__melon_gaps" ("after", "before", "at") VALUES (?, ?, ?)`,
		after, v, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("sqlite: mark gap: %w", err)
	}
	if _, err := w.tx.ExecContext(w.ctx, `DELETE FROM "__melon_gaps" WHERE "before" <= (SELECT CAST("value" AS INTEGER) FROM "__melon_meta" WHERE "key" = 'purged_through')`); err != nil {
		return fmt.Errorf("sqlite: mark gap: %w", err)
	}
	return nil
}
