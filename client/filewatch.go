package client

import (
	"context"
	"fmt"
	"time"
)

// DefaultFilePoll is how often a Scheduler checks whether another process wrote the
// database file.
const DefaultFilePoll = time.Second

// WatchFile calls changed whenever a transaction committed to the database file by
// any connection — another process (a WatermelonDB app, another melonsync client, a
// script with plain SQL) or this DB — since the last check, checking every poll.
// It uses SQLite's PRAGMA data_version on one connection of its own, which costs a
// single cheap statement per check and no file reads. It returns when ctx ends.
func (db *DB) WatchFile(ctx context.Context, poll time.Duration, changed func()) error {
	conn, err := db.reader.Conn(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch file: %w", err)
	}
	defer conn.Close()
	version := func() (int64, error) {
		var v int64
		err := conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v)
		return v, err
	}
	last, err := version()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch file: %w", err)
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-db.closing:
			return nil
		case <-t.C:
		}
		v, err := version()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch file: %w", err)
		}
		if v != last {
			last = v
			changed()
		}
	}
}
