package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/melonsync/melonsync/internal/sqlitedb"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

var _ server.Dumper = (*Store)(nil)

// internalTables are melonsync tables that are not exported as bookkeeping: the
// key-value settings (the header carries them) and the rebuild scratch table.
var internalTables = map[string]bool{"__melon_meta": true, "__melon_rebuild": true}

// bookkeepingTables lists melonsync's own tables that an export carries row by row.
func bookkeepingTables(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE '\_\_melon\_%' ESCAPE '\' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		if !internalTables[n] {
			out = append(out, n)
		}
	}
	return out, rows.Err()
}

// Export writes the whole store from one read snapshot (see server.Dumper).
func (s *Store) Export(ctx context.Context, sch *schema.Schema, opts server.ExportOptions, emit func(*server.DumpEntry) error) error {
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: export: %w", err)
	}
	defer tx.Rollback()
	meta := map[string]string{}
	rows, err := tx.QueryContext(ctx, `SELECT "key", "value" FROM "__melon_meta"`)
	if err != nil {
		return fmt.Errorf("sqlite: export: %w", err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return err
		}
		meta[k] = v
	}
	rows.Close()
	num := func(k string) int64 { n, _ := strconv.ParseInt(meta[k], 10, 64); return n }
	err = emit(&server.DumpEntry{Kind: server.DumpHeader, Format: server.DumpFormat, Version: server.DumpVersion, Store: "sqlite",
		Clock: num("clock"), PurgedThrough: num("purged_through"), SchemaVersion: int(max(num("schema_version"), int64(sch.Version)))})
	if err != nil {
		return err
	}
	if opts.Secret && meta["jwt_secret"] != "" {
		if err := emit(&server.DumpEntry{Kind: server.DumpSecret, Secret: meta["jwt_secret"]}); err != nil {
			return err
		}
	}
	end := &server.DumpEntry{Kind: server.DumpEnd}
	for _, t := range sch.Tables {
		n, err := exportTable(ctx, tx, t, emit)
		if err != nil {
			return err
		}
		end.Records += n
	}
	books, err := bookkeepingTables(ctx, tx)
	if err != nil {
		return fmt.Errorf("sqlite: export: %w", err)
	}
	for _, b := range books {
		n, err := exportRows(ctx, tx, b, emit)
		if err != nil {
			return fmt.Errorf("sqlite: export %s: %w", b, err)
		}
		end.Bookkeeping += n
	}
	return emit(end)
}

func exportTable(ctx context.Context, tx *sql.Tx, t *schema.Table, emit func(*server.DumpEntry) error) (int64, error) {
	var b strings.Builder
	b.WriteString(`SELECT "id", "__owner", "__version", "__created_version", "__created_device", "__device", "__deleted"`)
	for _, c := range t.Columns {
		b.WriteString(", " + quote(c.Name))
	}
	b.WriteString(` FROM ` + quote(t.Name))
	rows, err := tx.QueryContext(ctx, b.String())
	if err != nil {
		return 0, fmt.Errorf("sqlite: export %s: %w", t.Name, err)
	}
	defer rows.Close()
	raw := make([]any, 7+len(t.Columns))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, fmt.Errorf("sqlite: export %s: %w", t.Name, err)
		}
		e := &server.DumpEntry{Kind: server.DumpRecord, Table: t.Name, ID: sqlitedb.Text(raw[0]), Owner: sqlitedb.Text(raw[1]),
			RecordVersion: sqlitedb.Int(raw[2]), CreatedVersion: sqlitedb.Int(raw[3]), CreatedDevice: sqlitedb.Text(raw[4]),
			Device: sqlitedb.Text(raw[5]), Deleted: sqlitedb.Int(raw[6]) != 0, Values: map[string]any{}}
		for i, c := range t.Columns {
			v := sqlitedb.Value(c.Type, raw[7+i])
			if e.Deleted && v == nil {
				continue // a tombstone keeps only its group and user columns
			}
			e.Values[c.Name] = v
		}
		if err := emit(e); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// exportRows emits every row of a bookkeeping table, column by column.
func exportRows(ctx context.Context, tx *sql.Tx, table string, emit func(*server.DumpEntry) error) (int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT * FROM `+quote(table))
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	raw := make([]any, len(cols))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		row := make(map[string]any, len(cols))
		for i, c := range cols {
			if b, ok := raw[i].([]byte); ok {
				row[c] = string(b)
			} else {
				row[c] = raw[i]
			}
		}
		if err := emit(&server.DumpEntry{Kind: server.DumpBookkeeping, Table: table, Row: row}); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// Import writes an export into the store, which must be prepared for sch and empty
// (see server.Dumper). It runs in one write transaction, with the plain-SQL triggers
// off (the export carries every version as it was).
func (s *Store) Import(ctx context.Context, sch *schema.Schema, next func() (*server.DumpEntry, error)) error {
	conn, err := s.writer.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: import: %w", err)
	}
	defer conn.Close()
	// A bigger page cache for the length of the import: one transaction writes every
	// index of every table, and a small cache spills it to disk again and again.
	if _, err := conn.ExecContext(ctx, `PRAGMA cache_size = -262144`); err != nil {
		return fmt.Errorf("sqlite: import: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA cache_size = -2000`)
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: import: %w", err)
	}
	defer tx.Rollback()
	books, err := bookkeepingTables(ctx, tx)
	if err != nil {
		return fmt.Errorf("sqlite: import: %w", err)
	}
	for _, name := range append(tableNames(sch), books...) {
		var any bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+quote(name)+`)`).Scan(&any); err != nil {
			return fmt.Errorf("sqlite: import: %w", err)
		}
		if any {
			return fmt.Errorf("sqlite: import: %w (%s has rows)", server.ErrNotEmpty, name)
		}
	}
	for _, t := range sch.Tables {
		for _, what := range triggerKinds {
			if _, err := tx.ExecContext(ctx, `DROP TRIGGER IF EXISTS `+quote("__melon_"+t.Name+"_"+what)); err != nil {
				return fmt.Errorf("sqlite: import: %w", err)
			}
		}
	}
	stmts := &sqlitedb.Stmts{}
	defer stmts.Close()
	var header *server.DumpEntry
	for {
		e, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch e.Kind {
		case server.DumpHeader:
			header = e
		case server.DumpSecret:
			if _, err := hex.DecodeString(e.Secret); err != nil {
				return fmt.Errorf("sqlite: import: the secret is not hex")
			}
			if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO "__melon_meta" ("key", "value") VALUES ('jwt_secret', ?)`, e.Secret); err != nil {
				return fmt.Errorf("sqlite: import: %w", err)
			}
		case server.DumpRecord:
			if err := importRecord(ctx, tx, stmts, sch, e); err != nil {
				return err
			}
		case server.DumpBookkeeping:
			if err := importRow(ctx, tx, e); err != nil {
				return err
			}
		}
	}
	if header == nil {
		return fmt.Errorf("sqlite: import: the export has no header")
	}
	for _, t := range sch.Tables {
		for _, q := range triggers(t) {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("sqlite: import: %w", err)
			}
		}
	}
	// The store was empty: its own starting clock was never seen by anyone with data,
	// so the export's clock replaces it and pulls answer as before the move.
	if _, err := tx.ExecContext(ctx, `UPDATE "__melon_meta" SET "value" = ? WHERE "key" = 'clock'`, strconv.FormatInt(header.Clock, 10)); err != nil {
		return fmt.Errorf("sqlite: import: %w", err)
	}
	for k, v := range map[string]int64{"purged_through": header.PurgedThrough, "schema_version": int64(header.SchemaVersion)} {
		_, err := tx.ExecContext(ctx, `INSERT INTO "__melon_meta" ("key", "value") VALUES (?, ?)
			ON CONFLICT ("key") DO UPDATE SET "value" = CAST(max(CAST("value" AS INTEGER), CAST(excluded."value" AS INTEGER)) AS TEXT)`, k, strconv.FormatInt(v, 10))
		if err != nil {
			return fmt.Errorf("sqlite: import: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: import: %w", err)
	}
	return nil
}

// columnName is what a bookkeeping column's name may be.
var columnName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

var triggerKinds = []string{"before_insert", "insert", "update", "id", "delete"}

func tableNames(sch *schema.Schema) []string {
	out := make([]string, len(sch.Tables))
	for i, t := range sch.Tables {
		out[i] = t.Name
	}
	return out
}

func importRecord(ctx context.Context, tx *sql.Tx, stmts *sqlitedb.Stmts, sch *schema.Schema, e *server.DumpEntry) error {
	t := sch.Table(e.Table)
	if t == nil {
		return fmt.Errorf("sqlite: import: table %s of the export is not in the schema", e.Table)
	}
	var cols, marks strings.Builder
	for _, c := range t.Columns {
		cols.WriteString(", " + quote(c.Name))
		marks.WriteString(", ?")
	}
	st, err := stmts.Get(ctx, tx, `INSERT INTO `+quote(t.Name)+` ("id", "__owner", "__version", "__created_version", "__created_device", "__device", "__deleted"`+
		cols.String()+`) VALUES (?, ?, ?, ?, ?, ?, ?`+marks.String()+`)`)
	if err != nil {
		return fmt.Errorf("sqlite: import %s: %w", t.Name, err)
	}
	args := []any{e.ID, e.Owner, e.RecordVersion, e.CreatedVersion, e.CreatedDevice, e.Device, sqlitedb.Bind(e.Deleted)}
	for _, c := range t.Columns {
		v, ok := e.Values[c.Name]
		switch {
		case !ok && !e.Deleted:
			v = c.Default()
		case c.Type == schema.Number:
			if i, isInt := v.(int64); isInt {
				v = float64(i)
			}
		}
		args = append(args, sqlitedb.Bind(v))
	}
	if _, err := st.ExecContext(ctx, args...); err != nil {
		return fmt.Errorf("sqlite: import %s %s: %w", t.Name, e.ID, err)
	}
	return nil
}

func importRow(ctx context.Context, tx *sql.Tx, e *server.DumpEntry) error {
	if !strings.HasPrefix(e.Table, "__melon_") || internalTables[e.Table] {
		return fmt.Errorf("sqlite: import: %q is not a bookkeeping table", e.Table)
	}
	cols := make([]string, 0, len(e.Row))
	args := make([]any, 0, len(e.Row))
	for c, v := range e.Row {
		if !columnName.MatchString(c) {
			return fmt.Errorf("sqlite: import %s: column %q", e.Table, c)
		}
		cols = append(cols, quote(c))
		args = append(args, sqlitedb.Bind(v))
	}
	q := `INSERT INTO ` + quote(e.Table) + ` (` + strings.Join(cols, ", ") + `) VALUES (?` + strings.Repeat(", ?", len(cols)-1) + `)`
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("sqlite: import %s: %w (does this store have that table? import with the melonsync that exported)", e.Table, err)
	}
	return nil
}
