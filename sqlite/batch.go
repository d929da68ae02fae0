package sqlite

import (
	"cmp"
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
// them with one fsync. A write whose fn fails rolls back to its savepoint only; every
// write is answered after the COMMIT (a failure may rest on an earlier write of the
// batch). Each keeps its own version, handed out in the order the writes run, so
// versions still commit in order.

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
// and returns once that transaction committed: nil, or fn's error when it failed
// (nothing of fn written). A failed COMMIT runs each of the batch's writes again alone, so that
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
// them all (a write's own error first, else the transaction's) once it committed: also those whose fn failed, since a failure may rest
// on an earlier write of the batch (a conflict with it), which no one may hear of
// before it is durable.
func (s *Store) batch(first *writeReq) {
	members, err := s.transaction(first, true)
	if err == nil || len(members) == 1 {
		for _, r := range members {
			r.answer(cmp.Or(r.err, err))
		}
		return
	}
	// The failure may be one write's (the database refused its data at commit) or
	// the batch's: each runs again on its own, in the order they ran.
	for _, r := range members {
		again, err := s.transaction(r, false)
		for _, r := range again {
			r.answer(cmp.Or(r.err, err))
		}
	}
}

// transaction runs first — and, when more is set, the writes that queue behind it,
// within the batch's bounds — in one write transaction, each in a savepoint, and
// commits it. It returns the writes it ran, each with the error of its fn in err,
// and the error of the transaction itself: a failed COMMIT, or a transaction that
// SQLite rolled back. Writes whose context ended before they ran are answered.
func (s *Store) transaction(first *writeReq, more bool) ([]*writeReq, error) {
	tx, err := s.writer.BeginTx(context.Background(), nil)
	if err != nil {
		first.answer(fmt.Errorf("sqlite: begin write: %w", err))
		return nil, nil
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
	var members []*writeReq
	var start time.Time
	wrote := false
	for r := first; ; {
		if err := r.ctx.Err(); err != nil {
			r.answer(fmt.Errorf("sqlite: begin write: %w", err))
		} else {
			members = append(members, r)
			if err := s.member(tx, &stmts, r); err != nil {
				// The transaction itself is gone (SQLite rolled it back):
				// nothing of the batch is written.
				return members, err
			}
			wrote = wrote || r.err == nil
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
	stmts.Close()
	if !wrote {
		return members, nil // the deferred Rollback ends it
	}
	if err := tx.Commit(); err != nil {
		if isRefusal(err) {
			return members, refusedAtCommit(err)
		}
		return members, fmt.Errorf("sqlite: commit: %w", err)
	}
	return members, nil
}

// savepoint is the name of a write's savepoint in the batch's transaction.
const savepoint = `"__melon_write"`

// member runs r's fn in a savepoint of tx and sets r.err to its error; when fn failed
// it rolls back to the savepoint. An error means that tx is no longer open (SQLite
// rolled it back on an I/O error or a full disk).
func (s *Store) member(tx *sql.Tx, stmts *sqlitedb.Stmts, r *writeReq) error {
	gone := func(err error) error {
		return fmt.Errorf("sqlite: write: the transaction was rolled back: %w", err)
	}
	r.err, r.panicked = nil, nil
	bg := context.Background()
	if _, err := tx.ExecContext(bg, `SAVEPOINT `+savepoint); err != nil {
		return gone(err)
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
	r.err = err
	if err == nil {
		if _, err := tx.ExecContext(bg, `RELEASE `+savepoint); err != nil {
			return gone(err)
		}
		return nil
	}
	if _, err := tx.ExecContext(bg, `ROLLBACK TO `+savepoint); err != nil {
		return gone(err)
	}
	if _, err := tx.ExecContext(bg, `RELEASE `+savepoint); err != nil {
		return gone(err)
	}
	return nil
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
