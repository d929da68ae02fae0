// Command firstsync measures the Go client's first sync from a real melonsync server
// (SQLite store, HTTP on loopback): a normal Synchronize and the streamed (turbo) one,
// the turbo sync's peak memory at two sizes, and an incremental sync of 10 changes —
// next to baselines measured in the same run: the same rows bulk-inserted into a SQLite
// file with the same driver, and the real WatermelonDB client (LokiJS in Node, through
// interop/driver.mjs) doing the same first sync.
//
//	go run ./bench/firstsync [-n 100000] [-small 10000 -large 200000] [-skip-js]
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/bench/internal/measure"
	"github.com/melonsync/melonsync/client"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
	"github.com/melonsync/melonsync/transport"
	_ "modernc.org/sqlite"
)

func main() {
	n := flag.Int("n", 100000, "records in the first sync (a tenth projects, 60% tasks, 30% comments)")
	small := flag.Int("small", 10000, "small size for the turbo memory comparison")
	large := flag.Int("large", 200000, "large size for the turbo memory comparison (0: skip)")
	skipJS := flag.Bool("skip-js", false, "skip the WatermelonDB baseline")
	flag.Parse()
	dir, err := os.MkdirTemp("", "melonsync-firstsync-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(dir, *n, *small, *large, *skipJS); err != nil {
		log.Fatal(err)
	}
}

var sch *schema.Schema

// benchServer is a seeded server on loopback.
type benchServer struct {
	url, token string
	svc        *server.Service
	close      func()
}

// startServer seeds a fresh SQLite store with n records and serves it.
func startServer(dir string, n int) (*benchServer, error) {
	ctx := context.Background()
	store, err := sqlite.Open(filepath.Join(dir, fmt.Sprintf("server-%d.db", n)))
	if err != nil {
		return nil, err
	}
	if err := store.Prepare(ctx, sch); err != nil {
		return nil, err
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
				return nil, err
			}
			if _, err := svc.Push(ctx, server.Caller{User: "u", Device: "seed"}, p); err != nil {
				return nil, err
			}
		}
	}
	auth, err := mhttp.NewAuth([]byte("bench-secret-0123456789abcdef"))
	if err != nil {
		return nil, err
	}
	tok, err := auth.Mint("u", time.Hour)
	if err != nil {
		return nil, err
	}
	ts := httptest.NewServer(mhttp.NewHandler(svc, mhttp.Options{Auth: auth}))
	return &benchServer{url: ts.URL, token: tok, svc: svc, close: func() { ts.Close(); store.Close() }}, nil
}

// firstSync syncs a fresh client database from srv and returns the database.
func firstSync(dir, name string, srv *benchServer, turbo bool) (*client.DB, measure.Result, error) {
	db, err := client.Open(filepath.Join(dir, name), sch)
	if err != nil {
		return nil, measure.Result{}, err
	}
	hc, err := transport.NewClient(srv.url, transport.StaticToken(srv.token), "bench-"+name)
	if err != nil {
		return nil, measure.Result{}, err
	}
	opts := hc.Options()
	opts.UnsafeTurbo = turbo
	m, err := measure.Run(func() error { return client.Synchronize(context.Background(), db, opts) })
	if err != nil {
		db.Close()
		return nil, m, err
	}
	return db, m, nil
}

func count(db *client.DB) (int, error) {
	total := 0
	err := db.Read(context.Background(), func(tx *client.Tx) error {
		for _, t := range sch.Tables {
			n, err := tx.Count(t.Name, client.Query{})
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

func run(dir string, n, small, large int, skipJS bool) error {
	var err error
	if sch, err = schema.Load(filepath.Join("examples", "todo", "schema.json")); err != nil {
		return fmt.Errorf("run from the repository's root: %w", err)
	}
	fmt.Printf("seeding a server with %d records…\n", n)
	srv, err := startServer(dir, n)
	if err != nil {
		return err
	}
	defer srv.close()
	fmt.Printf("\nfirst sync of %d records into a fresh Go client database (SQLite file)\n", n)
	fmt.Printf("%-50s %10s %12s %12s %12s\n", "", "time", "rate", "heap peak", "RSS peak")
	row := func(name string, m measure.Result, recs int) {
		fmt.Printf("%-50s %10s %12s %12s %12s\n", name, m.D.Round(time.Millisecond), rate(recs, m.D), mib(m.HeapPeak), mib(m.RSSPeak))
	}

	db, normal, err := firstSync(dir, "normal.db", srv, false)
	if err != nil {
		return fmt.Errorf("normal first sync: %w", err)
	}
	if got, err := count(db); err != nil || got != n {
		return fmt.Errorf("normal first sync holds %d records (%v), want %d", got, err, n)
	}
	row("Synchronize", normal, n)
	tdb, turbo, err := firstSync(dir, "turbo.db", srv, true)
	if err != nil {
		return fmt.Errorf("turbo first sync: %w", err)
	}
	if got, err := count(tdb); err != nil || got != n {
		return fmt.Errorf("turbo first sync holds %d records (%v), want %d", got, err, n)
	}
	tdb.Close()
	row("Synchronize, streamed (UnsafeTurbo)", turbo, n)

	raw, err := measure.Run(func() error { return rawInsert(filepath.Join(dir, "raw.db"), n) })
	if err != nil {
		return fmt.Errorf("raw insert: %w", err)
	}
	row("baseline: bulk INSERT of the rows (same driver)", raw, n)

	if skipJS {
		fmt.Println("baseline: WatermelonDB (LokiJS, Node): skipped (-skip-js)")
	} else if ms, applyMS, err := jsFirstSync(srv, n); err != nil {
		fmt.Printf("baseline: WatermelonDB (LokiJS, Node): skipped (%v)\n", err)
	} else {
		d := time.Duration(ms * float64(time.Millisecond))
		fmt.Printf("%-50s %10s %12s   (apply %.0f ms; in-memory LokiJS, no disk)\n", "baseline: WatermelonDB synchronize() in Node", d.Round(time.Millisecond), rate(n, d), applyMS)
	}

	// An incremental sync: another device changes 10 records.
	hc, _ := transport.NewClient(srv.url, transport.StaticToken(srv.token), "other-device")
	pull, err := hc.Pull(context.Background(), client.PullArgs{})
	if err != nil {
		return err
	}
	if pull.Body != nil {
		pull.Body.Close()
	}
	var upd []melonsync.RawRecord
	for i := 0; i < 10; i++ {
		upd = append(upd, melonsync.RawRecord{"id": fmt.Sprintf("t%d", i*97), "name": fmt.Sprintf("changed %d", i), "is_done": true, "position": float64(i), "project_id": "p0", "description": nil})
	}
	if _, err := hc.Push(context.Background(), melonsync.PushRequest{LastPulledAt: pull.Timestamp, Changes: melonsync.Changes{"tasks": {Updated: upd}}}); err != nil {
		return err
	}
	hcA, _ := transport.NewClient(srv.url, transport.StaticToken(srv.token), "bench-normal.db")
	logA := &client.SyncLog{}
	opts := hcA.Options()
	opts.Log = logA
	inc, err := measure.Run(func() error { return client.Synchronize(context.Background(), db, opts) })
	if err != nil {
		return fmt.Errorf("incremental sync: %w", err)
	}
	db.Close()
	fmt.Printf("\nincremental sync after 10 changes on another device: %s (pulled %d records)\n", inc.D.Round(100*time.Microsecond), logA.RemoteChangeCount)

	if large > 0 {
		fmt.Printf("\nstreamed first sync memory at two sizes (flat memory: the larger sync must not need more)\n")
		fmt.Printf("%-12s %10s %12s %12s %12s\n", "records", "time", "rate", "heap peak", "RSS peak")
		for _, size := range []int{small, large} {
			s, err := startServer(dir, size)
			if err != nil {
				return err
			}
			d, m, err := firstSync(dir, fmt.Sprintf("turbo-%d.db", size), s, true)
			s.close()
			if err != nil {
				return err
			}
			d.Close()
			fmt.Printf("%-12d %10s %12s %12s %12s\n", size, m.D.Round(time.Millisecond), rate(size, m.D), mib(m.HeapPeak), mib(m.RSSPeak))
		}
	}
	return nil
}

// rawInsert writes n rows shaped like the synced ones into a fresh SQLite file in one
// transaction with prepared statements: the floor for any first sync into SQLite.
func rawInsert(path string, n int) error {
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return err
	}
	defer db.Close()
	for _, ddl := range []string{
		`create table projects (id text primary key, _status text, _changed text, name text, is_favorite integer, position real)`,
		`create table tasks (id text primary key, _status text, _changed text, project_id text, name text, is_done integer, position real, description text)`,
		`create index tasks_project_id on tasks (project_id)`,
		`create table comments (id text primary key, _status text, _changed text, task_id text, body text)`,
		`create index comments_task_id on comments (task_id)`,
	} {
		if _, err := db.Exec(ddl); err != nil {
			return err
		}
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	projects, tasks := n/10, n*6/10
	comments := n - projects - tasks
	ps, _ := tx.Prepare(`insert into projects values (?, 'synced', '', ?, ?, ?)`)
	ts, _ := tx.Prepare(`insert into tasks values (?, 'synced', '', ?, ?, ?, ?, ?)`)
	cs, _ := tx.Prepare(`insert into comments values (?, 'synced', '', ?, ?)`)
	for i := 0; i < projects; i++ {
		if _, err := ps.Exec(fmt.Sprintf("p%d", i), fmt.Sprintf("Project %d", i), i%3 == 0, float64(i)); err != nil {
			return err
		}
	}
	for i := 0; i < tasks; i++ {
		if _, err := ts.Exec(fmt.Sprintf("t%d", i), fmt.Sprintf("p%d", i%max(projects, 1)), fmt.Sprintf("Task number %d", i), i%2 == 0, float64(i), fmt.Sprintf("Something to do, item %d", i)); err != nil {
			return err
		}
	}
	for i := 0; i < comments; i++ {
		if _, err := cs.Exec(fmt.Sprintf("c%d", i), fmt.Sprintf("t%d", i%max(tasks, 1)), fmt.Sprintf("A comment with a few words in it, number %d", i)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// jsFirstSync runs the real WatermelonDB client's first sync against srv with the
// interop driver and returns the time spent in synchronize() and in applying.
func jsFirstSync(srv *benchServer, n int) (ms, applyMS float64, err error) {
	if _, err := exec.LookPath("node"); err != nil {
		return 0, 0, fmt.Errorf("node is not installed")
	}
	if out, err := exec.Command("bash", "interop/setup.sh").CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("interop/setup.sh: %v: %s", err, strings.TrimSpace(string(out)))
	}
	schemaJSON, err := os.ReadFile(filepath.Join("examples", "todo", "schema.json"))
	if err != nil {
		return 0, 0, err
	}
	sc := map[string]any{
		"url":     srv.url,
		"schema":  json.RawMessage(schemaJSON),
		"tokens":  map[string]string{"u": srv.token},
		"clients": map[string]any{"A": map[string]any{"user": "u"}},
		"steps":   []any{map[string]any{"op": "sync", "client": "A", "name": "first sync"}},
	}
	f, err := os.CreateTemp("", "firstsync-*.json")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	json.NewEncoder(f).Encode(sc)
	f.Close()
	out, err := exec.Command("node", "--max-old-space-size=8192", "interop/driver.mjs", f.Name()).Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
		Steps []struct {
			MS     float64        `json:"ms"`
			OK     bool           `json:"ok"`
			Timing map[string]any `json:"timing"`
			Count  int            `json:"count"`
		} `json:"steps"`
	}
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil {
		return 0, 0, fmt.Errorf("driver: %v (%v)", jerr, err)
	}
	if !res.OK || len(res.Steps) == 0 {
		return 0, 0, fmt.Errorf("driver: %s", res.Error)
	}
	s := res.Steps[0]
	if a, ok := s.Timing["applyMs"].(float64); ok {
		applyMS = a
	}
	return s.MS, applyMS, nil
}
