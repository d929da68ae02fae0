package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

var _ server.SchemaPreparer = (*Store)(nil)

// SetSchemaChanges says what Prepare may do with data the schema no longer describes
// (serve --allow-drop, --convert). Call it before Prepare.
func (s *Store) SetSchemaChanges(c server.SchemaChanges) {
	s.mu.Lock()
	s.changes = c
	s.mu.Unlock()
}

// ownColumns are melonsync's columns of every synced table, as created.
const ownColumns = `"id" TEXT PRIMARY KEY NOT NULL,
	"__owner" TEXT NOT NULL,
	"__version" INTEGER NOT NULL DEFAULT 0,
	"__created_version" INTEGER NOT NULL DEFAULT 0,
	"__created_device" TEXT NOT NULL DEFAULT '',
	"__device" TEXT NOT NULL DEFAULT '',
	"__deleted" INTEGER NOT NULL DEFAULT 0`

var ownNames = []string{"id", "__owner", "__version", "__created_version", "__created_device", "__device", "__deleted"}

// columnDef is a schema column's definition: its type and WatermelonDB's null value
// as the default for non-optional columns, so that plain-SQL inserts that leave it
// out read as WatermelonDB would.
func columnDef(c schema.Column) string {
	d := quote(c.Name) + " " + sqlType(c.Type)
	if c.IsOptional {
		return d
	}
	if c.Type == schema.String {
		return d + " DEFAULT ''"
	}
	return d + " DEFAULT 0"
}

// typeOf maps a declared SQL type of ours back to the schema type ("" for others).
func typeOf(decl string) schema.Type {
	switch strings.ToUpper(decl) {
	case "TEXT":
		return schema.String
	case "REAL":
		return schema.Number
	case "INTEGER":
		return schema.Boolean
	}
	return ""
}

// Prepare brings the file to sch: it checks what the store holds against the schema
// (server.PlanSchema: a column whose type changed, or a table or column dropped from
// the schema that holds data, is refused unless SetSchemaChanges allows it), creates
// missing tables and columns, and puts the indexes and the triggers that version
// plain-SQL writes (triggers.go) on every synced table. Tables of an older layout
// are rebuilt once (their __version had no default). It runs in one transaction.
func (s *Store) Prepare(ctx context.Context, sch *schema.Schema) error {
	s.mu.RLock()
	changes := s.changes
	s.mu.RUnlock()
	conn, err := s.writer.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: prepare: %w", err)
	}
	defer conn.Close()
	// A table rebuild drops the old table: no foreign key actions on that, and no
	// checks of views and triggers against the momentarily missing table.
	for _, p := range []string{`PRAGMA foreign_keys = OFF`, `PRAGMA legacy_alter_table = ON`} {
		if _, err := conn.ExecContext(ctx, p); err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
	}
	defer func() {
		conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA legacy_alter_table = OFF`)
		conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA foreign_keys = ON`)
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: prepare: %w", err)
	}
	defer tx.Rollback()
	if err := prepareTx(ctx, tx, sch, changes); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: prepare: %w", err)
	}
	s.mu.Lock()
	s.schema = sch
	s.mu.Unlock()
	return nil
}

func prepareTx(ctx context.Context, tx *sql.Tx, sch *schema.Schema, changes server.SchemaChanges) error {
	stored, err := describeStore(ctx, tx, sch)
	if err != nil {
		return fmt.Errorf("sqlite: prepare: %w", err)
	}
	var storeVersion int
	var sv string
	if err := tx.QueryRowContext(ctx, `SELECT "value" FROM "__melon_meta" WHERE "key" = 'schema_version'`).Scan(&sv); err == nil {
		storeVersion, _ = strconv.Atoi(sv)
	}
	plan, err := server.PlanSchema(sch, stored, storeVersion, changes)
	if err != nil {
		return err
	}
	for _, name := range plan.DropTables {
		if _, err := tx.ExecContext(ctx, `DROP TABLE `+quote(name)); err != nil {
			return fmt.Errorf("sqlite: drop table %s: %w", name, err)
		}
	}
	for table, cols := range plan.DropColumns {
		for _, c := range cols {
			if _, err := tx.ExecContext(ctx, `DROP INDEX IF EXISTS `+quote(table+"_"+c)); err != nil {
				return fmt.Errorf("sqlite: drop column %s.%s: %w", table, c, err)
			}
			if _, err := tx.ExecContext(ctx, `ALTER TABLE `+quote(table)+` DROP COLUMN `+quote(c)); err != nil {
				return fmt.Errorf("sqlite: drop column %s.%s: %w", table, c, err)
			}
		}
	}
	convert := map[string][]server.Conversion{}
	for _, cv := range plan.Convert {
		convert[cv.Table] = append(convert[cv.Table], cv)
	}
	var converted bool
	for _, t := range sch.Tables {
		rebuilt, err := prepareTable(ctx, tx, t, convert[t.Name])
		if err != nil {
			return fmt.Errorf("sqlite: prepare %s: %w", t.Name, err)
		}
		converted = converted || rebuilt && len(convert[t.Name]) > 0
	}
	if converted {
		if err := stampConverted(ctx, tx, plan.Convert); err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO "__melon_meta" ("key", "value") VALUES ('schema_version', ?)
		ON CONFLICT ("key") DO UPDATE SET "value" = CAST(max(CAST("value" AS INTEGER), CAST(excluded."value" AS INTEGER)) AS TEXT)`,
		strconv.Itoa(sch.Version))
	if err != nil {
		return fmt.Errorf("sqlite: prepare: %w", err)
	}
	return nil
}

// columnInfo is a row of pragma_table_info.
type columnInfo struct {
	name, decl string
	dflt       sql.NullString
}

func tableColumns(ctx context.Context, tx *sql.Tx, table string) ([]columnInfo, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name, type, dflt_value FROM pragma_table_info(?)`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []columnInfo
	for rows.Next() {
		var c columnInfo
		if err := rows.Scan(&c.name, &c.decl, &c.dflt); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// describeStore lists the synced tables of the file (those with melonsync's
// columns), with the facts PlanSchema needs.
func describeStore(ctx context.Context, tx *sql.Tx, sch *schema.Schema) ([]server.StoredTable, error) {
	rows, err := tx.QueryContext(ctx, `SELECT s.name FROM sqlite_schema s WHERE s.type = 'table' AND s.name NOT LIKE '\_\_%' ESCAPE '\'
		AND EXISTS (SELECT 1 FROM pragma_table_info(s.name) p WHERE p.name = '__version')
		AND EXISTS (SELECT 1 FROM pragma_table_info(s.name) p WHERE p.name = '__owner') ORDER BY s.name`)
	if err != nil {
		return nil, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	var out []server.StoredTable
	for _, name := range names {
		st := server.StoredTable{Name: name, LiveRows: -1}
		if sch.Table(name) == nil {
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+quote(name)+` WHERE "__deleted" = 0`).Scan(&st.LiveRows); err != nil {
				return nil, err
			}
		}
		cols, err := tableColumns(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		for _, c := range cols {
			if c.name == "id" || strings.HasPrefix(c.name, "__") {
				continue
			}
			sc := server.StoredColumn{Name: c.name, Type: typeOf(c.decl), SQLType: c.decl}
			if server.NeedsData(sch, name, c.name, sc.Type) {
				q := quote(c.name)
				err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+quote(name)+` WHERE "__deleted" = 0 AND `+q+` IS NOT NULL AND `+q+` NOT IN ('', 0))`).Scan(&sc.HasData)
				if err != nil {
					return nil, err
				}
			}
			st.Columns = append(st.Columns, sc)
		}
		out = append(out, st)
	}
	return out, nil
}

// prepareTable creates t or brings it up to date; it reports whether it rebuilt it.
func prepareTable(ctx context.Context, tx *sql.Tx, t *schema.Table, conv []server.Conversion) (bool, error) {
	q := quote(t.Name)
	cols, err := tableColumns(ctx, tx, t.Name)
	if err != nil {
		return false, err
	}
	rebuilt := false
	if len(cols) == 0 {
		defs := []string{ownColumns}
		for _, c := range t.Columns {
			defs = append(defs, columnDef(c))
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE `+q+` (`+strings.Join(defs, ", ")+`)`); err != nil {
			return false, err
		}
	} else {
		oldLayout := false
		for _, c := range cols {
			if c.name == "__version" && !c.dflt.Valid {
				oldLayout = true
			}
		}
		if oldLayout || len(conv) > 0 {
			if err := rebuild(ctx, tx, t, cols, conv); err != nil {
				return false, err
			}
			rebuilt = true
		}
		have := map[string]bool{}
		for _, c := range cols {
			have[c.name] = true
		}
		for _, c := range t.Columns {
			if !have[c.Name] {
				if _, err := tx.ExecContext(ctx, `ALTER TABLE `+q+` ADD COLUMN `+columnDef(c)); err != nil {
					return false, fmt.Errorf("add column %s: %w", c.Name, err)
				}
			}
		}
	}
	idx := []string{`CREATE INDEX IF NOT EXISTS ` + quote(t.Name+"__owner_version") + ` ON ` + q + ` ("__owner", "__version")`,
		// Paged pulls walk a user's rows in creation order.
		`CREATE INDEX IF NOT EXISTS ` + quote(t.Name+"__owner_created") + ` ON ` + q + ` ("__owner", "__created_version")`}
	if t.Rule.Kind == schema.Public {
		idx = append(idx, `CREATE INDEX IF NOT EXISTS `+quote(t.Name+"__created")+` ON `+q+` ("__created_version")`)
	}
	if r := t.Rule; r.Kind == schema.GroupRule && r.By != "id" {
		idx = append(idx, `CREATE INDEX IF NOT EXISTS `+quote(t.Name+"__group_version")+` ON `+q+` (`+quote(r.By)+`, "__deleted", "__version")`,
			`CREATE INDEX IF NOT EXISTS `+quote(t.Name+"__group_created")+` ON `+q+` (`+quote(r.By)+`, "__deleted", "__created_version")`)
	}
	if g := t.Rule.MembersOf; g != nil {
		idx = append(idx, `CREATE INDEX IF NOT EXISTS `+quote(t.Name+"__user_version")+` ON `+q+` (`+quote(g.UserCol)+`, "__deleted", "__version")`)
	}
	for _, c := range t.Columns {
		if c.IsIndexed {
			idx = append(idx, `CREATE INDEX IF NOT EXISTS `+quote(t.Name+"_"+c.Name)+` ON `+q+` (`+quote(c.Name)+`)`)
		}
	}
	idx = append(idx, triggers(t)...)
	for _, stmt := range idx {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return false, err
		}
	}
	if err := prepareAccessTriggers(ctx, tx, t); err != nil {
		return false, fmt.Errorf("access triggers: %w", err)
	}
	return rebuilt, nil
}

// rebuild recreates t in the current layout (SQLite cannot change a column's
// definition in place): a new table, the rows copied (converting the columns in
// conv), the old table dropped, the new one renamed, and the app's own indexes and
// triggers on it created again.
func rebuild(ctx context.Context, tx *sql.Tx, t *schema.Table, cols []columnInfo, conv []server.Conversion) error {
	rows, err := tx.QueryContext(ctx, `SELECT sql FROM sqlite_schema WHERE tbl_name = ? AND type IN ('index', 'trigger') AND sql IS NOT NULL AND name NOT LIKE '\_\_melon\_%' ESCAPE '\'`, t.Name)
	if err != nil {
		return err
	}
	var keep []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return err
		}
		keep = append(keep, s)
	}
	rows.Close()
	to := map[string]server.Conversion{}
	for _, c := range conv {
		to[c.From.Name] = c
	}
	defs := []string{ownColumns}
	names := append([]string(nil), ownNames...)
	exprs := append([]string(nil), ownNames...)
	for i := range exprs {
		exprs[i] = quote(exprs[i])
	}
	exprs[2] = `coalesce("__version", 0)`
	exprs[3] = `coalesce("__created_version", 0)`
	for _, c := range cols {
		if c.name == "id" || strings.HasPrefix(c.name, "__") {
			continue
		}
		names = append(names, c.name)
		if sc := t.Column(c.name); sc != nil {
			defs = append(defs, columnDef(*sc))
			if cv, ok := to[c.name]; ok {
				exprs = append(exprs, convertExpr(quote(c.name), cv.From.Type, *sc))
			} else {
				exprs = append(exprs, quote(c.name))
			}
			continue
		}
		defs = append(defs, quote(c.name)+" "+c.decl) // not in the schema: kept as it is
		exprs = append(exprs, quote(c.name))
	}
	qn := make([]string, len(names))
	for i, n := range names {
		qn[i] = quote(n)
	}
	stmts := []string{
		`DROP TABLE IF EXISTS "__melon_rebuild"`,
		`CREATE TABLE "__melon_rebuild" (` + strings.Join(defs, ", ") + `)`,
		`INSERT INTO "__melon_rebuild" (` + strings.Join(qn, ", ") + `) SELECT ` + strings.Join(exprs, ", ") + ` FROM ` + quote(t.Name),
		`DROP TABLE ` + quote(t.Name),
		`ALTER TABLE "__melon_rebuild" RENAME TO ` + quote(t.Name),
	}
	for _, s := range append(stmts, keep...) {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
	}
	return nil
}

// convertExpr converts the value q of a column of type from (a schema type, or ""
// when unknown) to column c, the way a person would read it: numbers as their
// decimal text, "true"/"false" for booleans, numeric text as numbers. What does not
// convert becomes c's null value.
func convertExpr(q string, from schema.Type, c schema.Column) string {
	var e string
	switch c.Type {
	case schema.String:
		switch from {
		case schema.Number:
			e = `CASE WHEN ` + q + ` = CAST(` + q + ` AS INTEGER) AND abs(` + q + `) < 1e15 THEN CAST(CAST(` + q + ` AS INTEGER) AS TEXT) ELSE CAST(` + q + ` AS TEXT) END`
		case schema.Boolean:
			e = `CASE WHEN ` + q + ` IS NULL THEN NULL WHEN ` + q + ` THEN 'true' ELSE 'false' END`
		default:
			e = `CAST(` + q + ` AS TEXT)`
		}
	case schema.Number:
		t := `trim(CAST(` + q + ` AS TEXT))`
		e = `CASE WHEN typeof(` + q + `) IN ('integer', 'real') THEN CAST(` + q + ` AS REAL)` +
			` WHEN ` + t + ` GLOB '*[0-9]*' AND NOT ` + t + ` GLOB '*[^0-9.eE+-]*' AND CAST(` + t + ` AS REAL) || '' <> '' THEN CAST(` + t + ` AS REAL) END`
	default:
		e = `CASE WHEN typeof(` + q + `) IN ('integer', 'real') THEN ` + q + ` <> 0` +
			` WHEN lower(trim(` + q + `)) IN ('true', '1') THEN 1 WHEN lower(trim(` + q + `)) IN ('false', '0', '') THEN 0 END`
	}
	if c.IsOptional {
		return e
	}
	if c.Type == schema.String {
		return `coalesce(` + e + `, '')`
	}
	return `coalesce(` + e + `, 0)`
}

// stampConverted gives the live records whose columns were converted a new version,
// so that clients pull the converted values as updates.
func stampConverted(ctx context.Context, tx *sql.Tx, conv []server.Conversion) error {
	var clock int64
	var v string
	if err := tx.QueryRowContext(ctx, `SELECT "value" FROM "__melon_meta" WHERE "key" = 'clock'`).Scan(&v); err != nil {
		return err
	}
	clock, _ = strconv.ParseInt(v, 10, 64)
	version := max(nowMillis(), clock+1)
	vs := strconv.FormatInt(version, 10)
	stmts := []string{
		`UPDATE "__melon_meta" SET "value" = '` + vs + `' WHERE "key" = 'clock'`,
		`INSERT OR REPLACE INTO "__melon_meta" ("key", "value") VALUES ('writing', '` + vs + `')`,
	}
	for _, c := range conv {
		stmts = append(stmts, `UPDATE `+quote(c.Table)+` SET "__version" = `+vs+`, "__device" = '' WHERE "__deleted" = 0 AND `+quote(c.From.Name)+` IS NOT NULL`)
	}
	stmts = append(stmts, `DELETE FROM "__melon_meta" WHERE "key" = 'writing'`)
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}
