package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/sqlite"
)

// runToken prints a bearer token for a user, signed with the server's secret
// (MELONSYNC_JWT_SECRET, or the one kept in the store named by --db).
func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "melonsync token --user ID [flags]",
		"Prints a development bearer token for user ID, signed with the server's secret\n($MELONSYNC_JWT_SECRET, or the one kept in the store named by --db). It never\ncreates a store or a secret: start melonsync serve on the store once first.")
	user := fs.String("user", "", "user id (the token's sub claim); required")
	db := fs.String("db", "./melonsync.db", "the server's store: a SQLite file path or a postgres:// URL")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		fs.Usage()
		return fmt.Errorf("token: --user is required")
	}
	if *ttl <= 0 {
		return fmt.Errorf("token: --ttl must be positive")
	}
	secret, err := loadSecret(ctx, *db)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	auth, err := mhttp.NewAuth(secret)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	tok, err := auth.Mint(*user, *ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// loadSecret returns MELONSYNC_JWT_SECRET or the secret kept in the store named by
// db. It never creates a store or a secret: a token signed with a secret the server
// does not use would be refused (401).
func loadSecret(ctx context.Context, db string) ([]byte, error) {
	if s := getenv("MELONSYNC_JWT_SECRET"); s != "" {
		return []byte(s), nil
	}
	var secret []byte
	var err error
	if isPostgres(db) {
		secret, err = postgres.LoadSecret(ctx, db)
	} else {
		secret, err = sqlite.LoadSecret(ctx, db)
	}
	if err != nil {
		return nil, fmt.Errorf("--db %s: %w", redact(db), err)
	}
	return secret, nil
}
