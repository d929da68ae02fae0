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
// drops the gaps the purge horizon has passed. Called before Version, it closes the
// gate (clock.go) and reads the clock behind it, so that the gap holds no version of
// another writer (after, read earlier, can only be lower), and moves the sequence up
// to the wall clock, so that this history's versions lie above those of any history
// it replaces (a restored backup's lost writes).
func (w *writeTx) MarkGap(after int64) error {
	if w.version == 0 {
		clock, err := closeGate(w.ctx, w.tx)
		if err != nil {
			return wrap("mark gap", err)
		}
		if err := raiseClock(w.ctx, w.tx, clock, time.Now().UnixMilli()-1); err != nil {
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
