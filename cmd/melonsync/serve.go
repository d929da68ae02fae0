package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

var getenv = os.Getenv

// ServeMain is "melonsync serve": flags, wiring, and a graceful stop.
type ServeMain struct {
	Addr           string
	DB             string
	SchemaPath     string
	MigrationsPath string
	MaxBody        int64
	Retention      time.Duration
	LogFormat      string
	MetricsAddr    string
	// CORSOrigins is --cors-origins; the JWT fields configure identity-provider tokens.
	CORSOrigins  string
	JWKSURL      string
	JWKSFile     string
	JWTIssuer    string
	JWTAudience  string
	JWTUserClaim string

	stdout, stderr io.Writer
	store          server.Store
	srv            *mhttp.Server
	// Ready, when set, receives the bound address once the server listens.
	Ready chan<- string
}

// NewServeMain returns a ServeMain writing to stdout and stderr.
func NewServeMain(stdout, stderr io.Writer) *ServeMain {
	return &ServeMain{stdout: stdout, stderr: stderr}
}

// ParseFlags reads the serve flags.
func (m *ServeMain) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	setUsage(fs, "melonsync serve --schema FILE [flags]",
		"Serves the WatermelonDB sync protocol (POST /api/sync/pull and /api/sync/push,\nGET/POST /sync, GET /api/sync/events, POST /api/sync/events/ticket, GET /healthz).\nHS256 tokens are signed with $MELONSYNC_JWT_SECRET, or a secret generated on first\nstart and kept in the store; --jwks-url/--jwks-file add an identity provider's tokens.")
	fs.StringVar(&m.Addr, "addr", "127.0.0.1:8080", "address to listen on (port 0: any free port)")
	fs.StringVar(&m.DB, "db", "./melonsync.db", "store: a SQLite file path, or a postgres:// URL")
	fs.StringVar(&m.SchemaPath, "schema", "", "schema JSON file (WatermelonDB appSchema output or the hand-written form); required")
	fs.StringVar(&m.MigrationsPath, "migrations", "", "migrations JSON file (else the schema file's \"migrations\" key)")
	fs.Int64Var(&m.MaxBody, "max-body", mhttp.DefaultMaxBodyBytes, "largest request body accepted, in bytes (after gunzip)")
	fs.DurationVar(&m.Retention, "tombstone-retention", 90*24*time.Hour, "how long deletions are kept for incremental pulls; older clients get a replacement sync (0: forever)")
	fs.StringVar(&m.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&m.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (off when empty)")
	fs.StringVar(&m.CORSOrigins, "cors-origins", getenv("MELONSYNC_CORS_ORIGINS"), "browser origins allowed to sync, comma-separated, or * (env MELONSYNC_CORS_ORIGINS; off when empty)")
	fs.StringVar(&m.JWKSURL, "jwks-url", getenv("MELONSYNC_JWKS_URL"), "accept RS256/ES256/EdDSA tokens signed by a key of this key set (JWKS) URL (env MELONSYNC_JWKS_URL)")
	fs.StringVar(&m.JWKSFile, "jwks-file", getenv("MELONSYNC_JWKS_FILE"), "like --jwks-url, with the key set in a file (env MELONSYNC_JWKS_FILE)")
	fs.StringVar(&m.JWTIssuer, "jwt-issuer", getenv("MELONSYNC_JWT_ISSUER"), "with a key set: the iss that tokens must have (env MELONSYNC_JWT_ISSUER)")
	fs.StringVar(&m.JWTAudience, "jwt-audience", getenv("MELONSYNC_JWT_AUDIENCE"), "with a key set: the aud that tokens must include (env MELONSYNC_JWT_AUDIENCE)")
	fs.StringVar(&m.JWTUserClaim, "jwt-user-claim", envDefault("MELONSYNC_JWT_USER_CLAIM", "sub"), "with a key set: the claim holding the user id (env MELONSYNC_JWT_USER_CLAIM)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := mhttp.ParseCORSOrigins(m.CORSOrigins); err != nil {
		return fmt.Errorf("serve: --cors-origins: %w", err)
	}
	if m.JWKSURL != "" && m.JWKSFile != "" {
		return errors.New("serve: give --jwks-url or --jwks-file, not both")
	}
	if m.JWKSURL == "" && m.JWKSFile == "" && (m.JWTIssuer != "" || m.JWTAudience != "") {
		return errors.New("serve: --jwt-issuer and --jwt-audience apply to key-set tokens; give --jwks-url or --jwks-file too")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if m.SchemaPath == "" {
		fs.Usage()
		return errors.New("serve: --schema is required (for example: --schema examples/todo/schema.json)")
	}
	if m.LogFormat != "text" && m.LogFormat != "json" {
		return errors.New("serve: --log-format must be text or json")
	}
	if m.MaxBody <= 0 {
		return errors.New("serve: --max-body must be positive")
	}
	return nil
}

func (m *ServeMain) logger() *slog.Logger {
	if m.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(m.stderr, nil))
	}
	return slog.New(slog.NewTextHandler(m.stderr, nil))
}

// Run serves until ctx is done, then shuts down gracefully.
func (m *ServeMain) Run(ctx context.Context) error {
	log := m.logger()
	sch, err := schema.LoadWithMigrations(m.SchemaPath, m.MigrationsPath)
	if err != nil {
		return err
	}
	store, err := openStore(m.DB)
	if err != nil {
		return err
	}
	m.store = store
	defer m.Close()
	if err := store.Prepare(ctx, sch); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	secret := []byte(getenv("MELONSYNC_JWT_SECRET"))
	if len(secret) == 0 {
		secret, err = store.Secret(ctx) // the store is open already: no second connection
	}
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	auth, err := mhttp.NewAuth(secret)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if m.JWKSURL != "" || m.JWKSFile != "" {
		err := auth.UseKeySet(ctx, mhttp.KeySetOptions{URL: m.JWKSURL, File: m.JWKSFile, Issuer: m.JWTIssuer,
			Audience: m.JWTAudience, UserClaim: m.JWTUserClaim, Logger: log})
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		defer auth.Close()
		log.Info("identity-provider tokens", "key_set", firstNonEmpty(m.JWKSURL, m.JWKSFile), "issuer", m.JWTIssuer, "audience", m.JWTAudience, "user_claim", m.JWTUserClaim)
	}
	origins, _ := mhttp.ParseCORSOrigins(m.CORSOrigins)
	if len(origins) > 0 {
		log.Info("cors", "origins", strings.Join(origins, ","))
	}
	svc := server.New(store, sch)
	opts := mhttp.Options{Auth: auth, MaxBodyBytes: m.MaxBody, Logger: log, CORSOrigins: origins}
	if m.MetricsAddr != "" {
		opts.Metrics = mhttp.NewMetrics(nil)
		mux := http.NewServeMux()
		mux.Handle("/metrics", opts.Metrics.Handler())
		msrv, err := mhttp.Listen(m.MetricsAddr, mux)
		if err != nil {
			return fmt.Errorf("serve: metrics: %w", err)
		}
		go msrv.Serve()
		defer msrv.Shutdown(context.Background())
		log.Info("metrics", "url", "http://"+msrv.Addr().String()+"/metrics")
	}
	h := mhttp.NewHandler(svc, opts)
	srv, err := mhttp.Listen(m.Addr, h)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	m.srv = srv
	addr := srv.Addr().String()
	log.Info("listening", "addr", addr, "url", "http://"+addr, "db", redact(m.DB), "schema_version", sch.Version, "tables", len(sch.Tables))
	if m.Ready != nil {
		m.Ready <- addr
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	if m.Retention > 0 {
		go m.purgeLoop(ctx, log)
	}
	go watchLoop(ctx, svc, log)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("serve: shutdown: %w", err)
	}
	return <-errc
}

// purgeLoop removes tombstones older than the retention, hourly.
func (m *ServeMain) purgeLoop(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		before := time.Now().Add(-m.Retention).UnixMilli()
		n, err := m.store.PurgeTombstones(ctx, before)
		if err != nil && ctx.Err() == nil {
			log.Warn("purging tombstones failed", "err", err.Error())
		} else if n > 0 {
			log.Info("purged tombstones", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchLoop forwards changes committed by other processes (stores shared by several
// servers) to this server's live-update streams, re-watching after failures.
func watchLoop(ctx context.Context, svc *server.Service, log *slog.Logger) {
	for wait := time.Second; ctx.Err() == nil; wait = min(2*wait, time.Minute) {
		start := time.Now()
		err := svc.WatchStore(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			wait = time.Second
		}
		log.Warn("watching the store for changes failed; retrying", "err", err.Error(), "in", wait.String())
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

func envDefault(name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// Close releases the store.
func (m *ServeMain) Close() error {
	if m.store != nil {
		err := m.store.Close()
		m.store = nil
		return err
	}
	return nil
}
