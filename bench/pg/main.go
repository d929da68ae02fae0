// Command pg measures melonsync on PostgreSQL: a first-sync pull of 100k records over
// three tables and a push of 10k records, each through a real "melonsync serve"
// process over HTTP on loopback, next to a plain-PostgreSQL baseline measured in the
// same run:
//
//   - pull: COPY (SELECT row_to_json(t) FROM t) TO STDOUT of the same rows;
//   - push: COPY into a temporary table, then INSERT … ON CONFLICT into a plain table
//     of the same shape, in one transaction.
//
// Server memory is the serve process's peak resident set size during the operation
// (VmHWM, reset before each one). Each figure is the median of -runs runs.
//
//	go run ./bench/pg -dsn postgres://postgres@127.0.0.1:5432/postgres
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/bench/internal/serve"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

func main() {
	def := os.Getenv("MELONSYNC_TEST_POSTGRES")
	if def == "" {
		def = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	dsn := flag.String("dsn", def, "PostgreSQL URL (a fresh schema is created in it and dropped at the end)")
	n := flag.Int("n", 100000, "records in the pull, spread over the 3 tables")
	pushN := flag.Int("push", 10000, "records in the push")
	runs := flag.Int("runs", 3, "runs of each measurement (the median is shown)")
	bin := flag.String("melonsync", "", "melonsync binary (default: built from this module)")
	flag.Parse()
	if err := run(*dsn, *n, *pushN, *runs, *bin); err != nil {
		log.Fatal(err)
	}
}

type bench struct {
	ctx   context.Context
	dsn   string // with search_path set to the bench schema
	conn  *pgx.Conn
	sch   *schema.Schema
	base  string // server URL
	pid   int
	token string
}

func run(dsn string, n, pushN, runs int, bin string) error {
	ctx := context.Background()
	schemaPath := serve.TodoSchema()
	sch, err := schema.Load(schemaPath)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "melonsync-bench-pg")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		if bin, err = serve.Build(dir); err != nil {
			return err
		}
	}

	// A fresh schema, dropped at the end.
	bdsn, _, drop, err := serve.FreshSchema(dsn, "melon_bench_")
	if err != nil {
		return err
	}
	defer drop()
	conn, err := pgx.Connect(ctx, bdsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)

	// Seed n records through the store (melonsync's own write path), 10k per push.
	store, err := postgres.Open(ctx, bdsn)
	if err != nil {
		return err
	}
	if err := store.Prepare(ctx, sch); err != nil {
		return err
	}
	svc := server.New(store, sch)
	per := []int{n / 3, n / 3, n - 2*(n/3)}
	for ti, t := range []string{"projects", "tasks", "comments"} {
		for start := 0; start < per[ti]; start += 10000 {
			var recs []string
			for i := start; i < min(start+10000, per[ti]); i++ {
				recs = append(recs, seedRecord(t, "s", i))
			}
			p, err := server.DecodePush(sch, []byte(fmt.Sprintf(`{"lastPulledAt":0,"changes":{%q:{"created":[%s]}}}`, t, strings.Join(recs, ","))))
			if err != nil {
				return err
			}
			if _, err := svc.Push(ctx, server.Caller{User: "bench", Device: "seed"}, p); err != nil {
				return err
			}
		}
	}
	store.Close()
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE projects, tasks, comments`); err != nil {
		return err
	}

	secret := "bench-secret-0123456789abcdef"
	proc, err := serve.Start(bin, bdsn, schemaPath, secret)
	if err != nil {
		return err
	}
	defer proc.Stop()
	base, pid := proc.URL, proc.Pid
	auth, _ := mhttp.NewAuth([]byte(secret))
	tok, _ := auth.Mint("bench", time.Hour)
	bn := &bench{ctx: ctx, dsn: bdsn, conn: conn, sch: sch, base: base, pid: pid, token: tok}

	var pgVersion string
	conn.QueryRow(ctx, `SHOW server_version`).Scan(&pgVersion)
	fmt.Printf("melonsync on PostgreSQL %s: one serve process, HTTP on loopback, GOMAXPROCS=%d, median of %d runs\n\n", pgVersion, runtime.GOMAXPROCS(0), runs)
	fmt.Printf("%-58s %9s %11s %12s %13s\n", "what", "time", "records/s", "bytes", "server peak")
	line := func(what string, d time.Duration, recs int, size int64, rss int64) {
		mem := "-"
		if rss > 0 {
			mem = fmt.Sprintf("%.1f MiB", float64(rss)/(1<<20))
		}
		fmt.Printf("%-58s %9s %11.0f %12d %13s\n", what, d.Round(time.Millisecond), float64(recs)/d.Seconds(), size, mem)
	}

	// Pull: first sync of everything, plain and gzip.
	if _, err := bn.post("/api/sync/pull", tok, []byte(`{"lastPulledAt":null}`), false); err != nil {
		return err // warm-up
	}
	for _, gz := range []bool{false, true} {
		var size int64
		d, rss, err := bn.measure(runs, func() error {
			var err error
			size, err = bn.post("/api/sync/pull", tok, []byte(`{"lastPulledAt":null}`), gz)
			return err
		})
		if err != nil {
			return err
		}
		what := fmt.Sprintf("pull, first sync, %d records (HTTP, identity)", n)
		if gz {
			what = fmt.Sprintf("pull, first sync, %d records (HTTP, gzip)", n)
		}
		line(what, d, n, size, rss)
	}
	var size int64
	d, _, err := bn.measure(runs, func() error {
		size = 0
		for _, t := range sch.Tables {
			cols := []string{"id"}
			for _, c := range t.Columns {
				cols = append(cols, `"`+c.Name+`"`)
			}
			var w countWriter
			_, err := conn.PgConn().CopyTo(ctx, &w, `COPY (SELECT row_to_json(t) FROM (SELECT `+strings.Join(cols, ", ")+` FROM "`+t.Name+`" WHERE __owner = 'bench') t) TO STDOUT`)
			if err != nil {
				return err
			}
			size += w.n
		}
		return nil
	})
	if err != nil {
		return err
	}
	line("baseline: COPY (SELECT row_to_json(t) FROM t) TO STDOUT", d, n, size, 0)

	// Push: pushN created tasks for a new user each run.
	pushRun := 0
	d, rss, err := bn.measure(runs, func() error {
		pushRun++
		user := fmt.Sprintf("pusher%d", pushRun)
		ptok, _ := auth.Mint(user, time.Hour)
		var recs []string
		for i := 0; i < pushN; i++ {
			recs = append(recs, seedRecord("tasks", user, i))
		}
		body := []byte(fmt.Sprintf(`{"lastPulledAt":0,"changes":{"tasks":{"created":[%s],"updated":[],"deleted":[]}}}`, strings.Join(recs, ",")))
		size = int64(len(body))
		_, err := bn.post("/api/sync/push", ptok, body, false)
		return err
	})
	if err != nil {
		return err
	}
	line(fmt.Sprintf("push, %d created (HTTP)", pushN), d, pushN, size, rss)
	if _, err := conn.Exec(ctx, `CREATE TABLE plain_tasks (id text PRIMARY KEY, project_id text, name text, is_done boolean, position double precision, description text)`); err != nil {
		return err
	}
	baseRun := 0
	d, _, err = bn.measure(runs, func() error {
		baseRun++
		rows := make([][]any, pushN)
		for i := range rows {
			rows[i] = []any{fmt.Sprintf("b%d_%d", baseRun, i), "p1", fmt.Sprintf("New task %d", i), i%2 == 0, float64(i), "Something to do, item " + strconv.Itoa(i)}
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE stage (LIKE plain_tasks) ON COMMIT DROP`); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"stage"}, []string{"id", "project_id", "name", "is_done", "position", "description"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO plain_tasks SELECT * FROM stage ON CONFLICT (id) DO UPDATE SET project_id = excluded.project_id, name = excluded.name,
			is_done = excluded.is_done, position = excluded.position, description = excluded.description`); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		return err
	}
	line(fmt.Sprintf("baseline: COPY %d into temp + INSERT … ON CONFLICT", pushN), d, pushN, 0, 0)
	return nil
}

// seedRecord returns a JSON record of table.
func seedRecord(table, prefix string, i int) string {
	switch table {
	case "projects":
		return fmt.Sprintf(`{"id":"%sp%d","name":"Project %d","is_favorite":%v,"position":%d}`, prefix, i, i, i%3 == 0, i)
	case "tasks":
		return fmt.Sprintf(`{"id":"%st%d","project_id":"p%d","name":"New task %d","is_done":%v,"position":%d,"description":"Something to do, item %d"}`, prefix, i, i%100, i, i%2 == 0, i, i)
	default:
		return fmt.Sprintf(`{"id":"%sc%d","task_id":"t%d","body":"A comment with a few words in it, number %d"}`, prefix, i, i, i)
	}
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// post sends body to path and reads the whole answer; it returns the answer's size
// as sent (compressed when gzip).
func (b *bench) post(path, tok string, body []byte, gzip bool) (int64, error) {
	req, err := http.NewRequestWithContext(b.ctx, "POST", b.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set(melonsync.HeaderDevice, "bench")
	if gzip {
		req.Header.Set("Accept-Encoding", "gzip")
	} else {
		req.Header.Set("Accept-Encoding", "identity")
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("%s: %d %s", path, resp.StatusCode, msg)
	}
	if path == "/api/sync/push" {
		var r melonsync.PushResponse
		return 0, json.NewDecoder(resp.Body).Decode(&r)
	}
	return io.Copy(io.Discard, resp.Body)
}

// measure runs fn runs times and returns the median time and the largest peak RSS of
// the server process during a run (0 when it cannot be read).
func (b *bench) measure(runs int, fn func() error) (time.Duration, int64, error) {
	var times []time.Duration
	var peak int64
	for i := 0; i < runs; i++ {
		resetPeak(b.pid)
		start := time.Now()
		if err := fn(); err != nil {
			return 0, 0, err
		}
		times = append(times, time.Since(start))
		peak = max(peak, readPeak(b.pid))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return times[len(times)/2], peak, nil
}

// resetPeak resets the process's peak RSS to its current RSS (Linux clear_refs 5).
func resetPeak(pid int) { os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) }

// readPeak returns the process's peak RSS (VmHWM) in bytes.
func readPeak(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
