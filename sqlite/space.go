package sqlite

import (
	"context"
	"errors"
	"fmt"

	sqlite3 "modernc.org/sqlite"

	"github.com/melonsync/melonsync"
)

// SQLite result codes that mean the disk (or the file's max_page_count) is full.
const (
	sqliteFull         = 13             // SQLITE_FULL: a write found no room (the unix VFS's ENOSPC)
	sqliteIOErrShmSize = 10 | (19 << 8) // SQLITE_IOERR_SHMSIZE: the -shm file could not grow
)

// isFull tells an error of SQLite's meaning there is no room left to write. SQLite
// rolls the statement or the whole transaction back on it; the store rolls the rest
// back. (Errors of the caller's own, such as a pull's spool hitting ENOSPC inside
// Read, are not the store's and stay as they are.)
func isFull(err error) bool {
	var se *sqlite3.Error
	return errors.As(err, &se) && (se.Code()&0xff == sqliteFull || se.Code() == sqliteIOErrShmSize)
}

// classify wraps an error meaning the disk is full with melonsync.ErrStorageFull
// (507 storage_full), and returns any other error as it is.
func classify(err error) error {
	if err == nil || errors.Is(err, melonsync.ErrStorageFull) || !isFull(err) {
		return err
	}
	return fmt.Errorf("%w: %w", melonsync.ErrStorageFull, err)
}

// probeSize is what ProbeSpace writes: enough to need new pages in the file and
// frames in the WAL.
const probeSize = 64 << 10

// ProbeSpace checks with a small real write that the store has room to write again:
// it writes probeSize bytes into __melon_meta and removes them, in two committed
// transactions. Errors: melonsync.ErrStorageFull when the disk is still full.
func (s *Store) ProbeSpace(ctx context.Context) error {
	_, err := s.writer.ExecContext(ctx, `INSERT OR REPLACE INTO "__melon_meta" ("key", "value") VALUES ('space_probe', hex(randomblob(?)))`, probeSize/2)
	if err == nil {
		_, err = s.writer.ExecContext(ctx, `DELETE FROM "__melon_meta" WHERE "key" = 'space_probe'`)
	}
	if err != nil {
		return classify(fmt.Errorf("sqlite: probe space: %w", err))
	}
	return nil
}
