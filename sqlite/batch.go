package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/melonsync/melonsync/internal/sqlitedb"
	"github.com/melonsync/melonsync/server"
)

// Group commit (DESIGN.md): the store's one writer runs the writes that queued up
// while it was busy in one transaction, each in a savepoint of its own, and commits
// them with one fsync. A write whose fn fails rolls back to its savepoint only and
// is answered at once; the others are answered after the COMMIT. Each keeps its own
// version, handed out in the order the writes run, so versions still commit in order.

// Default bounds of one batch (Store.MaxBatch, Store.BatchTime): it takes no further
// write once it holds maxBatch of them or maxBatchTime after its first write ran. A
// write never waits for others to arrive: a batch is what queued up meanwhile.
const (
	maxBatch     = 64
	maxBatchTime = 5 * time.Millisecond
)

// errClosed answers writes to a closed store.
var errClosed = errors.New("sqlite: the store is closed")

// writeReq is one Write waiting for the writer.
type writeReq struct {
	ctx      context.Context
	fn       func(server.WriteTx) error
	err      error
	panicked any // what fn panicked with, panicked again in Write's goroutine
	done     chan struct{}
}

func (r *writeReq) answer(err error) {
	r.err = err
	close(r.done)
}

// Write runs fn in a savepoint of the writer's current transaction (group commit),
// and returns once that transaction committed (nil) or fn failed (its error, nothing
// of fn written). A failed COMMIT runs each of the batch's writes again alone, so that
// the one the database refuses (a deferred foreign key) is told from the others.
// A full disk (or file) wraps melonsync.ErrStorageFull (space.go).
// fn's statements are not interrupted when ctx ends: an interrupted statement can roll
// back the whole transaction, other writes' included.
func (s *Store) Write(ctx context.Context, fn func(server.WriteTx) error) error {
	r := &writeReq{ctx: ctx, fn: fn, done: make(chan struct{})}
	select {
	case s.writes <- r:
	case <-ctx.Done():
		return fmt.Errorf("sqlite: begin write: %w", ctx.Err())
	case <-s.quit:
		return errClosed
	}
	<-r.done
	if r.panicked != nil {
		panic(r.panicked)
	}
	return classify(r.err)
}

// writeLoop is the writer: it runs the writes, a batch at a time, until Close.
func (s *Store) writeLoop() {
	defer close(s.loopDone)
	for {
		select {
		case r := <-s.writes:
			s.batch(r)
		case <-s.quit:
			return
		}
	}
}

// batch runs first and the writes queued behind it in one transaction and answers
// them all.
func (s *Store) batch(first *writeReq) {
	members, retry, err := s.transaction(first, true)
	if !retry {
		for _, r := range members {
			r.answer(err)
		}
		return
	}
	// The failure may be one write's (the database refused its data at commit) or
	// the batch's: each runs again on its own, in the order they ran.
	for _, r := range members {
		again, _, err := s.transaction(r, false)
		for _, r := range again {
			r.answer(err)
		}
	}
}

// transaction runs first — and, when more is set, the writes that queue behind it,
// within the batch's bounds — in one write transaction, each in a savepoint, and
// commits it. Writes whose fn failed are answered at once; the others are returned,
// to be answered with the returned error (nil: committed) — unless retry says that
// the failure may not be theirs (a failed COMMIT of several writes, a transaction
// that another write's statement ended), and each should run again alone.
func (s *Store) transaction(first *writeReq, more bool) (members []*writeReq, retry bool, err error) {
	tx, err := s.writer.BeginTx(context.Background(), nil)
	if err != nil {
		first.answer(fmt.Errorf("sqlite: begin write: %w", err))
		return nil, false, nil
	}
	defer tx.Rollback()
	var stmts sqlitedb.Stmts // shared by the batch: each statement is prepared once
	defer stmts.Close()
	limit, window := s.MaxBatch, s.BatchTime
	if limit <= 0 {
		limit = maxBatch
	}
	if window <= 0 {
		window = maxBatchTime
	}
	var start time.Time
	r := first
	for {
		ok, err := s.member(tx, &stmts, r)
		if err != nil {
			// The transaction itself is gone (SQLite rolled it back): nothing of
			// the batch is written.
			return members, len(members) > 0, err
		}
		if ok {
			members = append(members, r)
		}
		if start.IsZero() {
			start = time.Now() // the first write's own time does not count
		}
		if !more || len(members) >= limit || time.Since(start) >= window {
			break
		}
		select {
		case r = <-s.writes:
			continue
		default:
		}
		break
	}
	if len(members) == 0 {
		return nil, false, nil
	}
	stmts.Close()
	if err := tx.Commit(); err != nil {
		if isRefusal(err) {
			err = refusedAtCommit(err)
		} else {
			err = fmt.Errorf("sqlite: commit: %w", err)
		}
		return members, len(members) > 1, err
	}
	return members, false, nil
}

// savepoint is the name of a write's savepoint in the batch's transaction.
const savepoint = `"__melon_write"`

// member runs r's fn in a savepoint of tx. It reports ok when fn succeeded (r then
// waits for the commit); when fn failed it rolls back to the savepoint and answers r.
// An error means that tx is no longer open (SQLite rolled it back on an I/O error
// or a full disk); r is answered then too.
func (s *Store) member(tx *sql.Tx, stmts *sqlitedb.Stmts, r *writeReq) (ok bool, gone error) {
	if err := r.ctx.Err(); err != nil {
		r.answer(fmt.Errorf("sqlite: begin write: %w", err))
		return false, nil
	}
	bg := context.Background()
	if _, err := tx.ExecContext(bg, `SAVEPOINT `+savepoint); err != nil {
		err = fmt.Errorf("sqlite: begin write: %w", err)
		r.answer(err)
		return false, err
	}
	wt := &writeTx{readTx: readTx{ctx: context.WithoutCancel(r.ctx), tx: tx}, store: s, now: s.Now, stmts: stmts}
	err := run(wt, r)
	if err == nil && wt.version != 0 {
		// The marker that tells this write's rows to the triggers (triggers.go)
		// is never committed, nor seen by the next write of the batch.
		if _, err = tx.ExecContext(bg, `DELETE FROM "__melon_meta" WHERE "key" = 'writing'`); err != nil {
			err = fmt.Errorf("sqlite: commit: %w", err)
		}
	}
	if err == nil {
		if _, err := tx.ExecContext(bg, `RELEASE `+savepoint); err != nil {
			err = fmt.Errorf("sqlite: write: the transaction was rolled back: %w", err)
			r.answer(err)
			return false, err
		}
		return true, nil
	}
	_, gone = tx.ExecContext(bg, `ROLLBACK TO `+savepoint)
	if gone == nil {
		_, gone = tx.ExecContext(bg, `RELEASE `+savepoint)
	}
	r.answer(err)
	if gone != nil {
		return false, fmt.Errorf("sqlite: write: the transaction was rolled back: %w", gone)
	}
	return false, nil
}

// run calls r's fn, turning a panic into an error here (and a panic again in r's
// Write).
func run(wt *writeTx, r *writeReq) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.panicked = p
			err = fmt.Errorf("sqlite: write panicked: %v", p)
		}
	}()
	return r.fn(wt)
}
