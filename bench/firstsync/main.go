// Command firstsync measures the Go client's first sync from a real melonsync server
// (SQLite store, HTTP on loopback, in a process of its own so that each client's CPU
// time is its own) next to baselines measured in the same run against the same server:
//
//   - the same rows bulk-inserted into a SQLite file with the same driver (one
//     transaction, one prepared INSERT per table): the floor for any first sync;
//   - the real WatermelonDB client (0.28, Node) on its SQLite adapter (better-sqlite3),
//     through interop/firstsync.mjs (packages: client/testdata/wmdb-sqlite/install.sh).
//
// It prints, for each: wall time, CPU time (user + system), heap and RSS peaks. The Go
// client runs the streamed first sync (UnsafeTurbo, what `melonsync client sync` does
// on an empty file), a normal one, a normal one into a file that holds a local record
// (not eligible for turbo), and a replacement sync of the whole data set; then the
// streamed sync's peak memory at two sizes.
//
//	go run ./bench/firstsync [-n 100000] [-small 10000 -large 200000] [-skip-js] [-loki]
//	go run ./bench/firstsync -n 1000000        # the large run
//	go run ./bench/firstsync -repeat 5 -large 0 # medians of 5 interleaved runs of each
//	go run ./bench/firstsync -large 0 -skip-js -cpuprofile c.prof -serverprofile s.prof -trace t.out
//
// The last form profiles the streamed first sync: the client's CPU, the server's CPU
// while it answers the pull, and an execution trace of the client (`go tool trace`).
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/bench/internal/measure"
	"github.com/melonsync/melonsync/client"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/bulkinsert"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
	"github.com/melonsync/melonsync/transport"
	_ "modernc.org/sqlite"
)

// serveEnv, when set ("DIR:N"), makes this program the seeded server of a run;
// serverProfileEnv names the file of its CPU profile (-serverprofile).
const (
	serveEnv         = "MELONSYNC_FIRSTSYNC_SERVE"
	serverProfileEnv = "MELONSYNC_FIRSTSYNC_SERVER_PROFILE"
)

func main() {
	n := flag.Int("n", 100000, "records in the first sync (a tenth projects, 60% tasks, 30% comments)")
	small := flag.Int("small", 10000, "small size for the streamed sync's memory comparison")
	large := flag.Int("large", 200000, "large size for the streamed sync's memory comparison (0: skip)")
	skipJS := flag.Bool("skip-js", false, "skip the WatermelonDB baselines")
	loki := flag.Bool("loki", false, "also run WatermelonDB on its in-memory LokiJS adapter")
	repeat := flag.Int("repeat", 1, "run the streamed first sync and both baselines this many times, interleaved, and show each one's median")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the streamed first sync to this file")
	flag.StringVar(&traceFile, "trace", "", "write an execution trace of the streamed first sync to this file")
	serverProfile := flag.String("serverprofile", "", "write a CPU profile of the server answering the streamed first sync's pull to this file")
	flag.Parse()
	var err error
	if sch, err = schema.Load(filepath.Join("examples", "todo", "schema.json")); err != nil {
		log.Fatalf("run from the repository's root: %v", err)
	}
	if *serverProfile != "" {
		p, err := filepath.Abs(*serverProfile)
		if err != nil {
			log.Fatal(err)
		}
		os.Setenv(serverProfileEnv, p)
	}
	if v := os.Getenv(serveEnv); v != "" {
		if err := serve(v); err != nil {
			log.Fatal(err)
		}
		return
	}
	dir, err := os.MkdirTemp("", "melonsync-firstsync-")
	if err != nil {
		log.Fatal(err)
	}
	err = run(dir, *n, *small, *large, max(1, *repeat), *skipJS, *loki)
	os.RemoveAll(dir)
	if err != nil {
		log.Fatal(err)
	}
}

var (
	sch                   *schema.Schema
	cpuProfile, traceFile string
)

// benchServer is a seeded server on loopback, in a child process.
type benchServer struct {
	url, token string
	cmd        *exec.Cmd
	stdin      io.Closer
}

func (s *benchServer) close() {
	s.stdin.Close()
	s.cmd.Wait()
}

// startServer runs this program as a server seeded with n records and waits until it
// serves.
func startServer(dir string, n int) (*benchServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", serveEnv, dir, n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 2 {
		in.Close()
		cmd.Wait()
		return nil, fmt.Errorf("the server did not start (%v): %q", err, line)
	}
	return &benchServer{url: f[0], token: f[1], cmd: cmd, stdin: in}, nil
}

// serve seeds a fresh SQLite store ("DIR:N"), serves it, prints "URL TOKEN" and runs
// until its standard input closes.
func serve(spec string) error {
	dir, ns, _ := strings.Cut(spec, ":")
	n, err := strconv.Atoi(ns)
	if err != nil {
		return err
	}
	ctx := context.Background()
	store, err := sqlite.Open(filepath.Join(dir, fmt.Sprintf("server-%d.db", n)))
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Prepare(ctx, sch); err != nil {
		return err
	}
	svc := server.New(store, sch)
	projects, tasks := n/10, n*6/10
	comments := n - projects - tasks
	for _, tbl := range []struct {
		name  string
		count int
		rec   func(i int) string
	}{
		{"projects", projects, func(i int) string {
			return fmt.Sprintf(`{"id":"p%d","name":"Project %d","is_favorite":%v,"position":%d}`, i, i, i%3 == 0, i)
		}},
		{"tasks", tasks, func(i int) string {
			return fmt.Sprintf(`{"id":"t%d","project_id":"p%d","name":"Task number %d","is_done":%v,"position":%d,"description":"Something to do, item %d"}`, i, i%max(projects, 1), i, i%2 == 0, i, i)
		}},
		{"comments", comments, func(i int) string {
			return fmt.Sprintf(`{"id":"c%d","task_id":"t%d","body":"A comment with a few words in it, number %d"}`, i, i%max(tasks, 1), i)
		}},
	} {
		for start := 0; start < tbl.count; start += 10000 {
			var recs []string
			for i := start; i < min(start+10000, tbl.count); i++ {
				recs = append(recs, tbl.rec(i))
			}
			p, err := server.DecodePush(sch, []byte(fmt.Sprintf(`{"lastPulledAt":0,"changes":{%q:{"created":[%s]}}}`, tbl.name, strings.Join(recs, ","))))
			if err != nil {
				return err
			}
			if _, err := svc.Push(ctx, server.Caller{User: "u", Device: "seed"}, p); err != nil {
				return err
			}
		}
	}
	auth, err := mhttp.NewAuth([]byte("bench-secret-0123456789abcdef"))
	if err != nil {
		return err
	}
	tok, err := auth.Mint("u", time.Hour)
	if err != nil {
		return err
	}
	h := mhttp.NewHandler(svc, mhttp.Options{Auth: auth})
	var hdl http.Handler = h
	if file := os.Getenv(serverProfileEnv); file != "" {
		// A CPU profile of the server while it answers the streamed first sync's pull.
		hdl = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/api/sync/pull" || r.Header.Get(melonsync.HeaderDevice) != "bench-turbo.db" {
				h.ServeHTTP(w, r)
				return
			}
			f, err := os.Create(file)
			if err == nil {
				err = pprof.StartCPUProfile(f)
			}
			if err != nil {
				log.Printf("server profile: %v", err)
			}
			h.ServeHTTP(w, r)
			pprof.StopCPUProfile()
			f.Close()
		})
	}
	ts := httptest.NewServer(hdl)
	defer ts.Close()
	fmt.Printf("%s %s\n", ts.URL, tok)
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// syncInto opens (or creates) the client database at path, lets prepare change it,
// then measures one Synchronize from srv, streamed (UnsafeTurbo) when allowTurbo is
// set and the file is eligible.
func syncInto(path string, srv *benchServer, prepare func(*client.DB) error, allowTurbo bool) (*client.DB, measure.Result, *client.SyncLog, error) {
	db, err := client.Open(path, sch)
	if err != nil {
		return nil, measure.Result{}, nil, err
	}
	fail := func(err error) (*client.DB, measure.Result, *client.SyncLog, error) {
		db.Close()
		return nil, measure.Result{}, nil, err
	}
	if prepare != nil {
		if err := prepare(db); err != nil {
			return fail(err)
		}
	}
	hc, err := transport.NewClient(srv.url, transport.StaticToken(srv.token), "bench-"+filepath.Base(path), transport.WithTimeout(10*time.Minute))
	if err != nil {
		return fail(err)
	}
	opts := hc.Options()
	slog := &client.SyncLog{}
	opts.Log = slog
	m, err := measure.Run(func() error {
		var err error
		if allowTurbo {
			if opts.UnsafeTurbo, err = client.TurboEligible(context.Background(), db); err != nil {
				return err
			}
		}
		return client.Synchronize(context.Background(), db, opts)
	})
	if err != nil {
		return fail(err)
	}
	return db, m, slog, nil
}

func count(db *client.DB) (int, error) {
	total := 0
	err := db.Read(context.Background(), func(tx *client.Tx) error {
		for _, t := range sch.Tables {
			n, err := tx.Count(t.Name, client.Query{IncludeDeleted: true})
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	return total, err
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func rate(n int, d time.Duration) string {
	return fmt.Sprintf("%.0fk rec/s", float64(n)/d.Seconds()/1000)
}

type table struct{ rows [][]string }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print() {
	w := make([]int, 8)
	for _, r := range t.rows {
		for i, c := range r {
			w[i] = max(w[i], len(c))
		}
	}
	for _, r := range t.rows {
		for i, c := range r {
			if i == 0 {
				fmt.Printf("%-*s", w[i]+2, c)
			} else {
				fmt.Printf("%*s", w[i]+2, c)
			}
		}
		fmt.Println()
	}
}

func row(t *table, name string, m measure.Result, recs int) {
	t.add(name, m.D.Round(time.Millisecond).String(), m.CPU.Round(time.Millisecond).String(), rate(recs, m.D), mib(m.HeapPeak), mib(m.RSSPeak))
}

func ratio(a, b time.Duration) string { return fmt.Sprintf("%.2f×", a.Seconds()/b.Seconds()) }

func run(dir string, n, small, large, repeat int, skipJS, loki bool) error {
	fmt.Printf("seeding a server (its own process) with %d records…\n", n)
	srv, err := startServer(dir, n)
	if err != nil {
		return err
	}
	defer srv.close()
	fmt.Printf("\nfirst sync of %d records into a fresh client database (SQLite file), same server\n", n)
	t := &table{}
	t.add("", "time", "CPU", "rate", "heap peak", "RSS peak")

	// Each of the three runs repeat times, interleaved, on a fresh file; the table
	// shows each one's median run (by time).
	var turbos, raws []measure.Result
	var jss []*jsResult
	for i := range repeat {
		suffix := ""
		if i > 0 {
			suffix = fmt.Sprintf("-%d", i)
		}
		stopProfiles := func() {}
		if i == 0 {
			if stopProfiles, err = startProfiles(); err != nil {
				return err
			}
		}
		tdb, turbo, tlog, err := syncInto(filepath.Join(dir, "turbo"+suffix+".db"), srv, nil, true)
		stopProfiles()
		if err != nil {
			return fmt.Errorf("streamed first sync: %w", err)
		}
		if got, err := count(tdb); err != nil || got != n || !tlog.Turbo {
			return fmt.Errorf("streamed first sync holds %d records (%v, turbo %v), want %d", got, err, tlog.Turbo, n)
		}
		tdb.Close()
		turbos = append(turbos, turbo)

		raw, err := measure.Run(func() error { return bulkinsert.IntoFile(filepath.Join(dir, "raw"+suffix+".db"), n) })
		if err != nil {
			return fmt.Errorf("raw insert: %w", err)
		}
		raws = append(raws, raw)

		if !skipJS {
			js, err := jsFirstSync(srv, filepath.Join(dir, "wmdb"+suffix+".db"))
			if err != nil {
				fmt.Printf("(WatermelonDB on SQLite skipped: %v)\n", err)
				skipJS = true
			} else {
				jss = append(jss, js)
			}
		}
	}
	slices.SortFunc(turbos, func(a, b measure.Result) int { return cmp.Compare(a.D, b.D) })
	slices.SortFunc(raws, func(a, b measure.Result) int { return cmp.Compare(a.D, b.D) })
	slices.SortFunc(jss, func(a, b *jsResult) int { return cmp.Compare(a.Seconds, b.Seconds) })
	turbo, raw := turbos[len(turbos)/2], raws[len(raws)/2]
	row(t, "Go client, streamed (UnsafeTurbo)", turbo, n)
	row(t, "baseline: bulk INSERT of the rows (same driver)", raw, n)
	var js, jsLoki *jsResult
	if len(jss) > 0 {
		js = jss[len(jss)/2]
		t.add("baseline: WatermelonDB 0.28, SQLite adapter (Node)", js.d().Round(time.Millisecond).String(), js.cpu().Round(time.Millisecond).String(), rate(n, js.d()), "", mib(js.PeakRSS))
	}
	if !skipJS {
		if loki {
			if jsLoki, err = jsFirstSync(srv, ""); err != nil {
				fmt.Printf("(WatermelonDB on LokiJS skipped: %v)\n", err)
			} else {
				t.add("WatermelonDB 0.28, LokiJS in memory (Node)", jsLoki.d().Round(time.Millisecond).String(), jsLoki.cpu().Round(time.Millisecond).String(), rate(n, jsLoki.d()), "", mib(jsLoki.PeakRSS))
			}
		}
	}

	ndb, normal, _, err := syncInto(filepath.Join(dir, "normal.db"), srv, nil, false)
	if err != nil {
		return fmt.Errorf("normal first sync: %w", err)
	}
	if got, err := count(ndb); err != nil || got != n {
		return fmt.Errorf("normal first sync holds %d records (%v), want %d", got, err, n)
	}
	ndb.Close()
	row(t, "Go client, not streamed (UnsafeTurbo off)", normal, n)

	// Not eligible for the streamed sync: the file holds one local record.
	ldb, local, llog, err := syncInto(filepath.Join(dir, "local.db"), srv, func(db *client.DB) error {
		return db.Write(context.Background(), func(tx *client.Tx) error {
			_, err := tx.Create("projects", map[string]any{"id": "local1", "name": "made before the first sync"})
			return err
		})
	}, true)
	if err != nil {
		return fmt.Errorf("first sync into a file with a local record: %w", err)
	}
	if got, err := count(ldb); err != nil || got != n+1 || llog.Turbo {
		return fmt.Errorf("first sync with a local record holds %d records (%v, turbo %v), want %d", got, err, llog.Turbo, n+1)
	}
	row(t, "Go client, not streamable (1 local record)", local, n)

	// A replacement sync of the whole data set (the local record was pushed: n+1 records
	// now): the server answers one when the
	// client's lastPulledAt is one it never handed out.
	if err := ldb.SetLocal(context.Background(), melonsync.KeyLastPulledAt, strconv.FormatInt(1<<50, 10)); err != nil {
		return err
	}
	ldb.Close()
	rdb, repl, rlog, err := syncInto(filepath.Join(dir, "local.db"), srv, nil, true)
	if err != nil {
		return fmt.Errorf("replacement sync: %w", err)
	}
	if got, err := count(rdb); err != nil || got != n+1 || rlog.RemoteChangeCount != n+1 {
		return fmt.Errorf("replacement sync holds %d records (%v), pulled %d, want %d of each", got, err, rlog.RemoteChangeCount, n+1)
	}
	row(t, "Go client, replacement sync of every record", repl, n)

	// An incremental sync: another device changes 10 records.
	inc, pulled, err := incremental(srv, rdb)
	rdb.Close()
	if err != nil {
		return err
	}
	t.print()
	if repeat > 1 {
		fmt.Printf("\nmedians of %d interleaved runs; times from fastest to slowest:\n", repeat)
		spread := func(name string, ds []time.Duration) {
			var parts []string
			for _, d := range ds {
				parts = append(parts, d.Round(time.Millisecond).String())
			}
			fmt.Printf("  %-36s %s\n", name, strings.Join(parts, "  "))
		}
		var ds []time.Duration
		for _, r := range turbos {
			ds = append(ds, r.D)
		}
		spread("Go client, streamed", ds)
		ds = nil
		for _, r := range raws {
			ds = append(ds, r.D)
		}
		spread("bulk INSERT", ds)
		ds = nil
		for _, r := range jss {
			ds = append(ds, r.d())
		}
		spread("WatermelonDB, SQLite adapter", ds)
	}
	fmt.Printf("\nGo streamed first sync: CPU %s of the bulk-insert baseline's", ratio(turbo.CPU, raw.CPU))
	if js != nil {
		fmt.Printf("; WatermelonDB on SQLite takes %s its time and %s its CPU", ratio(js.d(), turbo.D), ratio(js.cpu(), turbo.CPU))
	}
	fmt.Printf("\nincremental sync after 10 changes on another device: %s (pulled %d records)\n", inc.Round(100*time.Microsecond), pulled)

	if large > 0 {
		fmt.Printf("\nstreamed first sync memory at two sizes (flat memory: the larger sync must not need more)\n")
		mt := &table{}
		mt.add("records", "time", "CPU", "rate", "heap peak", "RSS peak")
		for _, size := range []int{small, large} {
			s, err := startServer(dir, size)
			if err != nil {
				return err
			}
			d, m, _, err := syncInto(filepath.Join(dir, fmt.Sprintf("turbo-%d.db", size)), s, nil, true)
			s.close()
			if err != nil {
				return err
			}
			d.Close()
			row(mt, strconv.Itoa(size), m, size)
		}
		mt.print()
	}
	return nil
}

// startProfiles starts the CPU profile and the execution trace the flags ask for;
// the function it returns stops them.
func startProfiles() (stop func(), err error) {
	var files []*os.File
	stop = func() {
		if cpuProfile != "" {
			pprof.StopCPUProfile()
		}
		if traceFile != "" {
			trace.Stop()
		}
		for _, f := range files {
			f.Close()
		}
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
	}
	if traceFile != "" {
		f, err := os.Create(traceFile)
		if err == nil {
			files = append(files, f)
			err = trace.Start(f)
		}
		if err != nil {
			if cpuProfile != "" {
				pprof.StopCPUProfile()
			}
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
	}
	return stop, nil
}

// incremental changes 10 records from another device and syncs db.
func incremental(srv *benchServer, db *client.DB) (time.Duration, int, error) {
	hc, _ := transport.NewClient(srv.url, transport.StaticToken(srv.token), "other-device")
	pull, err := hc.Pull(context.Background(), client.PullArgs{Turbo: true})
	if err != nil {
		return 0, 0, err
	}
	var ts struct {
		Timestamp int64 `json:"timestamp"`
	}
	err = json.NewDecoder(pull.Body).Decode(&ts)
	pull.Body.Close()
	if err != nil {
		return 0, 0, err
	}
	var upd []melonsync.RawRecord
	for i := 0; i < 10; i++ {
		upd = append(upd, melonsync.RawRecord{"id": fmt.Sprintf("t%d", i*97), "name": fmt.Sprintf("changed %d", i), "is_done": true, "position": float64(i), "project_id": "p0", "description": nil})
	}
	if _, err := hc.Push(context.Background(), melonsync.PushRequest{LastPulledAt: ts.Timestamp, Changes: melonsync.Changes{"tasks": {Updated: upd}}}); err != nil {
		return 0, 0, err
	}
	hcA, _ := transport.NewClient(srv.url, transport.StaticToken(srv.token), "bench-local.db")
	slog := &client.SyncLog{}
	opts := hcA.Options()
	opts.Log = slog
	m, err := measure.Run(func() error { return client.Synchronize(context.Background(), db, opts) })
	if err != nil {
		return 0, 0, fmt.Errorf("incremental sync: %w", err)
	}
	return m.D, slog.RemoteChangeCount, nil
}

// jsResult is what interop/firstsync.mjs prints.
type jsResult struct {
	Records    int     `json:"records"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpuSeconds"`
	PeakRSS    uint64  `json:"peakRSS"`
	Adapter    string  `json:"adapter"`
	Logs       []any   `json:"logs"`
}

func (r *jsResult) d() time.Duration   { return time.Duration(r.Seconds * float64(time.Second)) }
func (r *jsResult) cpu() time.Duration { return time.Duration(r.CPUSeconds * float64(time.Second)) }

// jsFirstSync runs the real WatermelonDB client's first sync against srv, on its
// SQLite adapter into file (or, file "", on LokiJS in memory).
func jsFirstSync(srv *benchServer, file string) (*jsResult, error) {
	if _, err := exec.LookPath("node"); err != nil {
		return nil, fmt.Errorf("node is not installed")
	}
	if out, err := exec.Command("bash", "interop/setup.sh").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("interop/setup.sh: %v: %s", err, strings.TrimSpace(string(out)))
	}
	cmd := exec.Command("node", "--max-old-space-size=8192", "interop/firstsync.mjs", srv.url, srv.token, filepath.Join("examples", "todo", "schema.json"))
	if file != "" {
		mods := filepath.Join("client", "testdata", "wmdb-sqlite")
		if _, err := os.Stat(filepath.Join(mods, "node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node")); err != nil {
			// Not installed yet: install it (compiled against this Node, about a minute).
			fmt.Fprintln(os.Stderr, "installing WatermelonDB's SQLite adapter packages for the baseline…")
			if out, err := exec.Command("sh", filepath.Join(mods, "install.sh")).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("%s/install.sh: %v: %s", mods, err, strings.TrimSpace(string(out)))
			}
		}
		abs, _ := filepath.Abs(mods)
		cmd.Env = append(os.Environ(), "FIRSTSYNC_SQLITE="+file, "FIRSTSYNC_MODULES="+abs)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res jsResult
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil {
		return nil, errors.Join(fmt.Errorf("firstsync.mjs: %v: %s", jerr, strings.TrimSpace(stderr.String())), err)
	}
	if res.Records == 0 {
		return nil, fmt.Errorf("firstsync.mjs synced no record: %s", out)
	}
	return &res, nil
}
