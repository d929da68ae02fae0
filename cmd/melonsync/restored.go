package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// runRestored is "melonsync restored": after a store was restored from a backup,
// every device must replace its data on its next pull (see docs/operations.md,
// "Restoring a backup").
func runRestored(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restored", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "melonsync restored --db STORE [flags]",
		"Marks a store just restored from a backup: its clock moves past every timestamp\nthe lost history handed out and every device's next pull is a replacement sync,\nwhenever it last synced. Servers do the same by themselves for the devices that\nsynced after the backup was taken (docs/operations.md, \"Restoring a backup\");\nuse this when other programs wrote the restored store first, or the clock was set\nback. Run it with every server stopped, before starting them again.")
	db := fs.String("db", "./melonsync.db", "the restored store: a SQLite file path or a postgres:// URL")
	margin := fs.Duration("margin", time.Minute, "how far past now the clock moves (timestamps may run slightly ahead of the wall clock)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *margin < 0 {
		return fmt.Errorf("restored: --margin must not be negative")
	}
	if !isPostgres(*db) {
		if _, err := os.Stat(*db); err != nil {
			return fmt.Errorf("restored: --db %s: %w", *db, err)
		}
	}
	store, err := openStore(*db, 0)
	if err != nil {
		return fmt.Errorf("restored: %w", err)
	}
	defer store.Close()
	m, ok := store.(interface {
		MarkRestored(context.Context, time.Duration) (int64, error)
	})
	if !ok {
		return fmt.Errorf("restored: this store cannot be marked")
	}
	clock, err := m.MarkRestored(ctx, *margin)
	if err != nil {
		return fmt.Errorf("restored: %w", err)
	}
	fmt.Fprintf(stdout, "marked as restored: clock %d; every device's next pull is a replacement sync\n", clock)
	return nil
}
