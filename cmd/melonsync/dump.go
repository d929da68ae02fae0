package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// progressEvery is how many records go by between two progress lines on stderr.
const progressEvery = 50000

// schemaFlags are the flags that name the app schema, as serve takes them.
type schemaFlags struct{ schema, migrations, access string }

func (f *schemaFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.schema, "schema", "", "the schema JSON file the server runs with; required")
	fs.StringVar(&f.migrations, "migrations", "", "migrations JSON file (else the schema file's \"migrations\" key)")
	fs.StringVar(&f.access, "access", "", "access rules JSON file (else the schema file's \"access\" key)")
}

func (f *schemaFlags) load() (*schema.Schema, error) {
	if f.schema == "" {
		return nil, errors.New("--schema is required (the schema file the server runs with)")
	}
	sch, err := schema.LoadWithMigrations(f.schema, f.migrations)
	if err != nil {
		return nil, err
	}
	if f.access != "" {
		if err := sch.LoadAccess(f.access); err != nil {
			return nil, err
		}
	}
	return sch, nil
}

// openDumper opens and prepares the store named by db for sch.
func openDumper(ctx context.Context, db string, sch *schema.Schema) (server.Store, server.Dumper, error) {
	store, err := openStore(db, 0)
	if err != nil {
		return nil, nil, err
	}
	d, ok := store.(server.Dumper)
	if !ok {
		store.Close()
		return nil, nil, fmt.Errorf("--db %s: this store cannot export or import", redact(db))
	}
	if err := store.Prepare(ctx, sch); err != nil {
		store.Close()
		return nil, nil, err
	}
	return store, d, nil
}

// runExport is "melonsync export": the whole store, from one snapshot, as
// newline-delimited JSON on stdout (or --out).
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "melonsync export --schema FILE [--db ./melonsync.db] [--out FILE] [--with-secret]",
		"Writes the whole store — every record of every table with its owner, versions and\ndevices, the tombstones, the clock and melonsync's bookkeeping — from one consistent\nsnapshot, as newline-delimited JSON (docs/operations.md). Progress goes to stderr.\nThe JWT secret is left out unless --with-secret is given.")
	var sf schemaFlags
	sf.register(fs)
	db := fs.String("db", "./melonsync.db", "the store: a SQLite file path or a postgres:// URL")
	out := fs.String("out", "-", "where to write the export (-: stdout)")
	secret := fs.Bool("with-secret", false, "include the JWT signing secret (tokens minted for the old store keep working); keep such a file secret")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sch, err := sf.load()
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if !isPostgres(*db) {
		if _, err := os.Stat(*db); err != nil {
			return fmt.Errorf("export: --db %s: %w", *db, server.ErrNoStore)
		}
	}
	store, d, err := openDumper(ctx, *db, sch)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer store.Close()
	w := stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer f.Close()
		w = f
	}
	enc := server.NewDumpEncoder(w)
	start := time.Now()
	var n int64
	var end *server.DumpEntry
	err = d.Export(ctx, sch, server.ExportOptions{Secret: *secret}, func(e *server.DumpEntry) error {
		if e.Kind == server.DumpRecord {
			if n++; n%progressEvery == 0 {
				fmt.Fprintf(stderr, "export: %d records…\n", n)
			}
		}
		if e.Kind == server.DumpEnd {
			end = e
		}
		return enc.Encode(e)
	})
	if err == nil {
		err = enc.Flush()
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(stderr, "export: %d records and %d bookkeeping rows in %s\n", end.Records, end.Bookkeeping, time.Since(start).Round(time.Millisecond))
	return nil
}

// runImport is "melonsync import": an export into a new, empty store.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "melonsync import --schema FILE --db STORE [--in FILE]",
		"Reads an export (melonsync export) into a new store of either kind, in one\ntransaction: a store that holds records already is refused. Clients keep syncing\nincrementally against the new store. Progress goes to stderr.")
	var sf schemaFlags
	sf.register(fs)
	db := fs.String("db", "", "the new store: a SQLite file path or a postgres:// URL; required")
	in := fs.String("in", "-", "the export to read (-: stdin)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *db == "" {
		fs.Usage()
		return errors.New("import: --db is required")
	}
	sch, err := sf.load()
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	var r io.Reader = os.Stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		r = f
	}
	store, d, err := openDumper(ctx, *db, sch)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer store.Close()
	dec := server.NewDumpDecoder(r)
	start := time.Now()
	var n, books int64
	err = d.Import(ctx, sch, func() (*server.DumpEntry, error) {
		e, err := dec.Next()
		if err == nil && e.Kind == server.DumpRecord {
			if n++; n%progressEvery == 0 {
				fmt.Fprintf(stderr, "import: %d records…\n", n)
			}
		}
		if err == nil && e.Kind == server.DumpBookkeeping {
			books++
		}
		if err == nil && e.Kind == server.DumpEnd && (e.Records != n || e.Bookkeeping != books) {
			return nil, fmt.Errorf("the export's end line counts %d records and %d bookkeeping rows, but it holds %d and %d", e.Records, e.Bookkeeping, n, books)
		}
		return e, err
	})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	fmt.Fprintf(stderr, "import: %d records and %d bookkeeping rows in %s\n", n, books, time.Since(start).Round(time.Millisecond))
	return nil
}
