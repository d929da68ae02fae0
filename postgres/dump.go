package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

var _ server.Dumper = (*Store)(nil)

// internalTables are melonsync tables that an export does not carry row by row: the
// settings and the clock (the header carries them), the list of applied migrations
// (the target has its own), and the tombstones (exported as records).
var internalTables = map[string]bool{"__melon_meta": true, "__melon_gate": true, "__melon_migrations": true, "__melon_tombstones": true}

func (s *Store) bookkeepingTables(ctx context.Context, tx pgx.Tx) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname LIKE '\_\_melon\_%' ORDER BY 1`, s.schema)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := names[:0]
	for _, n := range names {
		if !internalTables[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// keptColumns returns the columns of t that a tombstone keeps, as the tombstone
// columns grp and usr.
func keptColumns(t *schema.Table) (grp, usr string) {
	if by := t.Rule.By; by != "" && by != "id" && t.Column(by) != nil {
		grp = by
	}
	if g := t.Rule.MembersOf; g != nil && t.Column(g.UserCol) != nil {
		usr = g.UserCol
	}
	return grp, usr
}

// Export writes the whole store from one REPEATABLE READ snapshot (see server.Dumper).
func (s *Store) Export(ctx context.Context, sch *schema.Schema, opts server.ExportOptions, emit func(*server.DumpEntry) error) error {
	tx, err := s.begin(ctx, s.readPool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	h := &server.DumpEntry{Kind: server.DumpHeader, Format: server.DumpFormat, Version: server.DumpVersion, Store: "postgres"}
	// No statement timeout: an export takes as long as it takes.
	if h.Clock, err = takeSnapshot(ctx, tx, 0); err != nil {
		return wrap("export", err)
	}
	var secret, sv *string
	err = tx.QueryRow(ctx, `SELECT (SELECT value::bigint FROM __melon_meta WHERE key = 'purged_through'),
		(SELECT value FROM __melon_meta WHERE key = 'schema_version'),
		(SELECT value FROM __melon_meta WHERE key = 'jwt_secret')`).Scan(&h.PurgedThrough, &sv, &secret)
	if err != nil {
		return wrap("export", err)
	}
	h.SchemaVersion = sch.Version
	if sv != nil {
		n, _ := strconv.Atoi(*sv)
		h.SchemaVersion = max(n, sch.Version)
	}
	if err := emit(h); err != nil {
		return err
	}
	if opts.Secret && secret != nil {
		if err := emit(&server.DumpEntry{Kind: server.DumpSecret, Secret: *secret}); err != nil {
			return err
		}
	}
	end := &server.DumpEntry{Kind: server.DumpEnd}
	for _, t := range sch.Tables {
		n, err := s.exportTable(ctx, tx, t, emit)
		if err != nil {
			return err
		}
		end.Records += n
	}
	books, err := s.bookkeepingTables(ctx, tx)
	if err != nil {
		return wrap("export", err)
	}
	for _, b := range books {
		rows, err := tx.Query(ctx, `SELECT row_to_json(x)::text FROM `+quoteIdent(b)+` x`)
		if err != nil {
			return wrap("export "+b, err)
		}
		for rows.Next() {
			var raw string
			if err := rows.Scan(&raw); err != nil {
				rows.Close()
				return wrap("export "+b, err)
			}
			dec := json.NewDecoder(strings.NewReader(raw))
			dec.UseNumber()
			e := &server.DumpEntry{Kind: server.DumpBookkeeping, Table: b}
			if err := dec.Decode(&e.Row); err != nil {
				rows.Close()
				return fmt.Errorf("postgres: export %s: %w", b, err)
			}
			if err := emit(e); err != nil {
				rows.Close()
				return err
			}
			end.Bookkeeping++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return wrap("export "+b, err)
		}
	}
	return emit(end)
}

func (s *Store) exportTable(ctx context.Context, tx pgx.Tx, t *schema.Table, emit func(*server.DumpEntry) error) (int64, error) {
	var b strings.Builder
	b.WriteString(`SELECT id, __owner, __version, __created_version, __created_device, __device`)
	for _, c := range t.Columns {
		b.WriteString(`, ` + quoteIdent(c.Name) + `::` + sqlType(c.Type))
	}
	b.WriteString(` FROM ` + quoteIdent(t.Name))
	rows, err := tx.Query(ctx, b.String())
	if err != nil {
		return 0, wrap("export "+t.Name, err)
	}
	var n int64
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			rows.Close()
			return n, wrap("export "+t.Name, err)
		}
		e := &server.DumpEntry{Kind: server.DumpRecord, Table: t.Name, ID: vals[0].(string), Owner: vals[1].(string),
			RecordVersion: vals[2].(int64), CreatedVersion: vals[3].(int64), CreatedDevice: vals[4].(string), Device: vals[5].(string),
			Values: make(map[string]any, len(t.Columns))}
		for i, c := range t.Columns {
			e.Values[c.Name] = vals[6+i]
		}
		if err := emit(e); err != nil {
			rows.Close()
			return n, err
		}
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return n, wrap("export "+t.Name, err)
	}
	grp, usr := keptColumns(t)
	rows, err = tx.Query(ctx, `SELECT id, owner, version, created_version, created_device, device, grp, usr FROM __melon_tombstones WHERE tbl = $1`, t.Name)
	if err != nil {
		return n, wrap("export "+t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		e := &server.DumpEntry{Kind: server.DumpRecord, Table: t.Name, Deleted: true, Values: map[string]any{}}
		var g, u string
		if err := rows.Scan(&e.ID, &e.Owner, &e.RecordVersion, &e.CreatedVersion, &e.CreatedDevice, &e.Device, &g, &u); err != nil {
			return n, wrap("export "+t.Name, err)
		}
		if grp != "" {
			e.Values[grp] = g
		}
		if usr != "" {
			e.Values[usr] = u
		}
		if err := emit(e); err != nil {
			return n, err
		}
		n++
	}
	return n, wrap("export "+t.Name, rows.Err())
}

// copyBatch is how many records Import sends in one COPY.
const copyBatch = 10000

// Import writes an export into the store, which must be prepared for sch and empty
// (see server.Dumper), in one transaction with melonsync's triggers off on the
// tables it fills (the export carries every version as it was).
func (s *Store) Import(ctx context.Context, sch *schema.Schema, next func() (*server.DumpEntry, error)) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('statement_timeout', '0', true)`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('melonsync:migrate:' || $1, 0))`, s.schema); err != nil {
			return err
		}
		books, err := s.bookkeepingTables(ctx, tx)
		if err != nil {
			return err
		}
		filled := append(append(tableNames(sch), "__melon_tombstones"), books...)
		for _, name := range filled {
			var any bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+quoteIdent(name)+`)`).Scan(&any); err != nil {
				return err
			}
			if any {
				return fmt.Errorf("%w (%s has rows)", server.ErrNotEmpty, name)
			}
		}
		for _, name := range filled {
			if _, err := tx.Exec(ctx, `ALTER TABLE `+quoteIdent(name)+` DISABLE TRIGGER USER`); err != nil {
				return err
			}
		}
		header, err := s.importEntries(ctx, tx, sch, next)
		if err != nil {
			return err
		}
		for _, name := range filled {
			if _, err := tx.Exec(ctx, `ALTER TABLE `+quoteIdent(name)+` ENABLE TRIGGER USER`); err != nil {
				return err
			}
		}
		return s.importClock(ctx, tx, header, books)
	})
	if errors.Is(err, server.ErrNotEmpty) {
		return fmt.Errorf("postgres: import: %w", err)
	}
	return wrap("import", err)
}

func tableNames(sch *schema.Schema) []string {
	out := make([]string, len(sch.Tables))
	for i, t := range sch.Tables {
		out[i] = t.Name
	}
	return out
}

// importEntries reads the export and COPYs its records in batches.
func (s *Store) importEntries(ctx context.Context, tx pgx.Tx, sch *schema.Schema, next func() (*server.DumpEntry, error)) (*server.DumpEntry, error) {
	var header *server.DumpEntry
	var live [][]any
	var dead [][]any
	var cur *schema.Table
	flush := func() error {
		if len(live) > 0 {
			cols := []string{"id", "__owner", "__version", "__created_version", "__created_device", "__device"}
			for _, c := range cur.Columns {
				cols = append(cols, c.Name)
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{cur.Name}, cols, pgx.CopyFromRows(live)); err != nil {
				return fmt.Errorf("%s: %w", cur.Name, err)
			}
			live = live[:0]
		}
		if len(dead) > 0 {
			cols := []string{"tbl", "id", "owner", "version", "created_version", "created_device", "device", "grp", "usr"}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"__melon_tombstones"}, cols, pgx.CopyFromRows(dead)); err != nil {
				return fmt.Errorf("%s tombstones: %w", cur.Name, err)
			}
			dead = dead[:0]
		}
		return nil
	}
	for {
		e, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch e.Kind {
		case server.DumpHeader:
			header = e
		case server.DumpSecret:
			if _, err := hex.DecodeString(e.Secret); err != nil {
				return nil, errors.New("the secret is not hex")
			}
			if _, err := tx.Exec(ctx, `INSERT INTO __melon_meta (key, value) VALUES ('jwt_secret', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, e.Secret); err != nil {
				return nil, err
			}
		case server.DumpRecord:
			t := sch.Table(e.Table)
			if t == nil {
				return nil, fmt.Errorf("table %s of the export is not in the schema", e.Table)
			}
			if t != cur || len(live)+len(dead) >= copyBatch {
				if err := flush(); err != nil {
					return nil, err
				}
				cur = t
			}
			if e.Deleted {
				grp, usr := keptColumns(t)
				g, _ := e.Values[grp].(string)
				u, _ := e.Values[usr].(string)
				dead = append(dead, []any{t.Name, e.ID, e.Owner, e.RecordVersion, e.CreatedVersion, e.CreatedDevice, e.Device, g, u})
				continue
			}
			row := []any{e.ID, e.Owner, e.RecordVersion, e.CreatedVersion, e.CreatedDevice, e.Device}
			for _, c := range t.Columns {
				row = append(row, importValue(c, e.Values))
			}
			live = append(live, row)
		case server.DumpBookkeeping:
			if err := flush(); err != nil {
				return nil, err
			}
			if internalTables[e.Table] || !strings.HasPrefix(e.Table, "__melon_") {
				return nil, fmt.Errorf("%q is not a bookkeeping table", e.Table)
			}
			b, _ := json.Marshal(e.Row)
			rel := quoteIdent(e.Table)
			if _, err := tx.Exec(ctx, `INSERT INTO `+rel+` OVERRIDING SYSTEM VALUE SELECT * FROM json_populate_record(NULL::`+rel+`, $1::json)`, string(b)); err != nil {
				return nil, fmt.Errorf("%s: %w (does this store have that table? import with the melonsync that exported)", e.Table, err)
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if header == nil {
		return nil, errors.New("the export has no header")
	}
	return header, nil
}

// importValue is a record's value for column c as COPY wants it (nil for NULL).
func importValue(c schema.Column, values map[string]any) any {
	v, ok := values[c.Name]
	if !ok {
		v = c.Default()
	}
	switch c.Type {
	case schema.Number:
		switch x := v.(type) {
		case int64:
			return float64(x)
		case float64:
			return x
		}
		return nil
	case schema.Boolean:
		switch x := v.(type) {
		case bool:
			return x
		case int64:
			return x != 0
		}
		return nil
	default:
		if x, ok := v.(string); ok {
			return x
		}
		return nil
	}
}

// importClock carries the export's clock, purge horizon and schema version over, and
// moves the sequences of bookkeeping tables past the rows imported.
func (s *Store) importClock(ctx context.Context, tx pgx.Tx, h *server.DumpEntry, books []string) error {
	stmts := []struct {
		q    string
		args []any
	}{
		// The store was empty: its own starting clock was never seen by anyone with
		// data, so the export's clock replaces it and pulls answer as before the move.
		{`SELECT setval('__melon_version_seq', $1)`, []any{h.Clock}},
		{`UPDATE __melon_meta SET value = greatest(value::bigint, $1)::text WHERE key = 'purged_through'`, []any{h.PurgedThrough}},
		{`INSERT INTO __melon_meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = greatest(__melon_meta.value::int, excluded.value::int)::text`, []any{strconv.Itoa(h.SchemaVersion)}},
	}
	for _, st := range stmts {
		if _, err := tx.Exec(ctx, st.q, st.args...); err != nil {
			return err
		}
	}
	for _, b := range books {
		rows, err := tx.Query(ctx, `SELECT a.attname::text, pg_get_serial_sequence($1, a.attname) FROM pg_attribute a
			WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND pg_get_serial_sequence($1, a.attname) IS NOT NULL`,
			quoteIdent(s.schema)+"."+quoteIdent(b))
		if err != nil {
			return err
		}
		type seq struct{ col, seq string }
		seqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (seq, error) {
			var x seq
			return x, r.Scan(&x.col, &x.seq)
		})
		if err != nil {
			return err
		}
		for _, sq := range seqs {
			if _, err := tx.Exec(ctx, `SELECT setval($1, m) FROM (SELECT max(`+quoteIdent(sq.col)+`) AS m FROM `+quoteIdent(b)+`) x WHERE m IS NOT NULL`, sq.seq); err != nil {
				return err
			}
		}
	}
	return nil
}
