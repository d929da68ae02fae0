package client

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/melonsync/melonsync/schema"
)

// The file layout is WatermelonDB's (src/adapters/sqlite/encodeSchema): every table has
// untyped columns "id" (primary key), "_changed", "_status" and then the schema's
// columns in declaration order; an index "<table>_<column>" per indexed column and
// "<table>__status" on _status; a "local_storage" key/value table; and the schema
// version in PRAGMA user_version. The statements below produce the same SQL text.

const localStorageDDL = `create table "local_storage" ("key" varchar(16) primary key not null, "value" text not null);` +
	`create index "local_storage_key_index" on "local_storage" ("key");`

func createTableDDL(t *schema.Table) string {
	var b strings.Builder
	b.WriteString(`create table "`)
	b.WriteString(t.Name)
	b.WriteString(`" ("id" primary key, "_changed", "_status"`)
	for _, c := range t.Columns {
		b.WriteString(`, "`)
		b.WriteString(c.Name)
		b.WriteString(`"`)
	}
	b.WriteString(");")
	b.WriteString(tableIndexesDDL(t.Name, t.Columns))
	return b.String()
}

func indexDDL(table string, c schema.Column) string {
	if !c.IsIndexed {
		return ""
	}
	return `create index if not exists "` + table + "_" + c.Name + `" on "` + table + `" ("` + c.Name + `");`
}

func tableIndexesDDL(table string, cols []schema.Column) string {
	var b strings.Builder
	for _, c := range cols {
		b.WriteString(indexDDL(table, c))
	}
	b.WriteString(`create index if not exists "` + table + `__status" on "` + table + `" ("_status");`)
	return b.String()
}

// schemaDDL is WatermelonDB's encodeSchema: the whole database at the schema's version.
func schemaDDL(s *schema.Schema) string {
	var b strings.Builder
	b.WriteString(localStorageDDL)
	for _, t := range s.Tables {
		b.WriteString(createTableDDL(t))
	}
	return b.String()
}

// sqlLiteral encodes a column's default value as WatermelonDB's encodeValue does.
func sqlLiteral(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		if x {
			return "1"
		}
		return "0"
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		return "'" + strings.ReplaceAll(x, "'", "''") + "'"
	}
	panic(fmt.Sprintf("client: no SQL literal for %T", v))
}

// migrationDDL is WatermelonDB's encodeMigrationSteps.
func migrationDDL(steps []schema.Step) (string, error) {
	var b strings.Builder
	for _, st := range steps {
		switch st.Type {
		case schema.StepCreateTable:
			b.WriteString(createTableDDL(st.Table))
		case schema.StepAddColumns:
			for _, c := range st.Columns {
				b.WriteString(`alter table "` + st.TableName + `" add "` + c.Name + `";`)
				b.WriteString(`update "` + st.TableName + `" set "` + c.Name + `" = ` + sqlLiteral(c.Default()) + ";")
				b.WriteString(indexDDL(st.TableName, c))
			}
		case schema.StepSQL:
			b.WriteString(st.SQL)
		default:
			return "", fmt.Errorf("%w: unsupported migration step %q", ErrInvalid, st.Type)
		}
	}
	return b.String(), nil
}

// setUp brings the file at the writer connection to the schema's version: it creates a
// new database, runs the migrations of an older one, and refuses (changing nothing) a
// file that is newer, that no migrations lead from, or that is not a WatermelonDB
// database. It then checks that every table and column of the schema is there.
func setUp(ctx context.Context, w *sql.DB, s *schema.Schema) error {
	tx, err := w.BeginTx(ctx, nil) // BEGIN IMMEDIATE: no other writer can interleave
	if err != nil {
		return fmt.Errorf("client: open: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "pragma user_version").Scan(&version); err != nil {
		return fmt.Errorf("client: open: %w", err)
	}
	switch {
	case version == s.Version:
		// nothing to do
	case version == 0:
		var n int
		if err := tx.QueryRowContext(ctx, `select count(*) from sqlite_master where name not like 'sqlite\_%' escape '\'`).Scan(&n); err != nil {
			return fmt.Errorf("client: open: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("%w: the file has tables but no schema version (user_version 0); it is not a WatermelonDB database", ErrIncompatible)
		}
		if _, err := tx.ExecContext(ctx, schemaDDL(s)); err != nil {
			return fmt.Errorf("client: create database: %w", err)
		}
	case version > s.Version:
		return fmt.Errorf("%w: the file is at schema version %d, newer than the schema (version %d)", ErrIncompatible, version, s.Version)
	default:
		if s.Migrations == nil || len(s.Migrations.Sorted) == 0 {
			return fmt.Errorf("%w: the file is at schema version %d and the schema at %d, and the schema has no migrations", ErrIncompatible, version, s.Version)
		}
		steps, err := s.Migrations.Steps(version, s.Version)
		if err != nil {
			return fmt.Errorf("%w: the file is at schema version %d and the schema at %d, but %v", ErrIncompatible, version, s.Version, err)
		}
		ddl, err := migrationDDL(steps)
		if err != nil {
			return err
		}
		if ddl != "" {
			if _, err := tx.ExecContext(ctx, ddl); err != nil {
				return fmt.Errorf("client: migrate from version %d to %d: %w", version, s.Version, err)
			}
		}
	}
	if version != s.Version {
		if _, err := tx.ExecContext(ctx, "pragma user_version = "+strconv.Itoa(s.Version)); err != nil {
			return fmt.Errorf("client: set schema version: %w", err)
		}
	}
	if err := checkLayout(ctx, tx, s); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("client: open: %w", err)
	}
	return nil
}

// checkLayout verifies that every table and column of the schema, and local_storage,
// exist in the file. Extra tables and columns are allowed (WatermelonDB never drops any).
func checkLayout(ctx context.Context, tx *sql.Tx, s *schema.Schema) error {
	have := func(table string) (map[string]bool, error) {
		rows, err := tx.QueryContext(ctx, `select name from pragma_table_info(?)`, table)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		cols := map[string]bool{}
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				return nil, err
			}
			cols[name] = true
		}
		return cols, rows.Err()
	}
	ls, err := have("local_storage")
	if err != nil {
		return fmt.Errorf("client: open: %w", err)
	}
	if !ls["key"] || !ls["value"] {
		return fmt.Errorf("%w: the file has no local_storage table", ErrIncompatible)
	}
	for _, t := range s.Tables {
		cols, err := have(t.Name)
		if err != nil {
			return fmt.Errorf("client: open: %w", err)
		}
		if len(cols) == 0 {
			return fmt.Errorf("%w: the file has no table %q (did the schema change without a new version and a migration?)", ErrIncompatible, t.Name)
		}
		for _, c := range append([]string{"id", "_status", "_changed"}, columnNames(t)...) {
			if !cols[c] {
				return fmt.Errorf("%w: table %q in the file has no column %q (did the schema change without a new version and a migration?)", ErrIncompatible, t.Name, c)
			}
		}
	}
	return nil
}

func columnNames(t *schema.Table) []string {
	out := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		out[i] = c.Name
	}
	return out
}
