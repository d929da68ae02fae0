package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
)

func mintToken(args ...string) (string, error) {
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"token", "--user", "alice"}, args...), &out, &bytes.Buffer{})
	return strings.TrimSpace(out.String()), err
}

// TestTokenNeverMintsFromAFreshSecret: a missing store, a file that is not a store
// and a store without a secret are refused, nothing is created, and a token signed
// with the store's secret (or MELONSYNC_JWT_SECRET) is what the server accepts.
func TestTokenNeverMintsFromAFreshSecret(t *testing.T) {
	t.Setenv("MELONSYNC_JWT_SECRET", "")
	dir := t.TempDir()
	t.Chdir(dir)

	// No --db: the default ./melonsync.db does not exist.
	if _, err := mintToken(); !errors.Is(err, server.ErrNoStore) {
		t.Errorf("missing default store: want ErrNoStore, got %v", err)
	}
	missing := filepath.Join(dir, "typo.db")
	if _, err := mintToken("--db", missing); !errors.Is(err, server.ErrNoStore) {
		t.Errorf("missing store: want ErrNoStore, got %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("token left files behind: %v", entries)
	}
	// A file that is not a melonsync store stays untouched.
	other := filepath.Join(dir, "notes.txt")
	os.WriteFile(other, []byte("hello"), 0o644)
	if _, err := mintToken("--db", other); !errors.Is(err, server.ErrNoStore) {
		t.Errorf("not a store: want ErrNoStore, got %v", err)
	}
	if b, _ := os.ReadFile(other); string(b) != "hello" {
		t.Errorf("the file was changed: %q", b)
	}

	// A store no server has started on has no secret yet.
	db := filepath.Join(dir, "melonsync.db")
	st, err := sqlite.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mintToken("--db", db); !errors.Is(err, server.ErrNoSecret) {
		t.Errorf("store without a secret: want ErrNoSecret, got %v", err)
	}
	secret, err := st.Secret(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	tok, err := mintToken("--db", db)
	if err != nil {
		t.Fatal(err)
	}
	auth, _ := mhttp.NewAuth(secret)
	if user, err := auth.Verify("Bearer " + tok); err != nil || user != "alice" {
		t.Errorf("token from the store's secret: %q %v", user, err)
	}

	// MELONSYNC_JWT_SECRET needs no store at all.
	t.Setenv("MELONSYNC_JWT_SECRET", "env-secret-0123456789abcdef0123")
	tok, err = mintToken("--db", missing)
	if err != nil {
		t.Fatal(err)
	}
	auth, _ = mhttp.NewAuth([]byte("env-secret-0123456789abcdef0123"))
	if _, err := auth.Verify("Bearer " + tok); err != nil {
		t.Errorf("token from MELONSYNC_JWT_SECRET: %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a store was created at %s", missing)
	}
}

// TestTokenPostgres: a search_path with no melonsync store is refused and nothing is
// created there; a store's secret is read.
func TestTokenPostgres(t *testing.T) {
	t.Setenv("MELONSYNC_JWT_SECRET", "")
	dsn, name := pgDSN(t)
	if _, err := mintToken("--db", dsn); !errors.Is(err, server.ErrNoStore) {
		t.Errorf("no store: want ErrNoStore, got %v", err)
	}
	pgExec(t, dsn, `CREATE SCHEMA `+name)
	if _, err := mintToken("--db", dsn); !errors.Is(err, server.ErrNoStore) {
		t.Errorf("empty schema: want ErrNoStore, got %v", err)
	}
	st, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := mintToken("--db", dsn); !errors.Is(err, server.ErrNoSecret) {
		t.Errorf("store without a secret: want ErrNoSecret, got %v", err)
	}
	secret, err := st.Secret(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := mintToken("--db", dsn)
	if err != nil {
		t.Fatal(err)
	}
	auth, _ := mhttp.NewAuth(secret)
	if _, err := auth.Verify("Bearer " + tok); err != nil {
		t.Errorf("token from the store's secret: %v", err)
	}
}
