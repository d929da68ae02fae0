// Package postgres is melonsync's PostgreSQL server store: any number of melonsync
// processes share one database, and the team's own code may write the synced tables
// with plain SQL. Writers commit in parallel; pulls take their snapshot behind a gate
// that makes it hold every version up to its clock and none above; see DESIGN.md for
// the rules and why they are right.
package postgres

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

var (
	_ server.Store   = (*Store)(nil)
	_ server.Watcher = (*Store)(nil)
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// DefaultStatementTimeout bounds every statement but those of pulls, unless the DSN
// sets statement_timeout or WithStatementTimeout is given.
const DefaultStatementTimeout = 60 * time.Second

// DefaultReadTimeout bounds each statement of a pull (Read) unless WithReadTimeout is
// given. A pull streams each table to the client within one statement, so a slow
// client on a large first sync keeps that statement running.
const DefaultReadTimeout = 15 * time.Minute

// DefaultAcquireTimeout bounds how long a transaction waits for a connection that
// answers (from the pool or a new one) and for its BEGIN, unless WithAcquireTimeout
// is given. Past it the request gets 503: the database, or the network to it, is
// down or overloaded, and a client is better told so than left waiting.
const DefaultAcquireTimeout = 10 * time.Second

// Store is the server store on one PostgreSQL schema.
type Store struct {
	pool        *pgxpool.Pool // pushes, purges, pings and our own tables
	readPool    *pgxpool.Pool // pulls only: a pull never takes a push's connection
	connCfg     *pgx.ConnConfig
	schema      string // the PostgreSQL schema holding the tables
	readTimeout time.Duration
	acquire     time.Duration                 // bound on acquiring a connection and BEGIN
	writeLimit  time.Duration                 // bound on a whole write transaction (0: none)
	readLimit   time.Duration                 // bound on a whole pull (0: none)
	instance    string                        // random id of this store: names its settings and channels
	app         atomic.Pointer[schema.Schema] // the app schema of the last Prepare
	changes     server.SchemaChanges

	listened atomic.Bool // a Watch has listened before: the next one catches up
	ticking  atomic.Bool // a tick (clock.go) is running
	notes    notifier    // NOTIFYs of committed writes (notify.go)
	devices  deviceCache // operator flags of devices (devicecache.go)
	groups   *grouper    // group commit of pushes (group.go); nil: off

	mu     sync.Mutex // guards closed and watch.Add
	closed bool
	stop   context.CancelFunc
	base   context.Context // done when the store closes
	once   sync.Once
	watch  sync.WaitGroup
}

type config struct {
	schema           string
	maxConns         int32
	readConns        int32
	statementTimeout time.Duration
	readTimeout      time.Duration
	acquireTimeout   time.Duration
	groupSlots       int
}

// Option configures Open.
type Option func(*config)

// WithSchema keeps the store's tables in the PostgreSQL schema name (created if
// missing) by putting it first on the connections' search_path. Without it, the DSN's
// search_path parameter decides (its first schema is created if missing), else the
// server's default (usually public).
func WithSchema(name string) Option { return func(c *config) { c.schema = name } }

// DefaultMaxConns is the default size of each pool (writes, pulls): 2 per CPU, at
// least 8. Writers commit in parallel, so a few connections per core pay; more only
// add backends competing for the same cores, and every process needs up to twice
// this plus one connection of the database's max_connections (100 by default).
func DefaultMaxConns() int32 { return int32(max(8, 2*runtime.NumCPU())) }

// WithMaxConns sets the size of the pool of writes (pushes, purges, health checks;
// default: DefaultMaxConns, or the DSN's pool_max_conns).
func WithMaxConns(n int32) Option { return func(c *config) { c.maxConns = n } }

// WithReadConns sets the size of the separate pool that pulls use (default: the
// same as the pool of writes). Pulls never wait for, nor take, a write's connection,
// so pushes and health checks go on whatever pulls do. The server needs up to
// MaxConns + ReadConns + 1 (live updates) connections.
func WithReadConns(n int32) Option { return func(c *config) { c.readConns = n } }

// WithStatementTimeout sets statement_timeout on every connection (default
// DefaultStatementTimeout, or the DSN's statement_timeout; 0 turns it off).
func WithStatementTimeout(d time.Duration) Option {
	return func(c *config) { c.statementTimeout = d }
}

// WithReadTimeout sets the statement timeout of pulls (default DefaultReadTimeout;
// 0 turns it off).
func WithReadTimeout(d time.Duration) Option { return func(c *config) { c.readTimeout = d } }

// WithAcquireTimeout sets how long a transaction may wait for a connection that
// answers and for its BEGIN (default DefaultAcquireTimeout). A write transaction as
// a whole is bounded by this plus the statement timeout, so that a database (or a
// network) that stops answering gets the client a 503 in bounded time rather than a
// hang: PostgreSQL's own statement timeout cannot fire when nothing reaches it.
func WithAcquireTimeout(d time.Duration) Option { return func(c *config) { c.acquireTimeout = d } }

// WithGroupSlots sets how many group-commit transactions of pushes (group.go) run at
// once; 0 keeps the default (DefaultGroupSlots), a negative n turns group commit off
// (every push is a transaction of its own).
func WithGroupSlots(n int) Option { return func(c *config) { c.groupSlots = n } }

// Open connects to the database at dsn (a postgres:// or postgresql:// URL, or a
// key=value string), creates or upgrades melonsync's own tables and returns the store.
// Call Prepare with the app schema before serving. Connection failures wrap
// melonsync.ErrUnavailable.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg := config{statementTimeout: -1, readTimeout: DefaultReadTimeout, acquireTimeout: DefaultAcquireTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	rp := pcfg.ConnConfig.RuntimeParams
	if cfg.schema != "" {
		rp["search_path"] = quoteIdent(cfg.schema)
	} else if sp := rp["search_path"]; sp != "" {
		cfg.schema = firstSchema(sp)
	}
	if cfg.statementTimeout >= 0 {
		rp["statement_timeout"] = strconv.FormatInt(cfg.statementTimeout.Milliseconds(), 10)
	} else if _, ok := rp["statement_timeout"]; !ok {
		rp["statement_timeout"] = strconv.FormatInt(DefaultStatementTimeout.Milliseconds(), 10)
	}
	if _, ok := rp["application_name"]; !ok {
		rp["application_name"] = "melonsync"
	}

	switch {
	case cfg.maxConns > 0:
		pcfg.MaxConns = cfg.maxConns
	case !strings.Contains(dsn, "pool_max_conns"):
		pcfg.MaxConns = DefaultMaxConns()
	}
	rcfg := pcfg.Copy()
	if cfg.readConns > 0 {
		rcfg.MaxConns = cfg.readConns
	}
	planFor(pcfg.ConnConfig.RuntimeParams, rcfg.ConnConfig.RuntimeParams)
	rcfg.MinConns = 0
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, wrap("connect", err)
	}
	readPool, err := pgxpool.NewWithConfig(ctx, rcfg)
	if err != nil {
		pool.Close()
		return nil, wrap("connect", err)
	}
	base, stop := context.WithCancel(context.Background())
	s := &Store{pool: pool, readPool: readPool, connCfg: pcfg.ConnConfig, base: base, stop: stop, readTimeout: cfg.readTimeout,
		acquire: cfg.acquireTimeout}
	if st := parseTimeout(rp["statement_timeout"]); st > 0 && s.acquire > 0 {
		s.writeLimit = s.acquire + st
	}
	if s.readTimeout > 0 && s.acquire > 0 {
		s.readLimit = s.acquire + s.readTimeout
	}
	if err := s.migrate(ctx, cfg.schema); err != nil {
		s.Close()
		return nil, err
	}
	slots := cfg.groupSlots
	if slots == 0 {
		slots = DefaultGroupSlots()
	}
	s.groups = newGrouper(slots)
	s.notes.start(s)
	return s, nil
}

// planFor sets how the connections of writes (w) and of pulls (r) plan, unless the
// DSN says otherwise. A prepared statement's generic plan made while its tables were
// empty is a seq scan, and it stays in use as they grow (ANALYZE would fix it, but
// autovacuum may be off).
//
// Writes find rows by id: their connections never choose a seq scan where an index
// serves (enable_seqscan off only makes seq scans cost more), so their generic plans
// are right at any size and stay cached (planning each would cost a quarter of a
// push's time in the database). jit is off with it: the cost a disabled seq scan adds
// would otherwise make PostgreSQL compile those statements. Pulls plan each statement
// for its parameters and the tables as they are now (their statements are few and
// long).
func planFor(w, r map[string]string) {
	set := func(rp map[string]string, k, v string) {
		if _, ok := rp[k]; !ok {
			rp[k] = v
		}
	}
	set(w, "enable_seqscan", "off")
	set(w, "jit", "off")
	set(r, "plan_cache_mode", "force_custom_plan")
}

// parseTimeout reads a statement_timeout setting: milliseconds, or a number with one
// of PostgreSQL's units. It returns 0 for "off" and for what it cannot read.
func parseTimeout(v string) time.Duration {
	v = strings.TrimSpace(v)
	num := strings.TrimRightFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0
	}
	unit := map[string]time.Duration{"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[strings.TrimSpace(v[len(num):])]
	return time.Duration(n) * unit
}

// firstSchema returns the first plain schema name of a search_path value ("" for
// "$user" or nothing).
func firstSchema(sp string) string {
	first, _, _ := strings.Cut(sp, ",")
	first = strings.TrimSpace(first)
	if strings.HasPrefix(first, `"`) && strings.HasSuffix(first, `"`) && len(first) >= 2 {
		return strings.ReplaceAll(first[1:len(first)-1], `""`, `"`)
	}
	if first == "$user" {
		return ""
	}
	return first
}

// migrate creates the schema when asked to, then applies the embedded migrations not
// applied yet, in order, in one transaction under an advisory lock (several processes
// may start at once).
func (s *Store) migrate(ctx context.Context, schemaName string) error {
	if schemaName != "" {
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schemaName).Scan(&exists); err != nil {
			return wrap("migrate", err)
		}
		if !exists {
			// Under a lock: CREATE SCHEMA IF NOT EXISTS can still fail when several
			// processes run it at once.
			err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('melonsync:migrate:' || $1, 0))`, schemaName); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+quoteIdent(schemaName))
				return err
			})
			if err != nil {
				return wrap("create schema", err)
			}
		}
	}
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var cur *string
		if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&cur); err != nil {
			return err
		}
		if cur == nil {
			return errors.New("no schema on the search_path exists (create it, or pass a search_path)")
		}
		s.schema = *cur
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('melonsync:migrate:' || current_schema(), 0))`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS __melon_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT name FROM __melon_migrations`)
		if err != nil {
			return err
		}
		done, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		applied := map[string]bool{}
		for _, n := range done {
			applied[n] = true
		}
		for _, name := range names {
			base := strings.TrimPrefix(name, "migrations/")
			if applied[base] {
				continue
			}
			sql, err := migrationFiles.ReadFile(name)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, string(sql), pgx.QueryExecModeSimpleProtocol); err != nil {
				return fmt.Errorf("%s: %w", base, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO __melon_migrations (name) VALUES ($1)`, base); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `SELECT value FROM __melon_meta WHERE key = 'instance'`).Scan(&s.instance)
	})
	if err != nil {
		return wrap("migrate", err)
	}
	return nil
}

// SchemaName returns the PostgreSQL schema that holds the store's tables.
func (s *Store) SchemaName() string { return s.schema }

// Pool returns the store's pool of writes (for tools and tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close stops Watch calls and closes the pool, waiting for connections in use to be
// released (requests in flight finish first). It is safe to call more than once.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.stop()
		s.watch.Wait()
		s.notes.done.Wait()
		s.readPool.Close()
		s.pool.Close()
	})
	return nil
}

// Ping checks that the database answers. Failures wrap melonsync.ErrUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT 1`).Scan(&n); err != nil {
		return wrap("ping", err)
	}
	return nil
}

// Secret returns the JWT secret kept in __melon_meta, generating it on first use (the
// first of several processes to get there wins; all then use it).
func (s *Store) Secret(ctx context.Context) ([]byte, error) {
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return nil, err
	}
	var v string
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		// Inserted here, or found; a concurrent first insert by another process can
		// leave neither visible to this statement's snapshot: then look again.
		err = s.pool.QueryRow(ctx, `WITH ins AS (
				INSERT INTO __melon_meta (key, value) VALUES ('jwt_secret', $1) ON CONFLICT (key) DO NOTHING RETURNING value)
			SELECT value FROM ins UNION ALL SELECT value FROM __melon_meta WHERE key = 'jwt_secret' LIMIT 1`,
			hex.EncodeToString(buf)).Scan(&v)
		if !errors.Is(err, pgx.ErrNoRows) {
			break
		}
	}
	if err != nil {
		return nil, wrap("secret", err)
	}
	return hex.DecodeString(v)
}

// Read runs fn in one REPEATABLE READ READ ONLY transaction: one snapshot of every
// table, taken behind the gate with the clock (clock.go), so that it sees every
// version up to the clock and none above it.
func (s *Store) Read(ctx context.Context, fn func(server.ReadTx) error) error {
	if s.readLimit <= 0 {
		return s.read(ctx, fn)
	}
	rctx, cancel := context.WithTimeout(ctx, s.readLimit)
	defer cancel()
	return s.noAnswer("read", s.readLimit, ctx, rctx, s.read(rctx, fn))
}

// noAnswer turns err, returned by work bounded by the limit of inner, into an
// unavailable error when that limit (not ctx) ended it: the statement timeout did
// not fire, so nothing reached the database or its answers did not come back.
func (s *Store) noAnswer(op string, limit time.Duration, ctx, inner context.Context, err error) error {
	if err != nil && inner.Err() != nil && ctx.Err() == nil && !errors.Is(err, melonsync.ErrUnavailable) {
		return fmt.Errorf("postgres: %s: %w: no answer from the database within %v: %w", op, melonsync.ErrUnavailable, limit, err)
	}
	return err
}

func (s *Store) read(ctx context.Context, fn func(server.ReadTx) error) error {
	tx, err := s.begin(ctx, s.readPool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rt := &readTx{ctx: ctx, tx: tx, s: s}
	// One round trip: the pull's own statement timeout, and its snapshot and clock,
	// taken behind the gate (clock.go).
	if rt.clock, err = takeSnapshot(ctx, tx, s.readTimeout); err != nil {
		return wrap("clock", err)
	}
	if err := fn(rt); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap("commit read", err)
	}
	return nil
}

// writeAttempts bounds how often Write runs a transaction that PostgreSQL aborted
// as a deadlock victim or serialization failure.
const writeAttempts = 4

// Write runs fn in one READ COMMITTED transaction, committed when fn returns nil.
// Lookup locks the rows it returns; Version takes the gate (shared among writers)
// and draws the version.
// A transaction that PostgreSQL aborted to break a deadlock (or as a serialization
// failure) was rolled back whole, so it is run again, fn included, a few times
// before the error is returned: fn must not keep effects of a failed attempt.
//
// A transaction the database refused for its data (a constraint of the app's) is run
// once more in locate mode, which returns the refused records as a
// server.RefusedError (refused.go).
func (s *Store) Write(ctx context.Context, fn func(server.WriteTx) error) error {
	var err error
	locate := false
	for attempt := 1; ; attempt++ {
		err = s.writeOnce(ctx, fn, locate)
		if errors.Is(err, errLocate) && !locate {
			locate = true
			continue
		}
		if attempt >= writeAttempts || !isRetryableAbort(err) || ctx.Err() != nil {
			var r *racedErr
			if errors.As(err, &r) {
				return r.conflict
			}
			return err
		}
		// Let the other transaction finish before trying again.
		t := time.NewTimer(time.Duration(attempt) * time.Duration(5+mrand.IntN(20)) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// isRetryableAbort tells a deadlock or serialization failure: PostgreSQL rolled the
// whole transaction back, so running it again is safe. A push that found rows
// appeared after its Lookup (racedError) is run again too: its decisions rested on
// what Lookup saw, and a fresh Lookup decides afresh — a conflict if another device
// wrote them, none if they are this device's own retried push, whose first attempt
// was still committing.
func isRetryableAbort(err error) bool {
	if errors.As(err, new(*racedErr)) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

func (s *Store) writeOnce(ctx context.Context, fn func(server.WriteTx) error, locate bool) error {
	if s.writeLimit <= 0 {
		return s.writeTx(ctx, fn, locate)
	}
	wctx, cancel := context.WithTimeout(ctx, s.writeLimit)
	defer cancel()
	// Whether a commit in flight when the limit ends it took effect is unknown; the
	// client's retry from the same device is safe either way.
	return s.noAnswer("write", s.writeLimit, ctx, wctx, s.writeTx(wctx, fn, locate))
}

func (s *Store) writeTx(ctx context.Context, fn func(server.WriteTx) error, locate bool) error {
	tx, err := s.acquireLazy(ctx, `BEGIN ISOLATION LEVEL READ COMMITTED`)
	if err != nil {
		return err
	}
	defer tx.release(ctx)
	wt := &writeTx{readTx: readTx{ctx: ctx, tx: tx, s: s}, lazy: tx, looked: map[string]map[string]server.Meta{}, locate: locate}
	if locate {
		// Deferred constraints fail at the statement that breaks them, not at commit.
		if _, err := tx.Exec(ctx, `SET CONSTRAINTS ALL IMMEDIATE`); err != nil {
			return wrap("begin", err)
		}
	}
	if err := fn(wt); err != nil {
		return err
	}
	if err := tx.commit(ctx); err != nil {
		if isRefusal(err) {
			if locate {
				return refusedAtCommit(err)
			}
			return errLocate
		}
		return wrap("commit", err)
	}
	if wt.version != 0 {
		s.notes.add(wt.notes())
		s.noteClock(wt.version)
	}
	return nil
}

// begin starts a transaction, retrying on another connection when the one taken from
// the pool turns out to be dead (nothing has been done yet, so this is always safe).
// Acquiring a connection and BEGIN take at most the acquire timeout in all.
func (s *Store) begin(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions) (pgx.Tx, error) {
	bctx := ctx
	if s.acquire > 0 {
		var cancel context.CancelFunc
		bctx, cancel = context.WithTimeout(ctx, s.acquire)
		defer cancel()
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var tx pgx.Tx
		tx, err = pool.BeginTx(bctx, opts)
		if err == nil {
			return tx, nil
		}
		if bctx.Err() != nil || !isUnavailable(err) {
			break
		}
	}
	if bctx.Err() != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("postgres: begin: %w: no connection to the database within %v: %w", melonsync.ErrUnavailable, s.acquire, err)
	}
	return nil, wrap("begin", err)
}

// PurgeTombstones deletes tombstones with a version ≤ before and raises
// purged_through to the newest version deleted. Tombstones locked by a push in flight
// are skipped (a later purge takes them).
func (s *Store) PurgeTombstones(ctx context.Context, before int64) (int64, error) {
	var n int64
	err := s.retryTx(ctx, func(tx pgx.Tx) error {
		// Moves as old as the purged tombstones go too (server/ACCESS.md "Purges").
		var newestMove *int64
		if err := tx.QueryRow(ctx, `WITH d AS (
				DELETE FROM __melon_moves WHERE version > 0 AND version <= $1 RETURNING version)
			SELECT max(version) FROM d`, before).Scan(&newestMove); err != nil {
			return err
		}
		if newestMove != nil {
			if _, err := tx.Exec(ctx, `UPDATE __melon_meta SET value = greatest(value::bigint, $1)::text WHERE key = 'purged_through'`, *newestMove); err != nil {
				return err
			}
		}
		var newest *int64
		err := tx.QueryRow(ctx, `WITH d AS (
				DELETE FROM __melon_tombstones WHERE ctid = ANY (ARRAY(
					SELECT ctid FROM __melon_tombstones WHERE version > 0 AND version <= $1 FOR UPDATE SKIP LOCKED))
				RETURNING version)
			SELECT count(*), max(version) FROM d`, before).Scan(&n, &newest)
		if err != nil || newest == nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE __melon_meta SET value = greatest(value::bigint, $1)::text WHERE key = 'purged_through'`, *newest)
		return err
	})
	if err != nil {
		return 0, wrap("purge", err)
	}
	return n, nil
}

// retryTx runs fn in a READ COMMITTED transaction.
func (s *Store) retryTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.begin(ctx, s.pool, pgx.TxOptions{})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Watch calls fn for every write committed to the store by any process, melonsync
// or not (LISTEN/NOTIFY on one dedicated connection): the owners and users whose data
// changed, and the group and public tables changed with their groups. It returns when
// ctx ends (then nil), the store is closed, or the connection fails (the error wraps
// melonsync.ErrUnavailable).
func (s *Store) Watch(ctx context.Context, fn func(server.Change)) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.watch.Add(1)
	s.mu.Unlock()
	defer s.watch.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.base, cancel)
	defer stop()
	if ctx.Err() != nil {
		return nil
	}
	cfg := s.connCfg.Copy()
	// Named so that operators can tell it apart in pg_stat_activity.
	name := cfg.RuntimeParams["application_name"] + " watch " + s.instance
	cfg.RuntimeParams["application_name"] = name[:min(len(name), 63)]
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return wrap("watch", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `LISTEN `+quoteIdent(s.channel())+`; LISTEN `+quoteIdent(s.tableChannel())); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return wrap("watch", err)
	}
	// Catch up after a reconnect: writes committed while the lost connection was
	// re-made were announced to nobody. Everyone listening is told of the clock as it
	// is now that LISTEN is in place; those already told of it are not told twice.
	// (Streams opened before the process's first LISTEN read the clock themselves.)
	if s.listened.Swap(true) {
		var clock int64
		if err := conn.QueryRow(ctx, clockSQL).Scan(&clock); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return wrap("watch", err)
		}
		fn(server.Change{Version: clock, All: true})
	}
	for {
		// Wake up now and then to check that the connection is alive: a connection
		// lost without a word (a failover behind a proxy) must not go unnoticed.
		wctx, cancelWait := context.WithTimeout(ctx, watchPing)
		n, err := conn.WaitForNotification(wctx)
		cancelWait()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && wctx.Err() != nil {
			pctx, cancelPing := context.WithTimeout(ctx, 10*time.Second)
			err = conn.Ping(pctx)
			cancelPing()
			if err == nil {
				continue
			}
			if ctx.Err() != nil {
				return nil
			}
		}
		if err != nil {
			return wrap("watch", err)
		}
		head, rest, ok := strings.Cut(n.Payload, " ")
		vs, device, _ := strings.Cut(head, ":")
		v, err := strconv.ParseInt(vs, 10, 64)
		if !ok || err != nil {
			continue
		}
		if n.Channel == s.tableChannel() {
			table, group, _ := strings.Cut(rest, " ")
			fn(server.Change{Version: v, Table: table, Group: group, Device: device})
		} else {
			fn(server.Change{Version: v, User: rest, Device: device})
		}
	}
}

// watchPing is how long Watch waits for a notification before checking its connection.
var watchPing = 30 * time.Second

// channel is the NOTIFY channel of this store.
func (s *Store) channel() string { return "melonsync_" + s.instance }

// tableChannel is the NOTIFY channel of changes to group and public tables
// ("version table group").
func (s *Store) tableChannel() string { return "melonsync_" + s.instance + "_t" }

// tablesOf returns the tables of the prepared schema whose rows belong to groups of
// kind g.
func (s *Store) tablesOf(g *schema.Group) []*schema.Table {
	var out []*schema.Table
	if sch := s.app.Load(); sch != nil {
		for _, t := range sch.Tables {
			if t.Rule.Group != nil && t.Rule.Group.Name == g.Name {
				out = append(out, t)
			}
		}
	}
	if len(out) == 0 {
		// Never fewer than the members table: a group with members is claimed.
		out = append(out, g.Members)
	}
	return out
}

// versionSetting is the transaction-local setting holding the transaction's version.
func (s *Store) versionSetting() string { return "melonsync.v_" + s.instance }

func quoteIdent(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func quoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }
