package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/melonsync/melonsync/client"
	"github.com/melonsync/melonsync/schema"
)

const clientUsage = `melonsync client — a local WatermelonDB-style database driven from the shell.

Usage:
  melonsync client init   --schema FILE [--migrations FILE]
  melonsync client create TABLE k=v… [--id ID]          prints the new id
  melonsync client update TABLE ID k=v…
  melonsync client delete TABLE ID
  melonsync client list   TABLE [--where k=v]…
  melonsync client sync   --url URL --token TOKEN [--device ID]
  melonsync client status
  melonsync client watch  --url URL --token TOKEN [--device ID] [--interval 5m] [--debounce 2s]

Every command takes --db FILE (default ./melonsync-client.db) and --json (output for
scripts). Values in k=v are parsed by the column's type: numbers, booleans
(true/false/1/0), strings as given; "null" sets an optional column to null.
--url and --token default to $MELONSYNC_URL and $MELONSYNC_TOKEN.
`

// Local storage keys where "client init" keeps the schema, so that later commands
// need no --schema.
const (
	keySchema     = "__melonsync_cli_schema"
	keyMigrations = "__melonsync_cli_migrations"
	keyLastSync   = "__melonsync_cli_last_sync"
)

const defaultClientDB = "./melonsync-client.db"

// runClient runs "melonsync client …".
func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, clientUsage)
		return errors.New("client: no command given")
	}
	c := &clientCmd{ctx: ctx, stdout: stdout, stderr: stderr}
	switch args[0] {
	case "init":
		return c.init(args[1:])
	case "create":
		return c.create(args[1:])
	case "update":
		return c.update(args[1:])
	case "delete":
		return c.delete(args[1:])
	case "list":
		return c.list(args[1:])
	case "sync":
		return c.sync(args[1:])
	case "status":
		return c.status(args[1:])
	case "watch":
		return c.watch(args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(stdout, clientUsage)
		return nil
	default:
		fmt.Fprint(stderr, clientUsage)
		return fmt.Errorf("client: unknown command %q", args[0])
	}
}

type clientCmd struct {
	ctx            context.Context
	stdout, stderr io.Writer
	dbPath         string
	json           bool
}

// flags returns a flag set with the common --db and --json flags.
func (c *clientCmd) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("client "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.dbPath, "db", defaultClientDB, "the local database file")
	fs.BoolVar(&c.json, "json", false, "print JSON for scripts")
	return fs
}

// parse parses flags anywhere among the arguments ("create tasks name=x --id t1")
// and returns the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// loadSchemaFiles reads a schema file and optional migrations file, returning the
// parsed schema and the raw texts to keep.
func loadSchemaFiles(schemaPath, migrationsPath string) (*schema.Schema, []byte, []byte, error) {
	sdata, err := os.ReadFile(schemaPath)
	if err != nil {
		return nil, nil, nil, err
	}
	var mdata []byte
	if migrationsPath != "" {
		if mdata, err = os.ReadFile(migrationsPath); err != nil {
			return nil, nil, nil, err
		}
	}
	s, err := parseSchema(sdata, mdata)
	if err != nil {
		return nil, nil, nil, err
	}
	return s, sdata, mdata, nil
}

func parseSchema(sdata, mdata []byte) (*schema.Schema, error) {
	s, err := schema.Parse(sdata)
	if err != nil {
		return nil, err
	}
	if len(mdata) > 0 {
		m, err := schema.ParseMigrations(mdata)
		if err != nil {
			return nil, err
		}
		if err := s.SetMigrations(m); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (c *clientCmd) init(args []string) error {
	fs := c.flags("init")
	schemaPath := fs.String("schema", "", "schema JSON file (WatermelonDB appSchema output or the hand-written form); required")
	migrationsPath := fs.String("migrations", "", "migrations JSON file (else the schema file's \"migrations\" key)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("client init: unexpected argument %q", pos[0])
	}
	if *schemaPath == "" {
		fs.Usage()
		return errors.New("client init: --schema is required")
	}
	s, sdata, mdata, err := loadSchemaFiles(*schemaPath, *migrationsPath)
	if err != nil {
		return fmt.Errorf("client init: %w", err)
	}
	existed := fileExists(c.dbPath)
	db, err := client.Open(c.dbPath, s)
	if err != nil {
		return fmt.Errorf("client init: %w", err)
	}
	defer db.Close()
	err = db.Write(c.ctx, func(tx *client.Tx) error {
		if err := tx.SetLocal(keySchema, string(sdata)); err != nil {
			return err
		}
		if len(mdata) > 0 {
			return tx.SetLocal(keyMigrations, string(mdata))
		}
		return tx.RemoveLocal(keyMigrations)
	})
	if err != nil {
		return fmt.Errorf("client init: %w", err)
	}
	device, err := client.DeviceID(c.ctx, db)
	if err != nil {
		return fmt.Errorf("client init: %w", err)
	}
	verb := "created"
	if existed {
		verb = "updated"
	}
	if c.json {
		return writeJSON(c.stdout, map[string]any{"db": c.dbPath, "created": !existed, "schemaVersion": s.Version, "tables": len(s.Tables), "device": device})
	}
	fmt.Fprintf(c.stdout, "%s %s: schema version %d, %d table(s), device %s\n", verb, c.dbPath, s.Version, len(s.Tables), device)
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// open opens the database created by "client init", with the schema kept in it.
func (c *clientCmd) open() (*client.DB, error) {
	if !fileExists(c.dbPath) {
		return nil, fmt.Errorf("no client database at %s; run \"melonsync client init --schema FILE\" first", c.dbPath)
	}
	sdata, mdata, err := readStoredSchema(c.ctx, c.dbPath)
	if err != nil {
		return nil, err
	}
	s, err := parseSchema(sdata, mdata)
	if err != nil {
		return nil, fmt.Errorf("the schema kept in %s: %w", c.dbPath, err)
	}
	return client.Open(c.dbPath, s)
}

// readStoredSchema reads the schema texts "client init" kept in the file's local
// storage, without opening the database (which needs the schema).
func readStoredSchema(ctx context.Context, path string) (sdata, mdata []byte, err error) {
	u := url.URL{Scheme: "file", Opaque: strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path), RawQuery: "mode=ro&_pragma=busy_timeout(5000)"}
	sq, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, nil, err
	}
	defer sq.Close()
	var s, m sql.NullString
	err = sq.QueryRowContext(ctx, `select "value" from "local_storage" where "key" = ?`, keySchema).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) || (err != nil && strings.Contains(err.Error(), "no such table")) {
		return nil, nil, fmt.Errorf("%s was not set up by \"melonsync client init\" (no schema kept in it); run init with --schema", path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	err = sq.QueryRowContext(ctx, `select "value" from "local_storage" where "key" = ?`, keyMigrations).Scan(&m)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	if m.Valid {
		mdata = []byte(m.String)
	}
	return []byte(s.String), mdata, nil
}

// parseValues parses k=v arguments by the columns' types.
func parseValues(t *schema.Table, args []string) (map[string]any, error) {
	out := make(map[string]any, len(args))
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not k=v", a)
		}
		col := t.Column(k)
		if col == nil {
			return nil, fmt.Errorf("table %q has no column %q (columns: %s)", t.Name, k, columnList(t))
		}
		val, err := parseValue(col, v)
		if err != nil {
			return nil, err
		}
		out[k] = val
	}
	return out, nil
}

func parseValue(col *schema.Column, v string) (any, error) {
	if v == "null" && col.IsOptional {
		return nil, nil
	}
	switch col.Type {
	case schema.Number:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("column %q is a number; %q is not", col.Name, v)
		}
		return f, nil
	case schema.Boolean:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("column %q is a boolean (true/false/1/0); %q is not", col.Name, v)
		}
		return b, nil
	default:
		return v, nil
	}
}

func columnList(t *schema.Table) string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

func tableOf(db *client.DB, name string) (*schema.Table, error) {
	t := db.Schema().Table(name)
	if t == nil {
		var names []string
		for _, t := range db.Schema().Tables {
			names = append(names, t.Name)
		}
		return nil, fmt.Errorf("no table %q (tables: %s)", name, strings.Join(names, ", "))
	}
	return t, nil
}

func (c *clientCmd) create(args []string) error {
	fs := c.flags("create")
	id := fs.String("id", "", "the new record's id (default: a random WatermelonDB-style id)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 {
		return errors.New("client create: usage: create TABLE k=v… [--id ID]")
	}
	db, err := c.open()
	if err != nil {
		return fmt.Errorf("client create: %w", err)
	}
	defer db.Close()
	t, err := tableOf(db, pos[0])
	if err != nil {
		return fmt.Errorf("client create: %w", err)
	}
	values, err := parseValues(t, pos[1:])
	if err != nil {
		return fmt.Errorf("client create: %w", err)
	}
	if *id != "" {
		values["id"] = *id
	}
	var rec client.Record
	err = db.Write(c.ctx, func(tx *client.Tx) error {
		rec, err = tx.Create(t.Name, values)
		return err
	})
	if err != nil {
		return fmt.Errorf("client create: %w", err)
	}
	if c.json {
		return writeJSON(c.stdout, rec)
	}
	fmt.Fprintln(c.stdout, rec["id"])
	return nil
}

func (c *clientCmd) update(args []string) error {
	fs := c.flags("update")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 3 {
		return errors.New("client update: usage: update TABLE ID k=v…")
	}
	db, err := c.open()
	if err != nil {
		return fmt.Errorf("client update: %w", err)
	}
	defer db.Close()
	t, err := tableOf(db, pos[0])
	if err != nil {
		return fmt.Errorf("client update: %w", err)
	}
	values, err := parseValues(t, pos[2:])
	if err != nil {
		return fmt.Errorf("client update: %w", err)
	}
	var rec client.Record
	err = db.Write(c.ctx, func(tx *client.Tx) error {
		if err := tx.Update(t.Name, pos[1], values); err != nil {
			return err
		}
		rec, err = tx.Find(t.Name, pos[1])
		return err
	})
	if err != nil {
		return fmt.Errorf("client update: %w", err)
	}
	if c.json {
		return writeJSON(c.stdout, rec)
	}
	fmt.Fprintf(c.stdout, "updated %s#%s\n", t.Name, pos[1])
	return nil
}

func (c *clientCmd) delete(args []string) error {
	fs := c.flags("delete")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return errors.New("client delete: usage: delete TABLE ID")
	}
	db, err := c.open()
	if err != nil {
		return fmt.Errorf("client delete: %w", err)
	}
	defer db.Close()
	t, err := tableOf(db, pos[0])
	if err != nil {
		return fmt.Errorf("client delete: %w", err)
	}
	err = db.Write(c.ctx, func(tx *client.Tx) error { return tx.MarkAsDeleted(t.Name, pos[1]) })
	if err != nil {
		return fmt.Errorf("client delete: %w", err)
	}
	if c.json {
		return writeJSON(c.stdout, map[string]any{"table": t.Name, "id": pos[1], "deleted": true})
	}
	fmt.Fprintf(c.stdout, "deleted %s#%s (pushed at the next sync)\n", t.Name, pos[1])
	return nil
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func (c *clientCmd) list(args []string) error {
	fs := c.flags("list")
	var where multiFlag
	fs.Var(&where, "where", "k=v: only records whose column k equals v (repeatable: all must hold)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("client list: usage: list TABLE [--where k=v]…")
	}
	db, err := c.open()
	if err != nil {
		return fmt.Errorf("client list: %w", err)
	}
	defer db.Close()
	t, err := tableOf(db, pos[0])
	if err != nil {
		return fmt.Errorf("client list: %w", err)
	}
	conds, err := parseValues(t, where)
	if err != nil {
		return fmt.Errorf("client list: --where: %w", err)
	}
	var cs []client.Condition
	for _, col := range t.Columns {
		if v, ok := conds[col.Name]; ok {
			cs = append(cs, client.Eq(col.Name, v))
		}
	}
	var recs []client.Record
	err = db.Read(c.ctx, func(tx *client.Tx) error {
		recs, err = tx.Query(t.Name, client.Where(cs...))
		return err
	})
	if err != nil {
		return fmt.Errorf("client list: %w", err)
	}
	if c.json {
		if recs == nil {
			recs = []client.Record{}
		}
		return writeJSON(c.stdout, recs)
	}
	printTable(c.stdout, t, recs)
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
