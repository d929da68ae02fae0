package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// The clock is the last value drawn from __melon_version_seq; writers draw versions
// behind the gate, pulls read the clock behind it (DESIGN.md, "Versions: the gate").

// clockSQL reads the clock: the highest version handed out so far.
const clockSQL = `SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM __melon_version_seq`

// gateWait bounds how long a pull waits at the gate for the writes in flight (a
// very large push holds it while it writes). Past it the pull answers 503.
var gateWait = 5 * time.Second

// takeSnapshot fixes the snapshot of tx, a REPEATABLE READ transaction that has run
// nothing yet, behind the gate, and returns its clock. In one round trip, and in
// the simple protocol (each statement is analysed only once those before it ran; a
// prepared SELECT would take the snapshot when it is parsed): set the statement
// timeout, then, in a savepoint, take the gate in SHARE mode (waiting for the writers
// in flight, holding new ones back), read the clock with the transaction's first
// query, which takes the snapshot, and release the gate by rolling back to the
// savepoint. The snapshot then sees every version up to the clock, and none above.
// SET, SAVEPOINT and LOCK take no snapshot.
func takeSnapshot(ctx context.Context, tx pgx.Tx, statementTimeout time.Duration) (int64, error) {
	sql := `SET LOCAL statement_timeout = ` + strconv.FormatInt(statementTimeout.Milliseconds(), 10) + `;
		SAVEPOINT __melon_gate;
		SET LOCAL lock_timeout = ` + strconv.FormatInt(max(gateWait.Milliseconds(), 1), 10) + `;
		LOCK TABLE __melon_gate IN SHARE MODE;
		` + clockSQL + `;
		ROLLBACK TO SAVEPOINT __melon_gate`
	results, err := tx.Conn().PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		return 0, err
	}
	for _, r := range results {
		if len(r.Rows) == 1 && len(r.Rows[0]) == 1 {
			return strconv.ParseInt(string(r.Rows[0][0]), 10, 64)
		}
	}
	return 0, fmt.Errorf("no clock in the answer")
}

// closeGate takes the gate against every writer until tx ends (SHARE ROW EXCLUSIVE:
// it waits for the writers in flight, and no writer draws a version meanwhile, nor
// does another closeGate), and returns the clock read under it.
func closeGate(ctx context.Context, tx querier) (int64, error) {
	if _, err := tx.Exec(ctx, `LOCK TABLE __melon_gate IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return 0, err
	}
	var clock int64
	err := tx.QueryRow(ctx, clockSQL).Scan(&clock)
	return clock, err
}

// raiseClock moves the sequence up so that the next version is above floor; tx must
// hold the gate (closeGate).
func raiseClock(ctx context.Context, tx querier, clock, floor int64) error {
	if floor <= clock {
		return nil
	}
	_, err := tx.Exec(ctx, `SELECT setval('__melon_version_seq', $1)`, floor)
	return err
}

// clockLag is how far behind the wall clock (in ms) versions may fall before the
// store moves the sequence up to it: versions are then milliseconds since the epoch,
// bumped by one per commit when commits come faster than that.
const clockLag = 1000

// tickWait bounds how long a tick waits at the gate: while it waits, new writers
// wait behind it.
const tickWait = 50 * time.Millisecond

// noteClock starts a tick when the version a write just committed lags the wall
// clock by more than clockLag; at most one tick runs at a time. Only writes tick: the
// clock moves when something is written, so pulls with nothing new between them
// answer the same timestamp.
func (s *Store) noteClock(clock int64) {
	now := time.Now().UnixMilli()
	if clock >= now-clockLag || s.base.Err() != nil {
		return
	}
	if !s.ticking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.ticking.Store(false)
		ctx, cancel := context.WithTimeout(s.base, 5*time.Second)
		defer cancel()
		s.tick(ctx)
	}()
}

// tick moves the sequence up to the wall clock, behind the closed gate. It gives up
// (until the next noteClock) when the writers in flight do not let it in quickly.
func (s *Store) tick(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = `+strconv.FormatInt(tickWait.Milliseconds(), 10)); err != nil {
			return err
		}
		clock, err := closeGate(ctx, tx)
		if err != nil {
			return err
		}
		now := time.Now().UnixMilli()
		if clock >= now-clockLag {
			return nil
		}
		return raiseClock(ctx, tx, clock, now)
	})
}
