package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"strings"

	"github.com/melonsync/melonsync/schema"
)

// Access bookkeeping for plain-SQL writes (server/ACCESS.md): melonsync's own writes
// keep a group table's tombstones' group and user and log its moves in Go (Apply);
// these triggers do the same for the app's own SQL, beside the plain-SQL triggers of
// triggers.go, without depending on the order SQLite fires them in:
//
//   - BEFORE DELETE stashes the row's group and user in __melon_gone; when the
//     tombstone row is inserted (triggers.go), they are copied into it.
//   - AFTER UPDATE of the group (or user) column logs a move in __melon_moves with
//     the row's version if it was stamped already, else 0; the stamping update then
//     gives pending moves of the row its version.
//
// Their names carry a hash of the table's rule, so a changed rule replaces them.

// accessTriggers returns the statements that create t's access triggers (none for
// tables without a group column) and their common name prefix.
func accessTriggers(t *schema.Table) (prefix string, stmts []string) {
	prefix = "__melon_" + t.Name + "_acc_"
	r := t.Rule
	if r.Kind != schema.GroupRule || r.By == "id" {
		return prefix, nil
	}
	user := ""
	if g := r.MembersOf; g != nil {
		user = g.UserCol
	}
	h := sha256.Sum256([]byte(r.By + "\x00" + user))
	name := func(what string) string { return quote(prefix + hex.EncodeToString(h[:4]) + "_" + what) }
	q := quote(t.Name)
	tbl := quoteLiteral(t.Name)
	grp := func(row string) string { return `coalesce(` + row + `.` + quote(r.By) + `, '')` }
	usr := func(row string) string {
		if user == "" {
			return `''`
		}
		return `coalesce(` + row + `.` + quote(user) + `, '')`
	}
	changed := `OLD.` + quote(r.By) + ` IS NOT NEW.` + quote(r.By)
	cols := quote(r.By)
	sets := quote(r.By) + ` = (SELECT "grp" FROM "__melon_gone" WHERE "tbl" = ` + tbl + ` AND "id" = NEW."id")`
	if user != "" {
		changed += ` OR OLD.` + quote(user) + ` IS NOT NEW.` + quote(user)
		cols += `, ` + quote(user)
		sets += `, ` + quote(user) + ` = (SELECT "usr" FROM "__melon_gone" WHERE "tbl" = ` + tbl + ` AND "id" = NEW."id")`
	}
	cur := `(SELECT "__version" FROM ` + q + ` WHERE "id" = NEW."id")`
	stmts = []string{
		`CREATE TRIGGER IF NOT EXISTS ` + name("stash") + ` BEFORE DELETE ON ` + q + `
		WHEN OLD."__deleted" = 0 BEGIN
			INSERT OR REPLACE INTO "__melon_gone" ("tbl", "id", "grp", "usr") VALUES (` + tbl + `, OLD."id", ` + grp("OLD") + `, ` + usr("OLD") + `);
		END`,
		`CREATE TRIGGER IF NOT EXISTS ` + name("tombstone") + ` AFTER INSERT ON ` + q + `
		WHEN NEW."__deleted" = 1 AND EXISTS (SELECT 1 FROM "__melon_gone" WHERE "tbl" = ` + tbl + ` AND "id" = NEW."id") BEGIN
			UPDATE ` + q + ` SET ` + sets + ` WHERE "id" = NEW."id";
			DELETE FROM "__melon_gone" WHERE "tbl" = ` + tbl + ` AND "id" = NEW."id";
		END`,
		`CREATE TRIGGER IF NOT EXISTS ` + name("move") + ` AFTER UPDATE OF ` + cols + ` ON ` + q + `
		WHEN OLD."__deleted" = 0 AND NEW."__deleted" = 0 AND (` + changed + `) AND NEW."__version" IS NOT ` + writing + ` BEGIN
			INSERT INTO "__melon_moves" ("tbl", "id", "version", "from_grp", "to_grp", "from_usr", "to_usr")
			VALUES (` + tbl + `, NEW."id", CASE WHEN ` + cur + ` IS NOT OLD."__version" THEN ` + cur + ` ELSE 0 END,
				` + grp("OLD") + `, ` + grp("NEW") + `, ` + usr("OLD") + `, ` + usr("NEW") + `)
			ON CONFLICT ("tbl", "id", "version") DO UPDATE SET "to_grp" = excluded."to_grp", "to_usr" = excluded."to_usr";
		END`,
		`CREATE TRIGGER IF NOT EXISTS ` + name("stamp_move") + ` AFTER UPDATE OF "__version" ON ` + q + `
		WHEN NEW."__version" IS NOT OLD."__version" BEGIN
			UPDATE "__melon_moves" SET "version" = NEW."__version" WHERE "tbl" = ` + tbl + ` AND "id" = NEW."id" AND "version" = 0;
		END`,
	}
	return prefix, stmts
}

// prepareAccessTriggers drops t's access triggers of another rule and creates its own.
func prepareAccessTriggers(ctx context.Context, tx *sql.Tx, t *schema.Table) error {
	prefix, stmts := accessTriggers(t)
	want := map[string]bool{}
	for _, s := range stmts {
		// "CREATE TRIGGER IF NOT EXISTS "name" …"
		rest := strings.TrimPrefix(s, `CREATE TRIGGER IF NOT EXISTS "`)
		want[rest[:strings.Index(rest, `"`)]] = true
	}
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? AND substr(name, 1, ?) = ?`, t.Name, len(prefix), prefix)
	if err != nil {
		return err
	}
	var drop []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		if !want[n] {
			drop = append(drop, n)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, n := range drop {
		if _, err := tx.ExecContext(ctx, `DROP TRIGGER `+quote(n)); err != nil {
			return err
		}
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func quoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }
