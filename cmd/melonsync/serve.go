package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/melonsync/melonsync/admin"
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
	AccessPath     string
	MaxBody        int64
	Retention      time.Duration
	// AllowDrop and Convert say what to do with data the schema no longer describes.
	AllowDrop   bool
	Convert     bool
	LogFormat   string
	MetricsAddr string
	Pprof       bool
	AdminToken  string
	Dev         bool
	SyncLogMax  int
	SyncLogAge  time.Duration
	Rate        RateFlags
	Limits      mhttp.Limits
	SpoolDir    string
	ReadConns   int
	HookURL     string
	HookSecret  string
	HookTimeout time.Duration
	HookTables  string
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
	fs.StringVar(&m.AccessPath, "access", "", "access rules JSON file (SPEC §6; replaces the schema file's \"access\" key)")
	fs.Int64Var(&m.MaxBody, "max-body", mhttp.DefaultMaxBodyBytes, "largest request body accepted, in bytes (after gunzip)")
	fs.BoolVar(&m.AllowDrop, "allow-drop", false, "drop the tables and columns that the schema no longer has from the store, with their data (else start is refused when they hold data)")
	fs.BoolVar(&m.Convert, "convert", false, "convert the values of columns whose type changed in the schema (else start is refused when they hold data)")
	fs.DurationVar(&m.Retention, "tombstone-retention", 90*24*time.Hour, "how long deletions are kept for incremental pulls; older clients get a replacement sync (0: forever)")
	fs.StringVar(&m.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&m.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (off when empty)")
	fs.BoolVar(&m.Pprof, "pprof", false, "with --metrics-addr: also serve Go's runtime profiles at /debug/pprof/ there")
	fs.StringVar(&m.CORSOrigins, "cors-origins", "", "browser origins allowed to sync, comma-separated, or * (off when empty)")
	fs.StringVar(&m.JWKSURL, "jwks-url", "", "accept RS256/ES256/EdDSA tokens signed by a key of the key set (JWKS) at this URL")
	fs.StringVar(&m.JWKSFile, "jwks-file", "", "like --jwks-url, with the key set in a file")
	fs.StringVar(&m.JWTIssuer, "jwt-issuer", "", "with a key set: the iss that its tokens must have")
	fs.StringVar(&m.JWTAudience, "jwt-audience", "", "with a key set: the aud that its tokens must include")
	fs.StringVar(&m.JWTUserClaim, "jwt-user-claim", "sub", "with a key set: the claim of its tokens that holds the user id")
	fs.StringVar(&m.AdminToken, "admin-token", "", "turns on the admin dashboard at /admin/ and its API at /admin/api/, for this token (off when empty)")
	fs.BoolVar(&m.Dev, "dev", false, "development mode: the admin API can mint user tokens")
	fs.IntVar(&m.SyncLogMax, "sync-log-max-entries", admin.DefaultLogMaxEntries, "how many sync log entries (one per pull and push) the store keeps (0: no sync log)")
	fs.DurationVar(&m.SyncLogAge, "sync-log-max-age", admin.DefaultLogMaxAge, "how long sync log entries are kept")
	m.Rate.define(fs)
	d := mhttp.DefaultLimits
	fs.IntVar(&m.Limits.PullsPerUser, "max-pulls-per-user", d.PullsPerUser, "pulls of one user at once (429 beyond; -1: no bound)")
	fs.IntVar(&m.Limits.Pulls, "max-pulls", d.Pulls, "pulls reading the store at once, all users (others wait up to --limit-wait, then 503)")
	fs.IntVar(&m.Limits.PushesPerUser, "max-pushes-per-user", d.PushesPerUser, "pushes of one user at once (429 beyond; -1: no bound)")
	fs.IntVar(&m.Limits.Pushes, "max-pushes", d.Pushes, "pushes at once, all users (others wait up to --limit-wait, then 503)")
	fs.IntVar(&m.Limits.StreamsPerUser, "max-streams-per-user", d.StreamsPerUser, "open event streams of one user (429 beyond; -1: no bound)")
	fs.IntVar(&m.Limits.Streams, "max-streams", d.Streams, "open event streams, all users (503 beyond)")
	fs.IntVar(&m.Limits.LargeBodies, "max-large-bodies", d.LargeBodies, "request bodies over --large-body read and decoded at once (others wait up to --limit-wait, then 503)")
	fs.Int64Var(&m.Limits.LargeBody, "large-body", d.LargeBody, "size in bytes (after gunzip) from which a request body counts as large")
	fs.DurationVar(&m.Limits.Wait, "limit-wait", d.Wait, "how long a request waits for a free slot before it is refused with 503")
	fs.StringVar(&m.SpoolDir, "spool-dir", "", "directory for pull answers over 1 MiB while they are sent, and for a copy of push bodies over 1 MiB while they are decoded (default: the system's temporary directory)")
	fs.IntVar(&m.ReadConns, "read-conns", 0, "PostgreSQL: connections of the pool that pulls use, apart from the writes' pool (default: the size of the writes' pool)")
	fs.StringVar(&m.HookURL, "hook-url", getenv("MELONSYNC_HOOK_URL"), "POST every push to this URL of the app's backend before it is written (env MELONSYNC_HOOK_URL; see docs/conflicts.md)")
	fs.StringVar(&m.HookSecret, "hook-secret", getenv("MELONSYNC_HOOK_SECRET"), "secret that signs hook requests (X-Melon-Signature); prefer env MELONSYNC_HOOK_SECRET")
	fs.DurationVar(&m.HookTimeout, "hook-timeout", mhttp.DefaultHookTimeout, "how long a push waits for the hook before answering 503")
	fs.StringVar(&m.HookTables, "hook-tables", getenv("MELONSYNC_HOOK_TABLES"), "comma-separated tables the hook sees (default: every table; env MELONSYNC_HOOK_TABLES)")
	envFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := applyEnv(fs, getenv); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := m.checkHookFlags(); err != nil {
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
	if m.Limits.Wait <= 0 || m.Limits.LargeBody <= 0 || m.ReadConns < 0 {
		return errors.New("serve: --limit-wait and --large-body must be positive, --read-conns not negative")
	}
	if m.SchemaPath == "" {
		fs.Usage()
		return errors.New("serve: --schema is required (for example: --schema examples/todo/schema.json)")
	}
	if m.Pprof && m.MetricsAddr == "" {
		return errors.New("serve: --pprof serves on the metrics listener; give --metrics-addr too")
	}
	if m.LogFormat != "text" && m.LogFormat != "json" {
		return errors.New("serve: --log-format must be text or json")
	}
	if m.MaxBody <= 0 {
		return errors.New("serve: --max-body must be positive")
	}
	if m.SyncLogMax < 0 || m.SyncLogAge <= 0 {
		return errors.New("serve: --sync-log-max-entries must be 0 or more and --sync-log-max-age positive")
	}
	if m.AdminToken != "" && len(m.AdminToken) < 16 {
		return errors.New("serve: --admin-token must be at least 16 characters (e.g. openssl rand -hex 32)")
	}
	return m.Rate.check()
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
	if m.AccessPath != "" {
		if err := sch.LoadAccess(m.AccessPath); err != nil {
			return err
		}
	}
	store, err := openStore(m.DB, m.ReadConns)
	if err != nil {
		return err
	}
	m.store = store
	defer m.Close()
	if sp, ok := store.(server.SchemaPreparer); ok {
		sp.SetSchemaChanges(server.SchemaChanges{Drop: m.AllowDrop, Convert: m.Convert})
	}
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
	// Mark where this process's history starts: a device holding a timestamp of a
	// history the store no longer has (a restored backup) then gets a replacement.
	if _, err := svc.Resume(ctx); err != nil {
		log.Warn("could not mark the start of this process in the store; the first push will", "err", err.Error())
	}
	if err := m.setHook(svc, log); err != nil {
		return err
	}
	opts := mhttp.Options{Auth: auth, MaxBodyBytes: m.MaxBody, Logger: log, Limits: m.Limits, SpoolDir: m.SpoolDir, CORSOrigins: origins}
	if as, ok := store.(admin.Store); ok {
		opts.Devices = as
		if m.SyncLogMax > 0 {
			opts.SyncLog = admin.NewLog(as, admin.LogOptions{MaxEntries: m.SyncLogMax, MaxAge: m.SyncLogAge, Logger: log})
			opts.SyncLog.Start()
			defer opts.SyncLog.Close() // after the server stopped: the last entries are written
		}
		if m.AdminToken != "" {
			opts.Admin = &mhttp.AdminOptions{Token: m.AdminToken, Store: as, Log: opts.SyncLog, Dev: m.Dev}
			log.Info("admin dashboard on", "path", "/admin/", "dev", m.Dev)
		}
	}
	if m.MetricsAddr != "" {
		opts.Metrics = mhttp.NewMetrics(nil)
		mux := http.NewServeMux()
		if gw, ok := m.store.(server.GroupWriter); ok {
			opts.Metrics.WatchGroups(gw.GroupStats)
		}
		mux.Handle("/metrics", opts.Metrics.Handler())
		if m.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		msrv, err := mhttp.Listen(m.MetricsAddr, mux)
		if err != nil {
			return fmt.Errorf("serve: metrics: %w", err)
		}
		go msrv.Serve()
		defer msrv.Shutdown(context.Background())
		log.Info("metrics", "url", "http://"+msrv.Addr().String()+"/metrics")
	}
	var h http.Handler = mhttp.NewHandler(svc, opts)
	h = m.Rate.wrap(h, auth)
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
	if v, ok := m.store.(vacuumer); ok {
		go vacuumLoop(ctx, v, log)
	}
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

// vacuumer is a store that reclaims its own dead rows where nothing else does
// (PostgreSQL with autovacuum off: postgres.Store.Vacuum).
type vacuumer interface {
	Vacuum(ctx context.Context) ([]string, error)
}

// vacuumLoop runs the store's Vacuum a minute after the start, then every five
// minutes (it skips quickly when nothing passed its thresholds).
func vacuumLoop(ctx context.Context, v vacuumer, log *slog.Logger) {
	wait := time.Minute
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = 5 * time.Minute
		done, err := v.Vacuum(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("vacuuming the store's tables failed", "err", err.Error())
		} else if len(done) > 0 {
			log.Debug("vacuumed", "tables", strings.Join(done, ","))
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
