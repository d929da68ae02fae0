// Package testutil holds the helpers every package's tests share: the melonsync
// binary built once per test run, the server's "listening" log line, a fresh
// PostgreSQL schema (and store) per test, and a sync service served over HTTP in the test
// process. It is imported by tests only.
package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
)

// TB is what the helpers need of a test: *testing.T, *testing.B and *rapid.T have it.
type TB interface {
	Helper()
	Cleanup(func())
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Logf(format string, args ...any)
}

// Root returns the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// TodoSchemaPath is the path of the example schema most tests use.
func TodoSchemaPath() string { return filepath.Join(Root(), "examples", "todo", "schema.json") }

// TodoSchema loads examples/todo/schema.json.
func TodoSchema(t TB) *schema.Schema {
	t.Helper()
	s, err := schema.Load(TodoSchemaPath())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// Binary returns the path of cmd/melonsync built for this test run: the first call
// builds it, later calls (from any test of the package) reuse it. Call
// RemoveBinary from TestMain to delete it when the tests end.
func Binary(t TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "melonsync-test-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "melonsync")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/melonsync")
		cmd.Dir = Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/melonsync: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// RemoveBinary deletes the binary Binary built, if any.
func RemoveBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// Listening matches the line "melonsync serve" logs once it accepts connections;
// the first group is the address (host:port).
var Listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

// PostgresDSN returns $MELONSYNC_TEST_POSTGRES, skipping the test when it is not set.
func PostgresDSN(t TB) string {
	t.Helper()
	dsn := os.Getenv("MELONSYNC_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("MELONSYNC_TEST_POSTGRES is not set")
	}
	return dsn
}

// PostgresSchema returns a fresh schema name on the database of dsn (not created:
// the stores create it) and dsn with search_path set to it, for programs and
// stores that take a URL. The schema is dropped with everything in it when t ends,
// so that tests never see each other's tables.
func PostgresSchema(t TB, dsn, prefix string) (name, schemaDSN string) {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name = prefix + "_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Logf("drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS "`+name+`" CASCADE`); err != nil {
			t.Logf("drop schema %s: %v", name, err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return name, ""
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return name, u.String()
}

// SQLiteStore opens a server store in a new SQLite file, closed when t ends.
func SQLiteStore(t TB, dir string) server.Store {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(dir, "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// PostgresStore opens a server store in a fresh PostgreSQL schema of
// $MELONSYNC_TEST_POSTGRES (see PostgresSchema; the test is skipped when it is not
// set), closed and dropped when t ends.
func PostgresStore(t TB, prefix string) server.Store {
	t.Helper()
	_, dsn := PostgresSchema(t, PostgresDSN(t), prefix)
	if dsn == "" {
		t.Fatal("MELONSYNC_TEST_POSTGRES is not a postgres:// URL")
	}
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Secret is the token signing secret of Server when Options.Auth is not set.
var Secret = []byte("test-secret-0123456789abcdef")

// Server is a sync service served over HTTP on 127.0.0.1 in the test process.
type Server struct {
	*httptest.Server
	Auth    *mhttp.Auth
	Handler *mhttp.Handler
	Service *server.Service
}

// NewServer serves svc with opts (Options.Auth defaults to one with Secret) until t
// ends; then it ends the live-update streams and closes the server (not the store).
func NewServer(t TB, svc *server.Service, opts mhttp.Options) *Server {
	t.Helper()
	if opts.Auth == nil {
		auth, err := mhttp.NewAuth(Secret)
		if err != nil {
			t.Fatal(err)
		}
		opts.Auth = auth
	}
	h := mhttp.NewHandler(svc, opts)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return &Server{Server: srv, Auth: opts.Auth, Handler: h, Service: svc}
}

// NewStoreServer prepares store for sch and serves it (see NewServer).
func NewStoreServer(t TB, store server.Store, sch *schema.Schema, opts mhttp.Options) *Server {
	t.Helper()
	if err := store.Prepare(context.Background(), sch); err != nil {
		t.Fatal(err)
	}
	return NewServer(t, server.New(store, sch), opts)
}

// Token mints a token for user valid for an hour.
func (s *Server) Token(t TB, user string) string {
	t.Helper()
	tok, err := s.Auth.Mint(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
