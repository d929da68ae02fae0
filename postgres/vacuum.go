package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Vacuum does for the store's own tables (the synced tables and __melon_*) what
// autovacuum would: VACUUM (ANALYZE) a table whose dead rows passed autovacuum's
// default threshold (50 + 20% of its live rows), ANALYZE one whose changes since the
// last analyze passed 50 + 10%. Without it, on a database where autovacuum is off,
// every update and delete leaves a dead row behind: the bookkeeping tables (commits,
// tombstones, sync log, devices) and the synced tables grow without bound and their
// scans slow down, and plans made on empty tables are never revised.
//
// It does nothing for tables autovacuum looks after (autovacuum on, and not disabled
// for the table). Of several processes on one schema one vacuums at a time (an
// advisory lock; the others skip). It returns the tables it vacuumed or analyzed.
// The server calls it every few minutes (cmd/melonsync serve).
func (s *Store) Vacuum(ctx context.Context) ([]string, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, wrap("vacuum", err)
	}
	defer conn.Release()
	key := "melonsync:vacuum:" + s.instance
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, key).Scan(&locked); err != nil || !locked {
		return nil, wrap("vacuum", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key)

	rows, err := conn.Query(ctx, `
		SELECT st.relname, st.n_dead_tup > 50 + 0.2 * st.n_live_tup
		FROM pg_stat_user_tables st JOIN pg_class c ON c.oid = st.relid
		WHERE st.schemaname = $1
		  AND (current_setting('autovacuum') = 'off' OR 'autovacuum_enabled=false' = ANY (coalesce(c.reloptions, '{}')))
		  AND (st.n_dead_tup > 50 + 0.2 * st.n_live_tup OR st.n_mod_since_analyze > 50 + 0.1 * st.n_live_tup)
		ORDER BY st.relname`, s.schema)
	if err != nil {
		return nil, wrap("vacuum", err)
	}
	type job struct {
		table  string
		vacuum bool
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (job, error) {
		var j job
		return j, r.Scan(&j.table, &j.vacuum)
	})
	if err != nil {
		return nil, wrap("vacuum", err)
	}
	var done []string
	for _, j := range jobs {
		stmt := "ANALYZE "
		if j.vacuum {
			stmt = "VACUUM (ANALYZE) "
		}
		// VACUUM cannot run in a transaction: a plain statement on this connection.
		if _, err := conn.Exec(ctx, stmt+pgx.Identifier{s.schema, j.table}.Sanitize(), pgx.QueryExecModeSimpleProtocol); err != nil {
			return done, wrap("vacuum "+j.table, err)
		}
		done = append(done, j.table)
	}
	return done, nil
}
