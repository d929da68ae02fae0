package postgres

import "time"

// InGap reports whether v lies in a gap of the store's history (server/history.go).
func (r *readTx) InGap(v int64) (bool, error) {
	var in bool
	if err := r.tx.QueryRow(r.ctx, `SELECT EXISTS (SELECT 1 FROM __melon_gaps WHERE after < $1 AND before > $1)`, v).Scan(&in); err != nil {
		return false, wrap("gaps", err)
	}
	return in, nil
}

// MarkGap records the gap between the clock and this transaction's version, and
// drops the gaps the purge horizon has passed. Called before Version, it takes the
// clock lock first and reads the clock under it, so that the gap holds no version
// another process committed meanwhile (after, read earlier, can only be lower).
func (w *writeTx) MarkGap(after int64) error {
	if w.version == 0 {
		if _, err := w.tx.Exec(w.ctx, `SELECT pg_advisory_xact_lock(hashtextextended('melonsync:clock:' || $1, 0))`, w.s.instance); err != nil {
			return wrap("mark gap", err)
		}
		var clock int64
		if err := w.tx.QueryRow(w.ctx, `SELECT max(version) FROM __melon_commits`).Scan(&clock); err != nil {
			return wrap("mark gap", err)
		}
		after = max(after, clock)
	}
	v, err := w.Version()
	if err != nil {
		return err
	}
	if v <= after+1 {
		return nil // nothing in between
	}
	if _, err := w.tx.Exec(w.ctx, `INSERT INTO __melon_gaps (after, before, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		after, v, time.Now().UnixMilli()); err != nil {
		return wrap("mark gap", err)
	}
	if _, err := w.tx.Exec(w.ctx, `DELETE FROM __melon_gaps WHERE before <= (SELECT value::bigint FROM __melon_meta WHERE key = 'purged_through')`); err != nil {
		return wrap("mark gap", err)
	}
	return nil
}
