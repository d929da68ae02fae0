package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/melonsync/melonsync/server"
)

// LoadSecret reads the JWT secret kept in the store at dsn (its search_path decides
// the schema) without creating or changing anything: it fails with server.ErrNoStore
// when that schema holds no melonsync store, and with server.ErrNoSecret when no
// server generated the secret yet. Connection failures wrap melonsync.ErrUnavailable.
func LoadSecret(ctx context.Context, dsn string) ([]byte, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, wrap("connect", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	err = conn.QueryRow(ctx, `SELECT value FROM __melon_meta WHERE key = 'jwt_secret'`).Scan(&v)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		return nil, server.ErrNoStore
	case errors.Is(err, pgx.ErrNoRows):
		return nil, server.ErrNoSecret
	case err != nil:
		return nil, wrap("secret", err)
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("postgres: secret: %w", err)
	}
	return b, nil
}
