package sqlite

import (
	"time"

	"github.com/melonsync/melonsync/schema"
)

// Plain-SQL writes. The app's own code may insert, update and delete the rows of a
// synced table with plain SQL on the same file (setting __owner on insert, and only
// the schema's columns otherwise); these triggers give each such change a version,
// as PostgreSQL's do, so that it reaches pulls:
//
//   - A version is max(clock + 1, now in ms), taken from and written back to the
//     clock in __melon_meta. SQLite has one writer at a time, so versions are handed
//     out in commit order: a snapshot that sees a version sees every smaller one.
//     (Each row of a plain-SQL transaction takes its own version; they are all
//     committed together.)
//   - melonsync's own writes are told apart by the transaction's version, kept in the
//     __melon_meta row 'writing' for the length of the write transaction and never
//     committed: rows that carry it are left alone, and writes that are side effects
//     inside a push (the app's triggers, cascades) take it.
//   - An insert of an id that is a tombstone replaces the tombstone; a delete leaves a
//     tombstone (a row with __deleted = 1) behind; an id cannot change.
//   - An update that sets __version itself is the stamping update (or melonsync's):
//     not stamped again, so the triggers never call themselves.

// clockNext takes the next version, unless the transaction is melonsync's.
const clockNext = `UPDATE "__melon_meta" SET "value" = CAST(max(CAST("value" AS INTEGER) + 1,
		CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)) AS TEXT)
	WHERE "key" = 'clock' AND NOT EXISTS (SELECT 1 FROM "__melon_meta" WHERE "key" = 'writing');`

// clockNow is the version clockNext took (or melonsync's transaction's).
const clockNow = `(SELECT CAST("value" AS INTEGER) FROM "__melon_meta" WHERE "key" = 'clock')`

// writing is melonsync's transaction's version (NULL outside one).
const writing = `(SELECT CAST("value" AS INTEGER) FROM "__melon_meta" WHERE "key" = 'writing')`

// keptOnDelete lists the columns a tombstone keeps: a group table's group column and
// a members table's user column (access rules: pulls tell the members it is gone).
func keptOnDelete(t *schema.Table) []string {
	var out []string
	if by := t.Rule.By; by != "" && by != "id" && t.Column(by) != nil {
		out = append(out, by)
	}
	if g := t.Rule.MembersOf; g != nil && t.Column(g.UserCol) != nil && g.UserCol != t.Rule.By {
		out = append(out, g.UserCol)
	}
	return out
}

// triggers returns the statements that create the plain-SQL triggers of t.
func triggers(t *schema.Table) []string {
	table := t.Name
	q := quote(table)
	var keptCols, keptVals string
	for _, c := range keptOnDelete(t) {
		keptCols += ", " + quote(c)
		keptVals += ", OLD." + quote(c)
	}
	name := func(what string) string { return quote("__melon_" + table + "_" + what) }
	return []string{
		`CREATE TRIGGER IF NOT EXISTS ` + name("before_insert") + ` BEFORE INSERT ON ` + q + `
		WHEN NEW."__version" IS NOT ` + writing + ` BEGIN
			DELETE FROM ` + q + ` WHERE "id" = NEW."id" AND "__deleted" = 1;
		END`,
		`CREATE TRIGGER IF NOT EXISTS ` + name("insert") + ` AFTER INSERT ON ` + q + `
		WHEN NEW."__deleted" = 0 AND NEW."__version" IS NOT ` + writing + ` BEGIN
			` + clockNext + `
			UPDATE ` + q + ` SET "__version" = ` + clockNow + `, "__created_version" = ` + clockNow + `,
				"__created_device" = '', "__device" = '' WHERE "id" = NEW."id";
		END`,
		`CREATE TRIGGER IF NOT EXISTS ` + name("update") + ` AFTER UPDATE ON ` + q + `
		WHEN NEW."__deleted" = 0 AND NEW."__version" IS OLD."__version" AND NEW."__version" IS NOT ` + writing + ` BEGIN
			` + clockNext + `
			UPDATE ` + q + ` SET "__version" = ` + clockNow + `, "__created_version" = OLD."__created_version",
				"__created_device" = OLD."__created_device", "__device" = '' WHERE "id" = NEW."id";
		END`,
		`CREATE TRIGGER IF NOT EXISTS ` + name("id") + ` BEFORE UPDATE OF "id" ON ` + q + `
		WHEN NEW."id" IS NOT OLD."id" BEGIN
			SELECT RAISE(ABORT, 'melonsync: the id of a synced record cannot change (table ` + table + `)');
		END`,
		`CREATE TRIGGER IF NOT EXISTS ` + name("delete") + ` AFTER DELETE ON ` + q + `
		WHEN OLD."__deleted" = 0 BEGIN
			` + clockNext + `
			INSERT INTO ` + q + ` ("id", "__owner", "__version", "__created_version", "__created_device", "__device", "__deleted"` + keptCols + `)
				VALUES (OLD."id", OLD."__owner", ` + clockNow + `, OLD."__created_version", OLD."__created_device", '', 1` + keptVals + `);
		END`,
	}
}

func nowMillis() int64 { return time.Now().UnixMilli() }
