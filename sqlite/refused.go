package sqlite

import (
	"errors"
	"regexp"

	sqlite3 "modernc.org/sqlite"

	"github.com/melonsync/melonsync"
)

// sqliteConstraint is SQLITE_CONSTRAINT, the primary result code of every constraint
// failure (UNIQUE, CHECK, NOT NULL, FOREIGN KEY, a trigger's RAISE(ABORT, …)).
const sqliteConstraint = 19

// isRefusal tells an error that is about the data written: a constraint the app's
// own SQL added refused it. A failed statement is undone by SQLite on its own; the
// transaction goes on.
func isRefusal(err error) bool {
	var se *sqlite3.Error
	return errors.As(err, &se) && se.Code()&0xff == sqliteConstraint
}

var codeSuffix = regexp.MustCompile(`\s*\(\d+\)$`)

// refusalReason is SQLite's message for a refusal ("UNIQUE constraint failed:
// tasks.name"), without the driver's prefix and code.
func refusalReason(err error) string {
	var se *sqlite3.Error
	if !errors.As(err, &se) {
		return err.Error()
	}
	msg := codeSuffix.ReplaceAllString(se.Error(), "")
	if m := regexp.MustCompile(`^constraint failed: `).FindStringIndex(msg); m != nil {
		msg = msg[m[1]:]
	}
	return msg
}

// refusedAtCommit is the answer for a refusal found only at commit (a deferred foreign
// key): SQLite does not say which record broke it.
func refusedAtCommit(err error) error {
	return melonsync.Errorf(melonsync.EInvalid, "the database refused the push: %s", refusalReason(err))
}
