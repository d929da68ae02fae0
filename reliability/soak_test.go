package reliability_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/admin"
	"github.com/melonsync/melonsync/client"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
	"github.com/melonsync/melonsync/transport"
)

// The soak: many devices push and pull steadily while tombstones older than a short
// retention are purged, and some devices go offline for longer than the retention and
// come back (they must get a replacement answer and converge). Memory, the SQLite
// WAL, PostgreSQL's bookkeeping tables and pull/push latency are sampled per interval,
// printed, and must stay flat. $MELONSYNC_SOAK sets the duration (default 12 s per
// store; for example MELONSYNC_SOAK=5m).

const soakUsers, soakDevicesPerUser, soakTravelers = 6, 2, 3

func soakDuration(t *testing.T) time.Duration {
	if testing.Short() {
		t.Skip("soak skipped in -short mode")
	}
	if v := os.Getenv("MELONSYNC_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 5*time.Second {
			t.Fatalf("MELONSYNC_SOAK=%q: want a duration of 5s or more", v)
		}
		return d
	}
	return 12 * time.Second
}

func TestSoakSQLite(t *testing.T) {
	d := soakDuration(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "server.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	runSoak(t, d, s, func(ctx context.Context, m map[string]int64) error {
		for _, suffix := range []string{"", "-wal"} {
			fi, err := os.Stat(path + suffix)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if fi != nil {
				m["sqlite db"+suffix] = fi.Size()
			}
		}
		return nil
	})
}

func TestSoakPostgres(t *testing.T) {
	d := soakDuration(t)
	name, dsn := testutil.PostgresSchema(t, testutil.PostgresDSN(t), "melon_soak")
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	// PostgreSQL reclaims the space of deleted and updated rows only when vacuumed, and
	// autovacuum may be off (it is on the test machine): each interval the store's own
	// Vacuum runs, as the server's maintenance loop does (MELONSYNC_SOAK_NO_VACUUM=1
	// leaves the tables alone, to see how they grow without it; docs/postgres.md).
	vacuum := os.Getenv("MELONSYNC_SOAK_NO_VACUUM") == ""
	runSoak(t, d, s, func(ctx context.Context, m map[string]int64) error {
		if vacuum {
			if _, err := s.Vacuum(ctx); err != nil {
				return err
			}
		}
		rows, err := conn.Query(ctx, `SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname IN ('__melon_tombstones', '__melon_moves', '__melon_sync_log', '__melon_devices', 'projects', 'tasks')`, name)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var rel string
			var size int64
			if err := rows.Scan(&rel, &size); err != nil {
				return err
			}
			m["pg "+rel] = size
		}
		return rows.Err()
	})
}

// soak is one soak run.
type soak struct {
	t         *testing.T
	sch       *schema.Schema
	store     server.Store
	srv       *testutil.Server
	ctx       context.Context
	retention time.Duration

	mu       sync.Mutex
	pulls    []time.Duration // this interval's latencies
	pushes   []time.Duration
	problems []string

	replacements, comebacks, purged, syncs, failed atomic.Int64
	clockAt                                        []clockSample // the clock seen over time (for purges)
}

type clockSample struct {
	at    time.Time
	clock int64
}

func (s *soak) problem(format string, args ...any) {
	s.mu.Lock()
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func runSoak(t *testing.T, d time.Duration, store server.Store, measure func(context.Context, map[string]int64) error) {
	sch := testutil.TodoSchema(t)
	if err := store.Prepare(context.Background(), sch); err != nil {
		t.Fatal(err)
	}
	s := &soak{t: t, sch: sch, store: store, ctx: context.Background(), retention: max(d/12, time.Second)}
	opts := mhttp.Options{}
	if as, ok := store.(admin.Store); ok {
		// As melonsync serve runs it: a device registry and a sync log, bounded
		// small here so that its trimming runs during the soak.
		opts.Devices = as
		opts.SyncLog = admin.NewLog(as, admin.LogOptions{MaxEntries: 500})
		opts.SyncLog.Start()
		t.Cleanup(opts.SyncLog.Close)
	}
	s.srv = testutil.NewServer(t, server.New(store, sch), opts)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var devices []*soakDevice
	dir := t.TempDir()
	for u := 0; u < soakUsers; u++ {
		user := fmt.Sprintf("user%d", u)
		token := s.srv.Token(t, user)
		for i := 0; i < soakDevicesPerUser; i++ {
			dev := s.newDevice(filepath.Join(dir, fmt.Sprintf("%s-%d.db", user, i)), user, token, u < soakTravelers && i == 0)
			devices = append(devices, dev)
		}
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.purgeLoop(stop) }()
	for _, dev := range devices {
		wg.Add(1)
		go func() { defer wg.Done(); dev.loop(stop) }()
	}

	intervals := 10
	every := d / time.Duration(intervals)
	var series []soakSample
	start := time.Now()
	for i := 0; i < intervals; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * every)))
		series = append(series, s.sample(measure))
	}
	close(stop)
	wg.Wait()
	printSeries(t, series)
	if len(s.problems) > 0 {
		t.Fatalf("%s", strings.Join(s.problems, "\n"))
	}
	s.converge(devices)
	summary := fmt.Sprintf("soak: %v, %d devices of %d users, retention %v: %d syncs (%d failed), %d tombstones purged, %d comebacks after the retention (%d got a replacement answer)",
		d, len(devices), soakUsers, s.retention, s.syncs.Load(), s.failed.Load(), s.purged.Load(), s.comebacks.Load(), s.replacements.Load())
	t.Log(summary)
	fmt.Println(summary)
	if s.purged.Load() == 0 || s.comebacks.Load() == 0 {
		t.Errorf("the soak purged no tombstone or no device came back after the retention: it tests neither")
	}
	checkFlat(t, series, every)
}

// purgeLoop purges tombstones older than the retention, as melonsync serve does hourly
// (here every quarter of the retention). The purge bound is the clock a pull saw
// retention ago, so that it does not depend on what versions are made of.
func (s *soak) purgeLoop(stop <-chan struct{}) {
	tick := time.NewTicker(s.retention / 4)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		var c int64
		if err := s.store.Read(s.ctx, func(tx server.ReadTx) (err error) { c, err = tx.Clock(); return err }); err != nil {
			s.problem("clock: %v", err)
			return
		}
		now := time.Now()
		s.mu.Lock()
		s.clockAt = append(s.clockAt, clockSample{now, c})
		var before int64
		for len(s.clockAt) > 0 && now.Sub(s.clockAt[0].at) >= s.retention {
			before = s.clockAt[0].clock
			s.clockAt = s.clockAt[1:]
		}
		s.mu.Unlock()
		if before == 0 {
			continue
		}
		n, err := s.store.PurgeTombstones(s.ctx, before)
		if err != nil {
			s.problem("purge: %v", err)
			return
		}
		s.purged.Add(n)
	}
}

// soakSample is one interval's figures.
type soakSample struct {
	at                     time.Duration
	heap, rss              int64 // bytes, after a GC
	goroutines             int
	pullP50, pullP99       time.Duration
	pushP50, pushP99       time.Duration
	pullCount, pushCount   int
	sizes                  map[string]int64
	purged, comebacks, rep int64
	// probe is how long a fixed piece of CPU work took in this interval: the
	// machine's speed then, which latencies are compared against.
	probe time.Duration
}

// cpuProbe times a fixed piece of work (the mean of eight runs, so that time lost to
// other processes counts).
func cpuProbe() time.Duration {
	buf := make([]byte, 1<<20)
	start := time.Now()
	for i := 0; i < 8; i++ {
		sha256.Sum256(buf)
		time.Sleep(time.Millisecond)
	}
	return (time.Since(start) - 8*time.Millisecond) / 8
}

var soakStart = time.Now()

func (s *soak) sample(measure func(context.Context, map[string]int64) error) soakSample {
	s.mu.Lock()
	pulls, pushes := s.pulls, s.pushes
	s.pulls, s.pushes = nil, nil
	s.mu.Unlock()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sm := soakSample{at: time.Since(soakStart), heap: int64(ms.HeapAlloc), rss: rss(), goroutines: runtime.NumGoroutine(),
		pullCount: len(pulls), pushCount: len(pushes), sizes: map[string]int64{},
		purged: s.purged.Load(), comebacks: s.comebacks.Load(), rep: s.replacements.Load(), probe: cpuProbe()}
	sm.pullP50, sm.pullP99 = quantile(pulls, 0.5), quantile(pulls, 0.99)
	sm.pushP50, sm.pushP99 = quantile(pushes, 0.5), quantile(pushes, 0.99)
	if err := measure(s.ctx, sm.sizes); err != nil {
		s.problem("measure: %v", err)
	}
	return sm
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// rss returns this process's resident set size (0 where /proc is missing).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func printSeries(t *testing.T, series []soakSample) {
	var names []string
	if len(series) > 0 {
		names = sortedKeys(series[0].sizes)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%8s %8s %8s %5s %6s %8s %8s %6s %8s %8s %7s %5s %8s", "t", "heap MB", "rss MB", "gor", "pulls", "p50", "p99", "pushes", "p50", "p99", "purged", "back", "cpu")
	for _, n := range names {
		fmt.Fprintf(&b, " %s KB", n)
	}
	b.WriteString("\n")
	for _, s := range series {
		fmt.Fprintf(&b, "%8s %8.1f %8.1f %5d %6d %8s %8s %6d %8s %8s %7d %5d %8s",
			s.at.Round(100*time.Millisecond), float64(s.heap)/(1<<20), float64(s.rss)/(1<<20), s.goroutines,
			s.pullCount, s.pullP50.Round(10*time.Microsecond), s.pullP99.Round(10*time.Microsecond),
			s.pushCount, s.pushP50.Round(10*time.Microsecond), s.pushP99.Round(10*time.Microsecond), s.purged, s.comebacks, s.probe.Round(10*time.Microsecond))
		for _, n := range names {
			fmt.Fprintf(&b, " %*d", len(n)+3, s.sizes[n]>>10)
		}
		b.WriteString("\n")
	}
	t.Log("\n" + b.String())
	fmt.Print(b.String())
}

// checkFlat compares the last intervals with the early steady state (intervals 2–4;
// the first is warm-up), taking the median of three on each side so that one noisy
// interval on a busy machine decides nothing: memory and file sizes within 2× (plus a
// little, for figures that start near zero), latency within 3×. Latencies are first
// scaled by the machine's speed in their interval (the CPU probe against its early
// median), so that other load on a shared machine is not taken for a slowdown of
// ours. Latency is compared only over intervals of 10 s or more (MELONSYNC_SOAK of
// 100 s or more), p99 only with 1000 requests per interval.
func checkFlat(t *testing.T, series []soakSample, every time.Duration) {
	if len(series) < 7 {
		return
	}
	early, late := series[1:4], series[len(series)-3:]
	med := func(ss []soakSample, f func(soakSample) int64) int64 {
		v := []int64{f(ss[0]), f(ss[1]), f(ss[2])}
		slices.Sort(v)
		return v[1]
	}
	check := func(what string, f func(soakSample) int64, factor, slack int64, unit string) {
		e, l := med(early, f), med(late, f)
		if l > factor*e+slack {
			t.Errorf("%s grew from %d %s (early) to %d %s (late): more than %d× + %d", what, e, unit, l, unit, factor, slack)
		}
	}
	mb := int64(1 << 20)
	check("heap", func(s soakSample) int64 { return s.heap }, 2, 8*mb, "bytes")
	check("RSS", func(s soakSample) int64 { return s.rss }, 2, 32*mb, "bytes")
	check("goroutines", func(s soakSample) int64 { return int64(s.goroutines) }, 2, 20, "")
	for _, n := range sortedKeys(series[0].sizes) {
		check(n+" size", func(s soakSample) int64 { return s.sizes[n] }, 2, mb, "bytes")
	}
	if every < 10*time.Second {
		// Over a second or so, latency measures the neighbours on a shared machine
		// more than us: the short soak prints it, the long one compares it.
		t.Logf("latency not compared: intervals of %v (10s needed)", every)
		return
	}
	ms := int64(time.Millisecond)
	base := med(early, func(s soakSample) int64 { return int64(s.probe) })
	scaled := func(d func(soakSample) time.Duration) func(soakSample) int64 {
		return func(s soakSample) int64 { return int64(float64(d(s)) * float64(base) / float64(max(s.probe, 1))) }
	}
	check("pull p50 (at the early machine speed)", scaled(func(s soakSample) time.Duration { return s.pullP50 }), 3, 10*ms, "ns")
	check("push p50 (at the early machine speed)", scaled(func(s soakSample) time.Duration { return s.pushP50 }), 3, 10*ms, "ns")
	// A p99 of a few hundred samples is one slow request: compare it only when the
	// intervals hold enough (the long soak's do).
	fewest := series[1].pullCount
	for _, s := range append(append([]soakSample{}, early...), late...) {
		fewest = min(fewest, s.pullCount, s.pushCount)
	}
	if fewest < 1000 {
		t.Logf("p99 not compared: %d requests in the least busy interval (1000 needed)", fewest)
		return
	}
	check("pull p99 (at the early machine speed)", scaled(func(s soakSample) time.Duration { return s.pullP99 }), 3, 100*ms, "ns")
	check("push p99 (at the early machine speed)", scaled(func(s soakSample) time.Duration { return s.pushP99 }), 3, 100*ms, "ns")
}

// soakDevice is a Go client. A traveler goes offline for longer than the retention
// now and then (writing locally meanwhile) and comes back.
type soakDevice struct {
	s            *soak
	user, device string
	db           *client.DB
	opts         client.SyncOptions
	rng          *rand.Rand
	traveler     bool
	n            int
	lastPulledAt atomic.Int64
	// back is set when the device comes back; its next pull answered then stores
	// its experimentalStrategy in backStrategy.
	back         atomic.Bool
	backStrategy atomic.Value
}

func (s *soak) newDevice(path, user, token string, traveler bool) *soakDevice {
	t := s.t
	db, err := client.Open(path, s.sch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	device, err := client.DeviceID(s.ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	d := &soakDevice{s: s, user: user, device: device, db: db, traveler: traveler, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))}
	hc := &http.Client{Transport: &soakRecorder{d: d, next: http.DefaultTransport.(*http.Transport).Clone()}}
	remote, err := transport.NewClient(s.srv.URL, transport.StaticToken(token), device,
		transport.WithHTTPClient(hc), transport.WithGzipThreshold(-1), transport.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	d.opts = remote.Options()
	return d
}

// soakRecorder measures each pull and push (until its whole answer is read) and
// notes each pull's timestamp and strategy.
type soakRecorder struct {
	d    *soakDevice
	next http.RoundTripper
}

func (r *soakRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	kind := opOf(req)
	start := time.Now()
	resp, err := r.next.RoundTrip(req)
	if err != nil || kind == "" {
		return resp, err
	}
	answer, err := readAnswer(resp)
	if err != nil {
		return nil, err
	}
	took := time.Since(start)
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	resp.Header.Del("Content-Encoding")
	resp.ContentLength = int64(len(answer))
	s := r.d.s
	s.mu.Lock()
	if kind == "pull" {
		s.pulls = append(s.pulls, took)
	} else {
		s.pushes = append(s.pushes, took)
	}
	s.mu.Unlock()
	if kind == "pull" && resp.StatusCode == http.StatusOK {
		var pr struct {
			Timestamp int64  `json:"timestamp"`
			Strategy  string `json:"experimentalStrategy"`
		}
		if err := json.Unmarshal(answer, &pr); err == nil {
			if r.d.back.CompareAndSwap(true, false) {
				r.d.backStrategy.Store(pr.Strategy)
			}
			r.d.lastPulledAt.Store(pr.Timestamp)
		}
	}
	return resp, nil
}

func (d *soakDevice) sync() error {
	err := client.Synchronize(d.s.ctx, d.db, d.opts)
	d.s.syncs.Add(1)
	if err != nil {
		d.s.failed.Add(1)
		if errors.Is(err, client.ErrProgrammer) || errors.Is(err, client.ErrInvalidData) || errors.Is(err, client.ErrAuth) {
			d.s.problem("%s: sync: %v", d.device, err)
		}
	}
	return err
}

func (d *soakDevice) loop(stop <-chan struct{}) {
	nextTrip := time.Now().Add(d.s.retention / 2)
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(20+d.rng.IntN(40)) * time.Millisecond):
		}
		if err := d.act(); err != nil {
			d.s.problem("%s: local write: %v", d.device, err)
			return
		}
		if d.traveler && time.Now().After(nextTrip) {
			if !d.travel(stop) {
				return
			}
			nextTrip = time.Now().Add(d.s.retention / 2)
			continue
		}
		d.sync()
	}
}

// travel stays offline for 1.5 retentions, writing now and then, and comes back: when
// the server purged tombstones past the device's lastPulledAt, its pull must be a
// replacement. It returns false when the soak ended meanwhile.
func (d *soakDevice) travel(stop <-chan struct{}) bool {
	back := time.Now().Add(d.s.retention * 3 / 2)
	for time.Now().Before(back) {
		select {
		case <-stop:
			return false
		case <-time.After(d.s.retention / 5):
		}
		if err := d.act(); err != nil {
			d.s.problem("%s: local write: %v", d.device, err)
			return false
		}
	}
	var purged int64
	if err := d.s.store.Read(d.s.ctx, func(tx server.ReadTx) (err error) { purged, err = tx.PurgedThrough(); return err }); err != nil {
		d.s.problem("purged through: %v", err)
		return false
	}
	since := d.lastPulledAt.Load()
	d.backStrategy.Store("")
	d.back.Store(true)
	for attempt := 0; d.sync() != nil; attempt++ {
		if attempt == 5 {
			d.s.problem("%s cannot sync after coming back", d.device)
			return false
		}
	}
	d.s.comebacks.Add(1)
	if d.backStrategy.Load() == melonsync.StrategyReplacement {
		d.s.replacements.Add(1)
	} else if since > 0 && since < purged {
		d.s.problem("%s came back with lastPulledAt %d, tombstones purged through %d: its pull was not a replacement (%q)", d.device, since, purged, d.backStrategy.Load())
	}
	return true
}

// act makes one local change: mostly updates, and creations and deletions at about
// the same rate so that tombstones keep coming while the data stays small.
func (d *soakDevice) act() error {
	recs := d.records()
	keys := sortedKeys(recs)
	d.n++
	name := fmt.Sprintf("%s-%d", d.device[:6], d.n)
	return d.db.Write(d.s.ctx, func(tx *client.Tx) error {
		p := d.rng.Float64()
		switch {
		case len(keys) < 5 || p < 0.25 && len(keys) < 30:
			table := []string{"projects", "tasks"}[d.rng.IntN(2)]
			_, err := tx.Create(table, map[string]any{"name": name, "position": float64(d.rng.IntN(1000))})
			return err
		case p < 0.5:
			table, id, _ := strings.Cut(keys[d.rng.IntN(len(keys))], "/")
			return tx.MarkAsDeleted(table, id)
		default:
			table, id, _ := strings.Cut(keys[d.rng.IntN(len(keys))], "/")
			return tx.Update(table, id, map[string]any{"name": name, "position": float64(d.rng.IntN(1000))})
		}
	})
}

func (d *soakDevice) records() map[string]client.Record {
	out := map[string]client.Record{}
	d.db.Read(d.s.ctx, func(tx *client.Tx) error {
		for _, t := range d.s.sch.Tables {
			recs, err := tx.Query(t.Name, client.Query{})
			if err != nil {
				return err
			}
			for _, r := range recs {
				out[t.Name+"/"+r["id"].(string)] = r
			}
		}
		return nil
	})
	return out
}

// converge syncs every device alone until none has anything to push, then checks that
// each holds exactly its user's data on the server.
func (s *soak) converge(devices []*soakDevice) {
	t := s.t
	for round := 0; round < 4; round++ {
		for _, d := range devices {
			for attempt := 0; d.sync() != nil; attempt++ {
				if attempt == 5 {
					t.Fatalf("%s cannot sync when alone", d.device)
				}
			}
		}
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	for _, d := range devices {
		token := s.srv.Token(t, d.user)
		req, _ := http.NewRequest("POST", s.srv.URL+"/api/sync/pull", strings.NewReader(`{"lastPulledAt":null}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var pr melonsync.PullResponse
		err = json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, got := recordsOf(pr.Changes), d.records()
		if len(got) != len(want) {
			t.Fatalf("%s holds %d records, the server %d", d.device, len(got), len(want))
		}
		for key, w := range want {
			g := got[key]
			if g == nil {
				t.Fatalf("%s lacks %s", d.device, key)
			}
			for col, v := range w {
				if !reflect.DeepEqual(g[col], v) {
					t.Fatalf("%s: %s.%s = %#v, the server has %#v", d.device, key, col, g[col], v)
				}
			}
		}
	}
}
