package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/melonsync/melonsync/server"
)

// LoadSecret reads the JWT secret kept in the store file at path without creating or
// changing anything: it fails with server.ErrNoStore when there is no file or it is
// not a melonsync store, and with server.ErrNoSecret when no server generated the
// secret yet.
func LoadSecret(ctx context.Context, path string) ([]byte, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", path, server.ErrNoStore)
		}
		return nil, err
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var isStore bool
	if err := db.QueryRowContext(ctx, `SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = '__melon_meta'`).Scan(&isStore); err != nil {
		return nil, fmt.Errorf("%s: %w (%v)", path, server.ErrNoStore, err)
	}
	if !isStore {
		return nil, fmt.Errorf("%s: %w", path, server.ErrNoStore)
	}
	var v string
	err = db.QueryRowContext(ctx, `SELECT "value" FROM "__melon_meta" WHERE "key" = 'jwt_secret'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: %w", path, server.ErrNoSecret)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return hex.DecodeString(v)
}
