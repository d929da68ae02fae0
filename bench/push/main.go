// Command push measures push throughput: -clients concurrent HTTP clients acting for
// -users users push 1–3 new records each, for -seconds, against real "melonsync
// serve" processes on one database, next to a baseline measured in the same run:
//
//   - postgres (default): the baseline is -clients pgx connections doing the same
//     1–3 row INSERT … ON CONFLICT transactions into plain tables of the same shape;
//     then 1 and 2 serve processes on one PostgreSQL schema (clients spread evenly).
//   - sqlite: 1 serve process on a SQLite file (the baseline is not run).
//
// It prints pushes/s and the latency's p50/p99 for each, each figure's ratio to the
// baseline, and the CPU time per push of the serve processes, of PostgreSQL and of
// this program (the load), read from /proc over the measured window. With -repeat N
// the measurements run N rounds, interleaved, and their medians follow: on a shared
// machine a single run can be a fifth off.
//
// With -pullers N, N more clients pull incrementally in a loop while the pushes run,
// and a line for their pulls follows each push line (pulls wait at the gate that
// orders them with writes on PostgreSQL: postgres/DESIGN.md).
//
//	go run ./bench/push -seconds 15
//	go run ./bench/push -pullers 16
//	go run ./bench/push -store sqlite
//	go run ./bench/push -seconds 8 -repeat 5
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/melonsync/melonsync/bench/internal/serve"
	mhttp "github.com/melonsync/melonsync/http"
)

func main() {
	def := os.Getenv("MELONSYNC_TEST_POSTGRES")
	if def == "" {
		def = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	dsn := flag.String("dsn", def, "PostgreSQL URL (fresh schemas are created in it and dropped at the end)")
	store := flag.String("store", "postgres", "postgres or sqlite")
	seconds := flag.Int("seconds", 15, "seconds each measurement runs")
	clients := flag.Int("clients", 32, "concurrent HTTP clients (and baseline connections)")
	users := flag.Int("users", 100, "users the clients push for")
	procs := flag.String("procs", "1,2", "PostgreSQL: numbers of serve processes to measure")
	bin := flag.String("melonsync", "", "melonsync binary (default: built from this module)")
	repeat := flag.Int("repeat", 1, "rounds: each measurement runs this many times, interleaved, and the medians follow")
	pullers := flag.Int("pullers", 0, "clients pulling incrementally (each as a device of a random user) while the pushes run")
	flag.Parse()
	cfg := config{dsn: *dsn, dur: time.Duration(*seconds) * time.Second, clients: *clients, users: *users, bin: *bin, pullers: *pullers, repeat: max(1, *repeat)}
	if err := run(cfg, *store, *procs); err != nil {
		log.Fatal(err)
	}
}

type config struct {
	dsn            string
	dur            time.Duration
	clients, users int
	pullers        int
	repeat         int
	bin            string
	cpu            func() cpuSample // what the measured window's CPU is read from
	// activity samples the database's backends over the measured window (nil: not).
	activity func(ctx context.Context) activity
}

// result is one measurement.
type result struct {
	n        int64
	d        time.Duration
	lat      []time.Duration
	failures int64
	cpu      cpuSample // used in the measured window
	activity activity  // of the database's backends in the window
}

func (r result) rate() float64 { return float64(r.n) / r.d.Seconds() }

// cpuPerOp prints the window's CPU per operation of each part, and the share of
// the machine's CPU time that was idle.
func (r result) cpuPerOp() string {
	if !r.cpu.ok || r.n == 0 {
		return ""
	}
	per := func(d time.Duration) int64 { return d.Microseconds() / r.n }
	share := func(d time.Duration) float64 { return 100 * float64(d) / (float64(r.d) * float64(runtime.NumCPU())) }
	s := fmt.Sprintf("%d, %d, %d; %.0f%%", per(r.cpu.server), per(r.cpu.postgres), per(r.cpu.bench), share(r.cpu.idle))
	if r.cpu.steal > 0 {
		s += fmt.Sprintf(" (%.0f%% stolen by the host)", share(r.cpu.steal))
	}
	if g := r.cpu.groups.String(); g != "" {
		s += "; " + g
	}
	if a := r.activity.String(); a != "" {
		s += "; " + a
	}
	return s
}

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
	return r.lat[min(len(r.lat)-1, int(float64(len(r.lat))*p))]
}

func run(cfg config, store, procs string) error {
	dir, err := os.MkdirTemp("", "melonsync-bench-push")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if cfg.bin == "" {
		if cfg.bin, err = serve.Build(dir); err != nil {
			return err
		}
	}
	ms, err := measurements(cfg, store, procs, dir)
	if err != nil {
		return err
	}
	fmt.Printf("%d clients of %d users, 1–3 created records per push, %s each, GOMAXPROCS=%d\n\n", cfg.clients, cfg.users, cfg.dur, runtime.GOMAXPROCS(0))
	header()
	runs := make([][]result, len(ms))
	for rep := 0; rep < cfg.repeat; rep++ {
		var base float64
		for i, m := range ms {
			r, pr, err := m.run()
			if err != nil {
				return err
			}
			if m.baseline {
				base = r.rate()
			}
			line(m.what, r, base)
			if pr != nil {
				pullLine(cfg.pullers, *pr)
			}
			runs[i] = append(runs[i], r)
		}
	}
	if cfg.repeat > 1 {
		medians(ms, runs)
	}
	return nil
}

// benchApp is the application_name of the serve processes' connections.
const benchApp = "melonsync-bench-push"

// A measurement is one line of the table: the baseline, or serve on a store.
type measurement struct {
	what     string
	baseline bool
	run      func() (result, *result, error)
}

func measurements(cfg config, store, procs, dir string) ([]measurement, error) {
	switch store {
	case "sqlite":
		return []measurement{{what: "melonsync, SQLite, 1 process", run: func() (result, *result, error) {
			db := filepath.Join(dir, "bench.db")
			os.Remove(db)
			return measureServe(cfg, db, 1)
		}}}, nil
	case "postgres":
		ms := []measurement{{what: "baseline: pgx INSERT … ON CONFLICT", baseline: true, run: func() (result, *result, error) {
			r, err := baseline(cfg)
			return r, nil, err
		}}}
		for _, p := range strings.Split(procs, ",") {
			var n int
			if _, err := fmt.Sscan(p, &n); err != nil || n < 1 {
				return nil, fmt.Errorf("-procs: %q", p)
			}
			ms = append(ms, measurement{what: fmt.Sprintf("melonsync, PostgreSQL, %d process(es)", n), run: func() (result, *result, error) {
				db, _, drop, err := serve.FreshSchema(cfg.dsn, "melon_bench_push_")
				if err != nil {
					return result{}, nil, err
				}
				defer drop()
				// Named, so that its backends can be told apart in pg_stat_activity.
				c := cfg
				c.activity = func(ctx context.Context) activity { return sampleActivity(ctx, cfg.dsn, benchApp) }
				return measureServe(c, db+"&application_name="+benchApp, n)
			}})
		}
		return ms, nil
	}
	return nil, fmt.Errorf("-store: %q (postgres or sqlite)", store)
}

func header() {
	fmt.Printf("%-44s %10s %9s %9s %8s %9s   %s\n", "what", "pushes/s", "p50", "p99", "errors", "ratio", "CPU µs per push: server, PostgreSQL, load; machine idle (stolen)")
}

// line prints one measurement, with its ratio to base (when base > 0).
func line(what string, r result, base float64) {
	ratio := "-"
	if base > 0 {
		ratio = fmt.Sprintf("%.2f", r.rate()/base)
	}
	fmt.Printf("%-44s %10.0f %9s %9s %8d %9s   %s\n", what, r.rate(), r.pct(0.50).Round(10*time.Microsecond), r.pct(0.99).Round(10*time.Microsecond), r.failures, ratio, r.cpuPerOp())
}

func pullLine(pullers int, r result) {
	fmt.Printf("%-44s %10.0f %9s %9s %8d %9s\n", fmt.Sprintf("  meanwhile %d pullers: pulls/s", pullers), r.rate(),
		r.pct(0.50).Round(10*time.Microsecond), r.pct(0.99).Round(10*time.Microsecond), r.failures, "-")
}

// medians prints, for each measurement, its run of median rate, with the ratio of
// the medians; and each later measurement's rate over the first non-baseline one's,
// run by run (the runs of one round are back to back, so they share the machine's mood).
func medians(ms []measurement, runs [][]result) {
	fmt.Printf("\nmedian of %d rounds\n", len(runs[0]))
	header()
	var base float64
	first := -1
	for i, m := range ms {
		med := median(runs[i])
		if m.baseline {
			base = med.rate()
		} else if first < 0 {
			first = i
		}
		line(m.what, med, base)
	}
	for i := first + 1; first >= 0 && i < len(ms); i++ {
		var ratios []string
		for k := range runs[i] {
			ratios = append(ratios, fmt.Sprintf("%.2f", runs[i][k].rate()/runs[first][k].rate()))
		}
		fmt.Printf("%s ÷ %s, round by round: %s\n", ms[i].what, ms[first].what, strings.Join(ratios, " "))
	}
}

// median returns the run of median rate.
func median(rs []result) result {
	s := append([]result(nil), rs...)
	sort.Slice(s, func(i, j int) bool { return s[i].rate() < s[j].rate() })
	return s[len(s)/2]
}

// record returns a new record of table with a fresh id, as JSON.
func record(table, id string, rng *rand.Rand) string {
	switch table {
	case "projects":
		return fmt.Sprintf(`{"id":%q,"name":"project %d","is_favorite":%t,"position":%d}`, id, rng.IntN(1000), rng.IntN(2) == 0, rng.IntN(100))
	case "tasks":
		return fmt.Sprintf(`{"id":%q,"project_id":"p","name":"task %d","is_done":false,"position":%g,"description":"d"}`, id, rng.IntN(1000), rng.Float64())
	}
	return fmt.Sprintf(`{"id":%q,"task_id":"t","body":"comment %d"}`, id, rng.IntN(1000))
}

var tables = []string{"projects", "tasks", "comments"}

// drive runs clients goroutines calling op for dur after a one-second warm-up
// and collects the operations completed in the measured window.
func drive(cfg config, op func(client int, rng *rand.Rand) error) result {
	var (
		mu       sync.Mutex
		lat      []time.Duration
		n, fails atomic.Int64
		wg       sync.WaitGroup
	)
	warm := time.Now().Add(time.Second)
	end := warm.Add(cfg.dur)
	seen := make(chan observed, 1)
	go func() { seen <- observe(cfg, warm, end) }()
	for c := 0; c < cfg.clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			var mine []time.Duration
			for {
				start := time.Now()
				if start.After(end) {
					break
				}
				err := op(c, rng)
				if start.Before(warm) {
					continue
				}
				if err != nil {
					if fails.Add(1) <= 3 {
						log.Printf("client %d: %v", c, err)
					}
					continue
				}
				mine = append(mine, time.Since(start))
				n.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	r := result{n: n.Load(), d: cfg.dur, lat: lat, failures: fails.Load()}
	o := <-seen
	r.cpu, r.activity = o.cpu, o.activity
	return r
}

// observed is what observe saw of the measured window.
type observed struct {
	cpu      cpuSample
	activity activity
}

// observe reads the CPU used and samples the database's backends from warm to end,
// as cfg says (either may be nil).
func observe(cfg config, warm, end time.Time) observed {
	var r observed
	time.Sleep(time.Until(warm))
	var before cpuSample
	if cfg.cpu != nil {
		before = cfg.cpu()
	}
	if cfg.activity != nil {
		ctx, cancel := context.WithDeadline(context.Background(), end)
		r.activity = cfg.activity(ctx)
		cancel()
	}
	time.Sleep(time.Until(end))
	if cfg.cpu != nil {
		r.cpu = cfg.cpu().sub(before)
	}
	return r
}

// measureServe starts procs serve processes on db and drives pushes through them,
// and pulls when cfg.pullers > 0 (then the second result is theirs).
func measureServe(cfg config, db string, procs int) (result, *result, error) {
	secret := "bench-secret-0123456789abcdef"
	var ps []*serve.Process
	defer func() {
		for _, p := range ps {
			p.Stop()
		}
	}()
	for i := 0; i < procs; i++ {
		// One at a time: the first creates the store, the others find it.
		p, err := serve.Start(cfg.bin, db, serve.TodoSchema(), secret, "--metrics-addr", "127.0.0.1:0")
		if err != nil {
			return result{}, nil, err
		}
		ps = append(ps, p)
	}
	auth, err := mhttp.NewAuth([]byte(secret))
	if err != nil {
		return result{}, nil, err
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.clients}}
	tokens := make([]string, cfg.users)
	last := make([]int64, cfg.users)
	for u := range tokens {
		if tokens[u], err = auth.Mint(fmt.Sprintf("user%d", u), time.Hour); err != nil {
			return result{}, nil, err
		}
	}
	post := func(base, path string, user int, body []byte, out *struct{ Timestamp int64 }) error {
		req, err := http.NewRequest("POST", base+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tokens[user])
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Melon-Device", fmt.Sprintf("dev%d", user))
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %d %.200s", path, resp.StatusCode, b)
		}
		if out != nil {
			return jsonTimestamp(b, out)
		}
		return nil
	}
	// Each user pulls once (what a device does before its first push).
	for u := range tokens {
		var out struct{ Timestamp int64 }
		if err := post(ps[u%procs].URL, "/api/sync/pull", u, []byte(`{"lastPulledAt":null,"schemaVersion":3}`), &out); err != nil {
			return result{}, nil, err
		}
		last[u] = out.Timestamp
	}
	var pulls *result
	var pullWG sync.WaitGroup
	if cfg.pullers > 0 {
		pullWG.Add(1)
		go func() {
			defer pullWG.Done()
			pc := cfg
			pc.clients = cfg.pullers
			pc.cpu, pc.activity = nil, nil // the push line shows the window's CPU and backends
			since := make([]int64, cfg.pullers)
			r := drive(pc, func(c int, rng *rand.Rand) error {
				u := c % cfg.users
				var out struct{ Timestamp int64 }
				body := fmt.Sprintf(`{"lastPulledAt":%d,"schemaVersion":3}`, max(since[c], last[u]))
				if err := post(ps[c%procs].URL, "/api/sync/pull", u, []byte(body), &out); err != nil {
					return err
				}
				since[c] = out.Timestamp
				return nil
			})
			pulls = &r
		}()
	}
	var seq atomic.Int64
	pids := make([]int, len(ps))
	var urls []string
	for i, p := range ps {
		pids[i] = p.Pid
		if p.MetricsURL != "" {
			urls = append(urls, p.MetricsURL)
		}
	}
	cfg.cpu = func() cpuSample { return sampleCPU(pids, urls) }
	r := drive(cfg, func(c int, rng *rand.Rand) error {
		u := rng.IntN(cfg.users)
		var b strings.Builder
		fmt.Fprintf(&b, `{"lastPulledAt":%d,"changes":{`, last[u])
		k := 1 + rng.IntN(3)
		for i := 0; i < k; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			t := tables[i]
			fmt.Fprintf(&b, `%q:{"created":[%s],"updated":[],"deleted":[]}`, t, record(t, fmt.Sprintf("r%d", seq.Add(1)), rng))
		}
		b.WriteString(`}}`)
		return post(ps[c%procs].URL, "/api/sync/push", u, []byte(b.String()), nil)
	})
	pullWG.Wait()
	return r, pulls, nil
}

// jsonTimestamp reads the "timestamp" of a pull answer.
func jsonTimestamp(b []byte, out *struct{ Timestamp int64 }) error {
	i := bytes.LastIndex(b, []byte(`"timestamp":`))
	if i < 0 {
		return fmt.Errorf("no timestamp in %.200s", b)
	}
	out.Timestamp = 0
	for _, c := range b[i+len(`"timestamp":`):] {
		if c < '0' || c > '9' {
			break
		}
		out.Timestamp = out.Timestamp*10 + int64(c-'0')
	}
	return nil
}

// baseline runs the same transactions with plain pgx: cfg.clients connections, each
// transaction 1–3 INSERT … ON CONFLICT of one new row into plain tables of the same
// shape (primary key and an (owner, version) index, like melonsync's).
func baseline(cfg config) (result, error) {
	ctx := context.Background()
	db, name, drop, err := serve.FreshSchema(cfg.dsn, "melon_bench_base_")
	if err != nil {
		return result{}, err
	}
	defer drop()
	conn, err := pgx.Connect(ctx, cfg.dsn)
	if err != nil {
		return result{}, err
	}
	sch := pgx.Identifier{name}.Sanitize()
	_, err = conn.Exec(ctx, `CREATE SCHEMA `+sch+`;
		CREATE TABLE `+sch+`.projects (id text PRIMARY KEY, owner text NOT NULL, version bigint NOT NULL, name text, is_favorite boolean, position double precision);
		CREATE TABLE `+sch+`.tasks (id text PRIMARY KEY, owner text NOT NULL, version bigint NOT NULL, project_id text, name text, is_done boolean, position double precision, description text);
		CREATE TABLE `+sch+`.comments (id text PRIMARY KEY, owner text NOT NULL, version bigint NOT NULL, task_id text, body text);
		CREATE INDEX ON `+sch+`.projects (owner, version); CREATE INDEX ON `+sch+`.tasks (owner, version); CREATE INDEX ON `+sch+`.comments (owner, version)`)
	conn.Close(ctx)
	if err != nil {
		return result{}, err
	}
	pcfg, err := pgxpool.ParseConfig(db)
	if err != nil {
		return result{}, err
	}
	pcfg.MaxConns = int32(cfg.clients)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return result{}, err
	}
	defer pool.Close()
	var seq atomic.Int64
	stmts := map[string]string{
		"projects": `INSERT INTO projects (id, owner, version, name, is_favorite, position) VALUES ($1, $2, $3, 'project', false, 1)
			ON CONFLICT (id) DO UPDATE SET version = excluded.version, name = excluded.name`,
		"tasks": `INSERT INTO tasks (id, owner, version, project_id, name, is_done, position, description) VALUES ($1, $2, $3, 'p', 'task', false, 0.5, 'd')
			ON CONFLICT (id) DO UPDATE SET version = excluded.version, name = excluded.name`,
		"comments": `INSERT INTO comments (id, owner, version, task_id, body) VALUES ($1, $2, $3, 't', 'comment')
			ON CONFLICT (id) DO UPDATE SET version = excluded.version, body = excluded.body`,
	}
	cfg.cpu = func() cpuSample { return sampleCPU(nil, nil) }
	return drive(cfg, func(c int, rng *rand.Rand) error {
		owner := fmt.Sprintf("user%d", rng.IntN(cfg.users))
		k := 1 + rng.IntN(3)
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			for i := 0; i < k; i++ {
				n := seq.Add(1)
				if _, err := tx.Exec(ctx, stmts[tables[i]], fmt.Sprintf("r%d", n), owner, time.Now().UnixMilli()); err != nil {
					return err
				}
			}
			return nil
		})
	}), nil
}
