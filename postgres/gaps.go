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

// MarkGap records the gap between after and this transaction's version, and drops
// the gaps the purge horizon has passed. (A version another process committed
// between the clock read as after and this one's lies in the gap too: a device
// holding it gets one needless replacement, never a wrong incremental answer.)
func (w *writeTx) MarkGap(after int64) error {
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
