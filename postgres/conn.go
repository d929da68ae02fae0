package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/melonsync/melonsync"
)

// querier is what the read and write transactions send their statements through:
// a pgx.Tx for reads, a lazyTx for writes.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// lazyTx is a write transaction on a pooled connection that sends its BEGIN with its
// first statement, saving a round trip on every push: a push's first statement reads
// the clock (beginWithClock), others get the BEGIN just before them. The connection
// is checked out until release.
type lazyTx struct {
	s        *Store
	pool     *pgxpool.Pool
	conn     *pgxpool.Conn
	beginSQL string
	begun    bool
}

// acquireLazy checks a connection out for a write transaction; with the BEGIN, it
// takes at most the store's acquire timeout.
func (s *Store) acquireLazy(ctx context.Context, beginSQL string) (*lazyTx, error) {
	l := &lazyTx{s: s, pool: s.pool, beginSQL: beginSQL}
	if _, err := l.begin(ctx, ""); err != nil {
		return nil, err
	}
	return l, nil
}

// begin gets a connection when it has none and, with extra statements ("" for none),
// sends BEGIN when it has not been sent (firstTry). extra's results follow the
// BEGIN's.
func (l *lazyTx) begin(ctx context.Context, extra string) ([]*pgconn.Result, error) {
	if l.conn != nil && (l.begun || extra == "") {
		return nil, nil
	}
	var results []*pgconn.Result
	err := l.firstTry(ctx, func(bctx context.Context) error {
		if extra == "" {
			return nil // BEGIN goes with the first statement
		}
		r, err := l.conn.Conn().PgConn().Exec(bctx, l.beginSQL+"; "+extra).ReadAll()
		if err == nil {
			l.begun, results = true, r[1:]
		}
		return err
	})
	if err != nil {
		return nil, wrap("begin", err)
	}
	return results, nil
}

// firstTry runs send, the transaction's first message, on its connection (taking
// one from the pool when it has none). Nothing of the transaction is done until
// then, so when send fails for the connection (one the database dropped while idle)
// it is tried again on another: at most three times, within the acquire timeout.
func (l *lazyTx) firstTry(ctx context.Context, send func(bctx context.Context) error) error {
	bctx := ctx
	if l.s.acquire > 0 {
		var cancel context.CancelFunc
		bctx, cancel = context.WithTimeout(ctx, l.s.acquire)
		defer cancel()
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if l.conn == nil {
			if l.conn, err = l.pool.Acquire(bctx); err != nil {
				if bctx.Err() != nil || !isUnavailable(err) {
					break
				}
				continue
			}
		}
		if err = send(bctx); err == nil || !isUnavailable(err) || ctx.Err() != nil {
			return err
		}
		l.begun = true // whatever the message began, roll it back; a broken connection is dropped
		l.release(ctx)
		l.begun = false
		if bctx.Err() != nil {
			break
		}
	}
	if bctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("postgres: begin: %w: no connection to the database within %v: %w", melonsync.ErrUnavailable, l.s.acquire, err)
	}
	return err
}

// ensure sends BEGIN alone when no statement has carried it yet.
func (l *lazyTx) ensure(ctx context.Context) error {
	if l.begun {
		return nil
	}
	_, err := l.begin(ctx, "SELECT 1")
	return err
}

// beginWithClock sends BEGIN with the clock's query, in one round trip, and returns
// the clock (the transaction's first statement reads it).
func (l *lazyTx) beginWithClock(ctx context.Context) (int64, error) {
	results, err := l.begin(ctx, clockSQL)
	if err != nil {
		return 0, err
	}
	if len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != 1 {
		return 0, errors.New("postgres: no clock in the answer")
	}
	return strconv.ParseInt(string(results[0].Rows[0][0]), 10, 64)
}

// sendFirst sends the batch build makes, starting the transaction with it when it
// has not begun (BEGIN goes first in the batch, and a dead connection is replaced:
// firstTry; build must then start afresh).
func (l *lazyTx) sendFirst(ctx context.Context, build func(b *pgx.Batch)) error {
	if l.begun {
		b := &pgx.Batch{}
		build(b)
		return l.conn.SendBatch(ctx, b).Close()
	}
	return l.firstTry(ctx, func(context.Context) error {
		b := &pgx.Batch{}
		b.Queue(l.beginSQL)
		build(b)
		l.begun = true // from here on, release rolls back
		return l.conn.SendBatch(ctx, b).Close()
	})
}

func (l *lazyTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := l.ensure(ctx); err != nil {
		return nil, err
	}
	return l.conn.Query(ctx, sql, args...)
}

func (l *lazyTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := l.ensure(ctx); err != nil {
		return errRow{err}
	}
	return l.conn.QueryRow(ctx, sql, args...)
}

func (l *lazyTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := l.ensure(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return l.conn.Exec(ctx, sql, args...)
}

func (l *lazyTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := l.ensure(ctx); err != nil {
		return errBatch{err}
	}
	return l.conn.SendBatch(ctx, b)
}

// commit commits what was begun. A transaction the database had already aborted
// answers ROLLBACK to COMMIT: that is an error.
func (l *lazyTx) commit(ctx context.Context) error {
	if !l.begun {
		return nil
	}
	tag, err := l.conn.Exec(ctx, "COMMIT")
	l.begun = false
	if err != nil {
		return err
	}
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// release rolls back what was begun and not committed, and returns the connection
// to the pool (which drops it when it is broken or still in a transaction).
func (l *lazyTx) release(ctx context.Context) {
	if l.conn == nil {
		return
	}
	if l.begun {
		l.conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
	}
	l.conn.Release()
	l.conn = nil
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRow(b) }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }
