// Command server measures the SQLite server: a first-sync pull and a large push over
// HTTP on loopback, each next to a baseline measured in the same run (the same rows
// read or written with plain SQL through the same driver, encoded with encoding/json).
//
//	go run ./bench/server -n 10000
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/bench/internal/measure"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/sqlitedb"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
)

func main() {
	n := flag.Int("n", 10000, "records per table (3 tables)")
	push := flag.Int("push", 10000, "records in the push measurement")
	flag.Parse()
	dir, err := os.MkdirTemp("", "melonsync-bench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(dir, *n, *push); err != nil {
		log.Fatal(err)
	}
}

// peak runs fn and returns its time and peak heap.
func peak(fn func() error) (time.Duration, uint64, error) {
	r, err := measure.Run(fn)
	return r.D, r.HeapPeak, err
}

func run(dir string, n, pushN int) error {
	ctx := context.Background()
	sch, err := schema.Load(filepath.Join("examples", "todo", "schema.json"))
	if err != nil {
		return err
	}
	store, err := sqlite.Open(filepath.Join(dir, "server.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Prepare(ctx, sch); err != nil {
		return err
	}
	svc := server.New(store, sch)
	// Fill three tables with n records each, 5000 per push.
	for _, t := range []string{"projects", "tasks", "comments"} {
		for start := 0; start < n; start += 5000 {
			var recs []string
			for i := start; i < min(start+5000, n); i++ {
				switch t {
				case "projects":
					recs = append(recs, fmt.Sprintf(`{"id":"p%d","name":"Project %d","is_favorite":%v,"position":%d}`, i, i, i%3 == 0, i))
				case "tasks":
					recs = append(recs, fmt.Sprintf(`{"id":"t%d","project_id":"p%d","name":"Task number %d","is_done":%v,"position":%d,"description":"Something to do, item %d"}`, i, i%100, i, i%2 == 0, i, i))
				default:
					recs = append(recs, fmt.Sprintf(`{"id":"c%d","task_id":"t%d","body":"A comment with a few words in it, number %d"}`, i, i, i))
				}
			}
			p, err := server.DecodePush(sch, []byte(fmt.Sprintf(`{"lastPulledAt":0,"changes":{%q:{"created":[%s]}}}`, t, strings.Join(recs, ","))))
			if err != nil {
				return err
			}
			if _, err := svc.Push(ctx, server.Caller{User: "u", Device: "seed"}, p); err != nil {
				return err
			}
		}
	}
	secret := []byte("bench-secret-0123456789abcdef")
	auth, _ := mhttp.NewAuth(secret)
	tok, _ := auth.Mint("u", time.Hour)
	ts := httptest.NewServer(mhttp.NewHandler(svc, mhttp.Options{Auth: auth}))
	defer ts.Close()
	// The same handler streaming pulls from the read transaction, as before pulls
	// were spooled: what spooling costs a normal pull.
	streamed := httptest.NewServer(mhttp.NewHandler(svc, mhttp.Options{Auth: auth, StreamPulls: true}))
	defer streamed.Close()

	url := ts.URL
	do := func(path string, body []byte, gzip bool) (int64, error) {
		req, _ := http.NewRequest("POST", url+path, bytes.NewReader(body))
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
		k, err := io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("%s: %d", path, resp.StatusCode)
		}
		return k, err
	}
	fmt.Printf("melonsync server benchmark (SQLite, %d records × 3 tables, GOMAXPROCS=%d)\n\n", n, runtime.GOMAXPROCS(0))
	fmt.Printf("%-44s %10s %12s %12s %12s\n", "what", "time", "records/s", "bytes", "peak heap")
	line := func(what string, d time.Duration, recs int, bytes int64, heap uint64) {
		fmt.Printf("%-44s %10s %12.0f %12d %11.1fM\n", what, d.Round(time.Millisecond), float64(recs)/d.Seconds(), bytes, float64(heap)/(1<<20))
	}
	total := 3 * n
	// Warm up.
	if _, err := do("/api/sync/pull", []byte(`{"lastPulledAt":null}`), false); err != nil {
		return err
	}
	var size int64
	var d time.Duration
	var heap uint64
	for _, v := range []struct {
		what, url string
		gzip      bool
	}{
		{"pull, first sync (HTTP, plain, spooled)", ts.URL, false},
		{"  same, streamed from the transaction", streamed.URL, false},
		{"pull, first sync (HTTP, gzip, spooled)", ts.URL, true},
		{"  same, streamed from the transaction", streamed.URL, true},
	} {
		url = v.url
		best := time.Duration(0)
		for i := 0; i < 3; i++ { // best of three: the machine is shared
			d, heap, err = peak(func() error {
				size, err = do("/api/sync/pull", []byte(`{"lastPulledAt":null}`), v.gzip)
				return err
			})
			if err != nil {
				return err
			}
			if best == 0 || d < best {
				best = d
			}
		}
		line(v.what, best, total, size, heap)
	}
	url = ts.URL

	// Baseline: the same rows with plain SQL, into maps, encoding/json.
	db, err := sql.Open("sqlite", sqlitedb.DSN(filepath.Join(dir, "server.db"), sqlitedb.Options{}, true))
	if err != nil {
		return err
	}
	defer db.Close()
	d, heap, err = peak(func() error {
		out := map[string][]map[string]any{}
		for _, t := range sch.Tables {
			cols := []string{`"id"`}
			for _, c := range t.Columns {
				cols = append(cols, `"`+c.Name+`"`)
			}
			rows, err := db.Query(`SELECT ` + strings.Join(cols, ",") + ` FROM "` + t.Name + `" WHERE "__deleted" = 0`)
			if err != nil {
				return err
			}
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			for rows.Next() {
				if err := rows.Scan(ptrs...); err != nil {
					rows.Close()
					return err
				}
				m := map[string]any{"id": vals[0]}
				for i, c := range t.Columns {
					m[c.Name] = vals[i+1]
				}
				out[t.Name] = append(out[t.Name], m)
			}
			rows.Close()
		}
		b, err := json.Marshal(out)
		size = int64(len(b))
		return err
	})
	if err != nil {
		return err
	}
	line("baseline: SELECT + encoding/json (no HTTP)", d, total, size, heap)

	// Push of pushN records over HTTP, next to a plain INSERT of the same rows.
	var recs []string
	for i := 0; i < pushN; i++ {
		recs = append(recs, fmt.Sprintf(`{"id":"np%d","project_id":"p1","name":"New task %d","is_done":false,"position":%d,"description":null,"_status":"created","_changed":""}`, i, i, i))
	}
	clock, err := svc.Clock(ctx)
	if err != nil {
		return err
	}
	body := []byte(fmt.Sprintf(`{"lastPulledAt":%d,"changes":{"tasks":{"created":[%s],"updated":[],"deleted":[]}}}`, clock, strings.Join(recs, ",")))
	d, heap, err = peak(func() error {
		_, err := do("/api/sync/push", body, false)
		return err
	})
	if err != nil {
		return err
	}
	line(fmt.Sprintf("push, %d created (HTTP)", pushN), d, pushN, int64(len(body)), heap)
	d, heap, err = peak(func() error {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		defer tx.Rollback()
		st, err := tx.Prepare(`INSERT INTO "tasks" ("id","__owner","__version","__created_version","project_id","name","is_done","position","description") VALUES (?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			return err
		}
		for i := 0; i < pushN; i++ {
			if _, err := st.Exec(fmt.Sprintf("bp%d", i), "u", 1, 1, "p1", fmt.Sprintf("New task %d", i), 0, i, nil); err != nil {
				return err
			}
		}
		st.Close()
		return tx.Commit()
	})
	if err != nil {
		return err
	}
	line(fmt.Sprintf("baseline: INSERT %d in one transaction", pushN), d, pushN, 0, heap)
	return nil
}
