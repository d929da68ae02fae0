package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// Prepare creates the tables of sch that are missing, adds missing columns and
// indexes, and puts melonsync's triggers on every synced table. It first checks what
// the store holds against the schema (evolve.go): a column whose type changed, or a
// table or column dropped from the schema that holds data, is refused with a
// server.EvolveError unless SetSchemaChanges allows converting or dropping it. It
// changes nothing else, and does no DDL at all when everything is in place (so
// starting another process does not block traffic). Concurrent Prepares are
// serialized by an advisory lock.
func (s *Store) Prepare(ctx context.Context, sch *schema.Schema) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('melonsync:migrate:' || $1, 0))`, s.schema); err != nil {
			return err
		}
		plan, err := s.planSchema(ctx, tx, sch)
		if err != nil {
			return err
		}
		if err := s.dropAndConvert(ctx, tx, plan, true); err != nil {
			return err
		}
		for _, t := range sch.Tables {
			if err := s.prepareTable(ctx, tx, t); err != nil {
				return fmt.Errorf("table %s: %w", t.Name, err)
			}
		}
		if err := s.dropAndConvert(ctx, tx, plan, false); err != nil {
			return err
		}
		return s.noteSchemaVersion(ctx, tx, sch.Version)
	})
	var ee *server.EvolveError
	if errors.As(err, &ee) {
		return err
	}
	if err != nil {
		return wrap("prepare", err)
	}
	s.app.Store(sch)
	return nil
}

// columnDefault is the SQL default of a column: WatermelonDB's null value for
// non-optional columns (so rows inserted with plain SQL that leave them out read as
// WatermelonDB would), none for optional ones.
func columnDefault(c schema.Column) string {
	if c.IsOptional {
		return ""
	}
	switch c.Type {
	case schema.String:
		return ` DEFAULT ''`
	case schema.Number:
		return ` DEFAULT 0`
	default:
		return ` DEFAULT false`
	}
}

// indexName returns a name for an index of ours on table: "__" + table + "__" + what,
// or, when that is longer than PostgreSQL's 63 bytes, a shortened name with a hash.
func indexName(table, what string) string {
	n := "__" + table + "__" + what
	if len(n) <= 63 {
		return n
	}
	h := sha256.Sum256([]byte(n))
	return n[:46] + "_" + hex.EncodeToString(h[:8])
}

func (s *Store) prepareTable(ctx context.Context, tx pgx.Tx, t *schema.Table) error {
	rel := quoteIdent(s.schema) + "." + quoteIdent(t.Name)
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, rel).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		_, err := tx.Exec(ctx, `CREATE TABLE `+rel+` (
			id text PRIMARY KEY,
			__owner text NOT NULL,
			__version bigint NOT NULL DEFAULT 0,
			__created_version bigint NOT NULL DEFAULT 0,
			__created_device text NOT NULL DEFAULT '',
			__device text NOT NULL DEFAULT '')`)
		if err != nil {
			return err
		}
	}
	rows, err := tx.Query(ctx, `SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`, rel)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	for _, own := range []string{"__owner", "__version", "__created_version", "__created_device", "__device"} {
		if !have[own] {
			return fmt.Errorf("the table exists but lacks melonsync's column %s (was it created by melonsync?)", own)
		}
	}
	for _, c := range t.Columns {
		if have[c.Name] {
			continue
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE `+rel+` ADD COLUMN `+quoteIdent(c.Name)+` `+sqlType(c.Type)+columnDefault(c)); err != nil {
			return fmt.Errorf("add column %s: %w", c.Name, err)
		}
	}

	rows, err = tx.Query(ctx, `SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass`, rel)
	if err != nil {
		return err
	}
	names, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	indexes := map[string]bool{}
	for _, n := range names {
		indexes[n] = true
	}
	want := [][2]string{{indexName(t.Name, "owner_version"), `(__owner, __version)`},
		// Paged pulls walk a user's rows in creation order.
		{indexName(t.Name, "owner_created"), `(__owner, __created_version)`}}
	if t.Rule.Kind == schema.Public {
		want = append(want, [2]string{indexName(t.Name, "created"), `(__created_version)`})
	}
	if r := t.Rule; r.Kind == schema.GroupRule && r.By != "id" {
		want = append(want, [2]string{indexName(t.Name, "group_version"), `(` + quoteIdent(r.By) + `, __version)`},
			[2]string{indexName(t.Name, "group_created"), `(` + quoteIdent(r.By) + `, __created_version)`})
	}
	if g := t.Rule.MembersOf; g != nil {
		want = append(want, [2]string{indexName(t.Name, "user_version"), `(` + quoteIdent(g.UserCol) + `, __version)`})
	}
	for _, c := range t.Columns {
		if c.IsIndexed {
			want = append(want, [2]string{indexName(t.Name, c.Name), `(` + quoteIdent(c.Name) + `)`})
		}
	}
	for _, ix := range want {
		if indexes[ix[0]] {
			continue
		}
		if _, err := tx.Exec(ctx, `CREATE INDEX IF NOT EXISTS `+quoteIdent(ix[0])+` ON `+rel+` `+ix[1]); err != nil {
			return err
		}
	}

	rows, err = tx.Query(ctx, `SELECT tgname::text, tgargs FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`, rel)
	if err != nil {
		return err
	}
	triggers := map[string]string{}
	for rows.Next() {
		var name string
		var args []byte
		if err := rows.Scan(&name, &args); err != nil {
			rows.Close()
			return err
		}
		triggers[name] = string(args)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, tg := range s.triggers(t, rel) {
		have, ok := triggers[tg.name]
		if ok && (tg.args == nil || have == encodeArgs(tg.args)) {
			continue
		}
		if ok {
			// The table's access rule changed: its trigger takes other arguments.
			if _, err := tx.Exec(ctx, `DROP TRIGGER `+quoteIdent(tg.name)+` ON `+rel); err != nil {
				return fmt.Errorf("trigger %s: %w", tg.name, err)
			}
		}
		if tg.sql == "" {
			continue
		}
		if _, err := tx.Exec(ctx, tg.sql); err != nil {
			return fmt.Errorf("trigger %s: %w", tg.name, err)
		}
	}
	return nil
}

// trigger is one of melonsync's triggers on a synced table: its name, arguments (nil:
// any) and the statement that creates it ("" when the table must not have it).
type trigger struct {
	name string
	args []string
	sql  string
}

// encodeArgs is how pg_trigger.tgargs holds arguments: each one NUL-terminated.
func encodeArgs(args []string) string {
	var b strings.Builder
	for _, a := range args {
		b.WriteString(a)
		b.WriteByte(0)
	}
	return b.String()
}

// triggerArgs are the arguments of the stamp and delete triggers: the instance, and
// for group and public tables the rule, the group column and the user column (see
// migrations/0002_access.sql).
func (s *Store) triggerArgs(t *schema.Table) []string {
	switch t.Rule.Kind {
	case schema.GroupRule:
		user := ""
		if g := t.Rule.MembersOf; g != nil {
			user = g.UserCol
		}
		return []string{s.instance, "g", t.Rule.By, user}
	case schema.Public:
		return []string{s.instance, "p", "", ""}
	}
	return []string{s.instance}
}

func callArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = quoteLiteral(a)
	}
	return strings.Join(q, ", ")
}

// triggers returns melonsync's triggers for t.
func (s *Store) triggers(t *schema.Table, rel string) []trigger {
	inst := quoteLiteral(s.instance)
	fn := func(name string, args []string) string {
		return quoteIdent(s.schema) + "." + name + "(" + callArgs(args) + ")"
	}
	// The WHEN conditions keep melonsync's own writes (whose __version is already the
	// transaction's version) from calling any trigger function.
	current := `nullif(current_setting(` + quoteLiteral(s.versionSetting()) + `, true), '')::bigint`
	args := s.triggerArgs(t)
	out := []trigger{
		{"__melon_before", nil, `CREATE TRIGGER __melon_before BEFORE INSERT OR UPDATE ON ` + rel +
			` FOR EACH ROW WHEN (NEW.__version IS DISTINCT FROM ` + current + `) EXECUTE FUNCTION ` + quoteIdent(s.schema) + `.__melon_before(` + inst + `)`},
		{"__melon_stamp", args, `CREATE CONSTRAINT TRIGGER __melon_stamp AFTER INSERT OR UPDATE ON ` + rel +
			` DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.__version = 0) EXECUTE FUNCTION ` + fn("__melon_stamp", args)},
		{"__melon_deleted", args, `CREATE TRIGGER __melon_deleted AFTER DELETE ON ` + rel +
			` REFERENCING OLD TABLE AS __melon_gone FOR EACH STATEMENT EXECUTE FUNCTION ` + fn("__melon_deleted", args)},
		{"__melon_no_truncate", nil, `CREATE TRIGGER __melon_no_truncate BEFORE TRUNCATE ON ` + rel +
			` FOR EACH STATEMENT EXECUTE FUNCTION ` + quoteIdent(s.schema) + `.__melon_no_truncate()`},
	}
	move := trigger{name: "__melon_move", args: []string{}}
	if r := t.Rule; r.Kind == schema.GroupRule && r.By != "id" {
		user := ""
		cond := `OLD.` + quoteIdent(r.By) + ` IS DISTINCT FROM NEW.` + quoteIdent(r.By)
		if g := r.MembersOf; g != nil {
			user = g.UserCol
			cond += ` OR OLD.` + quoteIdent(user) + ` IS DISTINCT FROM NEW.` + quoteIdent(user)
		}
		move.args = []string{s.instance, r.By, user}
		move.sql = `CREATE TRIGGER __melon_move BEFORE UPDATE ON ` + rel + ` FOR EACH ROW WHEN (` + cond + `) EXECUTE FUNCTION ` + fn("__melon_move", move.args)
	}
	return append(out, move)
}
