package postgres

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/melonsync/melonsync"
)

// TestWrapDiskFull: disk_full (53100) is storage full, not a 503; the other
// insufficient-resources errors stay unavailable. (The real thing, a tablespace on a
// full file system, is TestFullDiskAnswers507 in package http.)
func TestWrapDiskFull(t *testing.T) {
	full := wrap("push", &pgconn.PgError{Code: "53100", Message: `could not extend file "base/1/2": No space left on device`})
	if !errors.Is(full, melonsync.ErrStorageFull) || errors.Is(full, melonsync.ErrUnavailable) {
		t.Errorf("53100: %v; want ErrStorageFull only", full)
	}
	for _, code := range []string{"53200", "53300", "53400"} {
		err := wrap("push", &pgconn.PgError{Code: code})
		if errors.Is(err, melonsync.ErrStorageFull) || !errors.Is(err, melonsync.ErrUnavailable) {
			t.Errorf("%s: %v; want ErrUnavailable", code, err)
		}
	}
}
