package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync/sqlite"

	"github.com/melonsync/melonsync/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveBinary()
	os.Exit(code)
}

// pgDSN returns $MELONSYNC_TEST_POSTGRES with search_path set to a fresh schema
// (not created; dropped with everything in it when t ends), skipping the test when
// the variable is not set.
func pgDSN(t testing.TB) (dsn, schemaName string) {
	t.Helper()
	schemaName, dsn = testutil.PostgresSchema(t, testutil.PostgresDSN(t), "melon_cmd")
	if dsn == "" {
		t.Fatal("MELONSYNC_TEST_POSTGRES is not a postgres:// URL")
	}
	return dsn, schemaName
}

// pgExec runs sql on the test database (outside any store).
func pgExec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// openAppDB opens a SQLite store file as the app's own code would (plain SQL).
func openAppDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", sqlite.DSN(path, "immediate"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// serving is a serve command running in-process for a test.
type serving struct {
	addr   string        // host:port it listens on
	stderr *bytes.Buffer // its logs
	cancel context.CancelFunc
	done   chan error
}

// runServe parses args into a serve command, runs it on its own goroutine and waits
// until it listens. It is stopped when the test ends unless stop was called.
func runServe(t *testing.T, args ...string) *serving {
	t.Helper()
	s := &serving{stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	m := NewServeMain(&bytes.Buffer{}, s.stderr)
	if err := m.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	m.Ready = ready
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	go func() { s.done <- m.Run(ctx) }()
	t.Cleanup(func() {
		if err := s.stop(); errors.Is(err, errNotStopped) {
			t.Error(err)
		}
	})
	select {
	case s.addr = <-ready:
		return s
	case err := <-s.done:
		s.done <- err
		t.Fatalf("serve stopped: %v\n%s", err, s.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	return nil
}

var errNotStopped = errors.New("serve did not stop within 10 s")

// stop cancels the command and returns what Run returned (errNotStopped after 10 s).
// Calling it again returns the same.
func (s *serving) stop() error {
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(10 * time.Second):
		return errNotStopped
	}
}
