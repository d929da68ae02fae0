// Command synclog measures what the sync log and the device flags cost a push: the
// same load of small pushes over HTTP on loopback against a server without them (the
// baseline), with the device flags only, and with both, in the same run, rounds
// interleaved. SQLite always; PostgreSQL too when -pg (or $MELONSYNC_TEST_POSTGRES)
// names a database (a fresh schema is made and dropped).
//
//	go run ./bench/synclog -pushes 3000 -clients 16
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/admin"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
)

// store is a server store that keeps the admin bookkeeping too.
type store interface {
	server.Store
	admin.Store
}

type config struct {
	name      string
	gate, log bool
}

var configs = []config{{"baseline (no sync log, no device flags)", false, false}, {"device flags only", true, false}, {"device flags + sync log", true, true}}

func main() {
	pushes := flag.Int("pushes", 3000, "pushes per measurement")
	clients := flag.Int("clients", 16, "concurrent clients")
	users := flag.Int("users", 100, "users the clients push as")
	rounds := flag.Int("rounds", 2, "rounds of every configuration, interleaved")
	pg := flag.String("pg", os.Getenv("MELONSYNC_TEST_POSTGRES"), "PostgreSQL URL (empty: SQLite only)")
	flag.Parse()
	sch, err := schema.Load(filepath.Join("examples", "todo", "schema.json"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("push throughput: %d pushes of 1-3 created records per measurement, %d clients, %d users, %d rounds\n\n", *pushes, *clients, *users, *rounds)
	dir, err := os.MkdirTemp("", "melonsync-bench-synclog")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	n := 0
	open := map[string]func() (store, func(), error){
		"SQLite": func() (store, func(), error) {
			n++
			s, err := sqlite.Open(filepath.Join(dir, fmt.Sprintf("s%d.db", n)))
			return s, func() {}, err
		},
	}
	order := []string{"SQLite"}
	if *pg != "" {
		order = append(order, "PostgreSQL")
		open["PostgreSQL"] = func() (store, func(), error) { return openPG(*pg) }
	}
	for _, kind := range order {
		fmt.Printf("%s\n", kind)
		results := make([][]result, len(configs))
		for r := 0; r < *rounds; r++ {
			for i, c := range configs {
				s, drop, err := open[kind]()
				if err != nil {
					log.Fatal(err)
				}
				res, err := measure(s, sch, c, *pushes, *clients, *users)
				s.Close()
				drop()
				if err != nil {
					log.Fatal(err)
				}
				results[i] = append(results[i], res)
			}
		}
		base := best(results[0]).rate
		for i, c := range configs {
			b := best(results[i])
			fmt.Printf("  %-42s %7.0f pushes/s  p50 %5.1f ms  p99 %5.1f ms  (%+.1f%% vs baseline)%s\n", c.name, b.rate, b.p50, b.p99, 100*(b.rate/base-1), b.note)
		}
		fmt.Println()
	}
}

type result struct {
	rate, p50, p99 float64
	note           string
}

// best is the round with the highest rate (the least disturbed by the machine).
func best(rs []result) result {
	return slices.MaxFunc(rs, func(a, b result) int {
		switch {
		case a.rate < b.rate:
			return -1
		case a.rate > b.rate:
			return 1
		}
		return 0
	})
}

func openPG(dsn string) (store, func(), error) {
	b := make([]byte, 6)
	rand.Read(b)
	name := "melon_bench_" + hex.EncodeToString(b)
	ctx := context.Background()
	s, err := postgres.Open(ctx, dsn, postgres.WithSchema(name), postgres.WithMaxConns(32))
	if err != nil {
		return nil, nil, err
	}
	return s, func() {
		if conn, err := pgx.Connect(ctx, dsn); err == nil {
			conn.Exec(ctx, `DROP SCHEMA IF EXISTS "`+name+`" CASCADE`)
			conn.Close(ctx)
		}
	}, nil
}

var secret = []byte("bench-secret-0123456789abcdef")

// measure serves s with configuration c and sends pushes pushes from clients
// goroutines; it returns pushes per second and latency percentiles.
func measure(s store, sch *schema.Schema, c config, pushes, clients, users int) (result, error) {
	ctx := context.Background()
	if err := s.Prepare(ctx, sch); err != nil {
		return result{}, err
	}
	auth, err := mhttp.NewAuth(secret)
	if err != nil {
		return result{}, err
	}
	opts := mhttp.Options{Auth: auth}
	var l *admin.Log
	if c.gate {
		opts.Devices = s
	}
	if c.log {
		l = admin.NewLog(s, admin.LogOptions{})
		l.Start()
		opts.SyncLog = l
	}
	srv := httptest.NewServer(mhttp.NewHandler(server.New(s, sch), opts))
	defer srv.Close()
	tokens := make([]string, users)
	for i := range tokens {
		if tokens[i], err = auth.Mint(fmt.Sprintf("user%d", i), time.Hour); err != nil {
			return result{}, err
		}
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= pushes {
					return
				}
				body := pushBody(i)
				req, _ := http.NewRequest("POST", srv.URL+"/api/sync/push", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tokens[i%users])
				req.Header.Set(melonsync.HeaderDevice, fmt.Sprintf("dev%d", w))
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("push %d: status %d", i, resp.StatusCode)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	res := result{rate: float64(pushes) / elapsed.Seconds(), p50: ms(all[len(all)/2]), p99: ms(all[len(all)*99/100])}
	if l != nil {
		l.Close()
		n, _ := s.LogCount(ctx)
		res.note = fmt.Sprintf("  [log: %d entries written, %d dropped]", n, l.Dropped())
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pushBody is a push of 1-3 new tasks with fresh ids.
func pushBody(i int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"lastPulledAt":0,"changes":{"tasks":{"created":[`)
	for k := range 1 + i%3 {
		if k > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"t%d_%d","name":"Task %d","project_id":"p%d","position":%d}`, i, k, i, i%10, k)
	}
	b.WriteString(`],"updated":[],"deleted":[]}}}`)
	return b.Bytes()
}
