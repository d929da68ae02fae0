package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

var _ server.SchemaPreparer = (*Store)(nil)

// SetSchemaChanges says what Prepare may do with data the schema no longer describes
// (serve --allow-drop, --convert). Call it before Prepare.
func (s *Store) SetSchemaChanges(c server.SchemaChanges) { s.changes = c }

// pgTypeOf maps a column's SQL type to the schema type it can hold ("" for none).
func pgTypeOf(sqlType string) schema.Type {
	t := strings.ToLower(sqlType)
	switch {
	case t == "text" || strings.HasPrefix(t, "character") || t == "citext" || strings.HasPrefix(t, "varchar"):
		return schema.String
	case t == "double precision" || t == "real" || strings.HasPrefix(t, "numeric") || t == "integer" || t == "bigint" || t == "smallint":
		return schema.Number
	case t == "boolean":
		return schema.Boolean
	}
	return ""
}

// planSchema describes the store's synced tables (those with melonsync's columns) and
// asks server.PlanSchema what to do.
func (s *Store) planSchema(ctx context.Context, tx pgx.Tx, sch *schema.Schema) (*server.SchemaPlan, error) {
	rows, err := tx.Query(ctx, `SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname NOT LIKE '\_\_%'
		AND EXISTS (SELECT 1 FROM pg_attribute o WHERE o.attrelid = c.oid AND o.attname = '__owner' AND NOT o.attisdropped)
		AND EXISTS (SELECT 1 FROM pg_attribute o WHERE o.attrelid = c.oid AND o.attname = '__version' AND NOT o.attisdropped)
		ORDER BY c.relname, a.attnum`, s.schema)
	if err != nil {
		return nil, err
	}
	type col struct{ table, name, typ string }
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (col, error) {
		var c col
		return c, r.Scan(&c.table, &c.name, &c.typ)
	})
	if err != nil {
		return nil, err
	}
	var stored []server.StoredTable
	for _, c := range cols {
		if len(stored) == 0 || stored[len(stored)-1].Name != c.table {
			st := server.StoredTable{Name: c.table, LiveRows: -1}
			if sch.Table(c.table) == nil {
				if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+quoteIdent(c.table)).Scan(&st.LiveRows); err != nil {
					return nil, err
				}
			}
			stored = append(stored, st)
		}
		if c.name == "id" || strings.HasPrefix(c.name, "__") {
			continue
		}
		sc := server.StoredColumn{Name: c.name, Type: pgTypeOf(c.typ), SQLType: c.typ}
		if server.NeedsData(sch, c.table, c.name, sc.Type) {
			q := quoteIdent(c.name)
			err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+quoteIdent(c.table)+` WHERE `+q+` IS NOT NULL AND `+q+`::text NOT IN ('', '0', 'false'))`).Scan(&sc.HasData)
			if err != nil {
				return nil, err
			}
		}
		st := &stored[len(stored)-1]
		st.Columns = append(st.Columns, sc)
	}
	var version int
	var v string
	if err := tx.QueryRow(ctx, `SELECT value FROM __melon_meta WHERE key = 'schema_version'`).Scan(&v); err == nil {
		version, _ = strconv.Atoi(v)
	} else if err != pgx.ErrNoRows {
		return nil, err
	}
	return server.PlanSchema(sch, stored, version, s.changes)
}

// dropAndConvert carries out plan: drops before the tables are brought up to date
// (drops true), conversions after.
func (s *Store) dropAndConvert(ctx context.Context, tx pgx.Tx, plan *server.SchemaPlan, drops bool) error {
	var stmts []string
	if drops {
		for _, t := range plan.DropTables {
			stmts = append(stmts, `DROP TABLE `+quoteIdent(t),
				`DELETE FROM __melon_tombstones WHERE tbl = `+quoteLiteral(t))
		}
		for t, cols := range plan.DropColumns {
			for _, c := range cols {
				stmts = append(stmts, `ALTER TABLE `+quoteIdent(t)+` DROP COLUMN `+quoteIdent(c))
			}
		}
	} else {
		for _, cv := range plan.Convert {
			rel, q := quoteIdent(cv.Table), quoteIdent(cv.To.Name)
			stmts = append(stmts,
				`ALTER TABLE `+rel+` ALTER COLUMN `+q+` DROP DEFAULT`,
				`ALTER TABLE `+rel+` ALTER COLUMN `+q+` TYPE `+sqlType(cv.To.Type)+` USING `+pgConvert(q, cv.From.Type, cv.To),
				`ALTER TABLE `+rel+` ALTER COLUMN `+q+` SET`+columnDefault(cv.To),
				// The triggers give the converted records a version at commit: clients
				// pull the converted values as updates.
				`UPDATE `+rel+` SET `+q+` = `+q+` WHERE `+q+` IS NOT NULL`)
			if cv.To.IsOptional {
				stmts[len(stmts)-2] = `ALTER TABLE ` + rel + ` ALTER COLUMN ` + q + ` DROP DEFAULT`
			}
		}
	}
	for _, st := range stmts {
		if _, err := tx.Exec(ctx, st); err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
	}
	return nil
}

// pgConvert converts the value q of a column of type from (a schema type, or "" for
// another SQL type) to column c, as the SQLite store does: numbers as their decimal
// text, "true"/"false" for booleans, numeric text as numbers; what does not convert
// becomes c's null value.
func pgConvert(q string, from schema.Type, c schema.Column) string {
	var e string
	txt := `btrim(` + q + `::text)`
	switch c.Type {
	case schema.String:
		switch from {
		case schema.Number:
			e = `CASE WHEN ` + q + ` = trunc(` + q + `) AND abs(` + q + `) < 1e15 THEN trunc(` + q + `)::bigint::text ELSE ` + q + `::text END`
		case schema.Boolean:
			e = `CASE WHEN ` + q + ` THEN 'true' WHEN NOT ` + q + ` THEN 'false' END`
		default:
			e = q + `::text`
		}
	case schema.Number:
		switch from {
		case schema.Boolean:
			e = `CASE WHEN ` + q + ` THEN 1 WHEN NOT ` + q + ` THEN 0 END`
		default:
			e = `CASE WHEN ` + txt + ` ~ '^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$' THEN ` + txt + `::double precision END`
		}
	default:
		switch from {
		case schema.Number:
			e = `(` + q + ` <> 0)`
		default:
			e = `CASE WHEN lower(` + txt + `) IN ('true', '1', 't') THEN true WHEN lower(` + txt + `) IN ('false', '0', 'f', '') THEN false END`
		}
	}
	if c.IsOptional {
		return e
	}
	return `coalesce(` + e + `, ` + strings.TrimPrefix(columnDefault(c), " DEFAULT ") + `)`
}

// noteSchemaVersion remembers the highest schema version the store was prepared for.
func (s *Store) noteSchemaVersion(ctx context.Context, tx pgx.Tx, v int) error {
	_, err := tx.Exec(ctx, `INSERT INTO __melon_meta (key, value) VALUES ('schema_version', $1)
		ON CONFLICT (key) DO UPDATE SET value = greatest(__melon_meta.value::int, excluded.value::int)::text
		WHERE __melon_meta.value::int < excluded.value::int`, strconv.Itoa(v))
	return err
}
