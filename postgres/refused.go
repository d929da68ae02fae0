package postgres

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// A push the database refuses for its data — a constraint the app's own SQL added (a
// foreign key, a unique index, a check) or a trigger of the app's that raises — must
// not answer 500 (the client would retry it forever). PostgreSQL aborts the whole
// transaction and names the constraint but not the record, so the store finds the
// records by running the push again in "locate" mode: constraints checked at once
// (SET CONSTRAINTS ALL IMMEDIATE, so deferred ones fail where they are broken), and
// each table's writes under a savepoint, then each record under its own when the
// table's writes fail. The records found are returned as a server.RefusedError; the
// service refuses them one by one and applies the rest. Pushes that break nothing pay
// nothing for this.

// errLocate aborts a Write attempt whose statement or commit the database refused
// for its data: Write runs it again in locate mode.
var errLocate = errors.New("postgres: refused by a constraint; locating the records")

// isRefusal tells an error that is about the data written: an integrity constraint
// violation (class 23) or an exception raised by a trigger (P0001).
func isRefusal(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "23") || pgErr.Code == "P0001")
}

// refusalReason is what a caller may be told of a refusal: PostgreSQL's message (which
// names the constraint and table), without the DETAIL (which may show values of
// other users' rows).
func refusalReason(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return err.Error()
}

// applyLocating applies ops under a savepoint; when the database refuses them, it
// applies each op under its own savepoint and returns the refused ones.
func (w *writeTx) applyLocating(t *schema.Table, ops []server.Op) error {
	// The version (and the gate) first: what a savepoint takes, its rollback gives back.
	if _, err := w.Version(); err != nil {
		return err
	}
	if err := w.exec(`SAVEPOINT __melon_apply`); err != nil {
		return err
	}
	err := w.apply(t, ops)
	if err == nil || !isRefusal(err) {
		if err == nil {
			err = w.exec(`RELEASE SAVEPOINT __melon_apply`)
		}
		return err
	}
	if err := w.exec(`ROLLBACK TO SAVEPOINT __melon_apply`); err != nil {
		return err
	}
	reasons := map[string]string{}
	for _, op := range ops {
		if err := w.exec(`SAVEPOINT __melon_op`); err != nil {
			return err
		}
		err := w.apply(t, []server.Op{op})
		switch {
		case err == nil:
			err = w.exec(`RELEASE SAVEPOINT __melon_op`)
		case isRefusal(err):
			reasons[op.ID] = refusalReason(err)
			err = w.exec(`ROLLBACK TO SAVEPOINT __melon_op`)
		}
		if err != nil {
			return err
		}
	}
	if len(reasons) == 0 {
		// Refused as a whole, accepted one by one (a constraint across records).
		return melonsync.Errorf(melonsync.EInvalid, "the database refused the changes of %s together: %s", t.Name, refusalReason(err))
	}
	return &server.RefusedError{Table: t.Name, Reasons: reasons}
}

// refusedAtCommit is the answer for a refusal that locate mode could not pin on
// records (a deferred constraint broken by rows the push did not write).
func refusedAtCommit(err error) error {
	var pgErr *pgconn.PgError
	errors.As(err, &pgErr)
	e := melonsync.Errorf(melonsync.EInvalid, "the database refused the push: %s", refusalReason(err))
	if pgErr != nil && pgErr.TableName != "" {
		e.Details = map[string]any{"table": pgErr.TableName}
	}
	return e
}

func (w *writeTx) exec(sql string) error {
	if _, err := w.tx.Exec(w.ctx, sql); err != nil {
		return wrap("apply", err)
	}
	return nil
}
