// Command hook measures what a write hook costs a push, in one run: the latency of
// small pushes over HTTP on loopback without a hook (the baseline), with a local hook
// that accepts everything (its signature checked), and with one that also rewrites a
// value. Then, with a hook that takes -slow to answer for one table, the latency of
// other users' pushes to a table the hook does not see — the hook is asked before
// the write transaction, so it must not delay them.
//
//	go run ./bench/hook -n 500                 # SQLite
//	go run ./bench/hook -db postgres://…       # PostgreSQL
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
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
)

const secret = "bench-hook-secret"

func main() {
	n := flag.Int("n", 500, "pushes per measurement")
	db := flag.String("db", "", "store: empty for a fresh SQLite file, or a postgres:// URL (its search_path schema is used as it is)")
	slow := flag.Duration("slow", 200*time.Millisecond, "how long the slow hook takes")
	flag.Parse()
	if err := run(*n, *db, *slow); err != nil {
		log.Fatal(err)
	}
}

// hookHandler answers hook requests after checking their signature; rewrite makes it
// rewrite every task's name, delay makes it slow for tasks.
func hookHandler(rewrite bool, delay time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := mhttp.VerifyHookSignature([]byte(secret), r.Header.Get(mhttp.HeaderHookTimestamp), r.Header.Get(mhttp.HeaderHookSignature), body, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var req struct {
			Changes map[string]struct {
				Created []map[string]any `json:"created"`
			} `json:"changes"`
		}
		json.Unmarshal(body, &req)
		tasks := req.Changes["tasks"].Created
		if delay > 0 && len(tasks) > 0 {
			time.Sleep(delay)
		}
		ans := map[string]any{}
		if rewrite {
			var out []map[string]any
			for _, t := range tasks {
				out = append(out, map[string]any{"id": t["id"], "name": strings.ToUpper(fmt.Sprint(t["name"]))})
			}
			ans["changes"] = map[string]any{"tasks": map[string]any{"created": out}}
		}
		json.NewEncoder(w).Encode(ans)
	})
}

func openStore(ctx context.Context, db, dir string) (server.Store, error) {
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		return postgres.Open(ctx, db)
	}
	return sqlite.Open(filepath.Join(dir, "server.db"))
}

type bench struct {
	url string
	seq int
	mu  sync.Mutex
}

// push sends one push of table with k new records and returns its latency.
func (b *bench) push(table string, k int, token string) (time.Duration, error) {
	b.mu.Lock()
	var recs []string
	for i := 0; i < k; i++ {
		b.seq++
		recs = append(recs, fmt.Sprintf(`{"id":"r%d","name":"record %d"}`, b.seq, b.seq))
	}
	b.mu.Unlock()
	body := fmt.Sprintf(`{"lastPulledAt":0,"changes":{%q:{"created":[%s],"updated":[],"deleted":[]}}}`, table, strings.Join(recs, ","))
	req, _ := http.NewRequest("POST", b.url+"/api/sync/push", bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("push: status %d", resp.StatusCode)
	}
	return time.Since(start), nil
}

type stats struct{ p50, p95, p99, mean time.Duration }

func summarize(ds []time.Duration) stats {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	at := func(q float64) time.Duration { return ds[int(q*float64(len(ds)-1))] }
	return stats{at(0.5), at(0.95), at(0.99), sum / time.Duration(len(ds))}
}

func (s stats) String() string {
	r := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
	return fmt.Sprintf("p50 %-8s p95 %-8s p99 %-8s mean %s", r(s.p50), r(s.p95), r(s.p99), r(s.mean))
}

func run(n int, db string, slow time.Duration) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "melonsync-bench-hook")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sch, err := schema.Load(filepath.Join("examples", "todo", "schema.json"))
	if err != nil {
		return err
	}
	store, err := openStore(ctx, db, dir)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Prepare(ctx, sch); err != nil {
		return err
	}
	svc := server.New(store, sch)
	auth, _ := mhttp.NewAuth([]byte("bench-jwt-secret-0123456789abcdef"))
	srv := httptest.NewServer(mhttp.NewHandler(svc, mhttp.Options{Auth: auth}))
	defer srv.Close()
	token := func(u string) string { t, _ := auth.Mint(u, time.Hour); return t }
	b := &bench{url: srv.URL}
	alice := token("alice")

	measure := func(name string, h http.Handler) (stats, error) {
		if h == nil {
			svc.SetWriteHook(nil, nil)
		} else {
			hs := httptest.NewServer(h)
			defer hs.Close()
			hc, err := mhttp.NewHookClient(hs.URL, []byte(secret), 5*time.Second)
			if err != nil {
				return stats{}, err
			}
			svc.SetWriteHook(hc, nil)
		}
		for i := 0; i < n/10; i++ { // warm up
			if _, err := b.push("tasks", 2, alice); err != nil {
				return stats{}, err
			}
		}
		ds := make([]time.Duration, 0, n)
		for i := 0; i < n; i++ {
			d, err := b.push("tasks", 1+i%3, alice)
			if err != nil {
				return stats{}, err
			}
			ds = append(ds, d)
		}
		s := summarize(ds)
		fmt.Printf("  %-34s %s\n", name, s)
		return s, nil
	}
	kind := "SQLite"
	if db != "" {
		kind = "PostgreSQL"
	}
	fmt.Printf("push latency, %d pushes of 1-3 tasks each, HTTP on loopback, %s store:\n", n, kind)
	base, err := measure("no hook (baseline)", nil)
	if err != nil {
		return err
	}
	acc, err := measure("local hook, accepts", hookHandler(false, 0))
	if err != nil {
		return err
	}
	rw, err := measure("local hook, rewrites every name", hookHandler(true, 0))
	if err != nil {
		return err
	}
	fmt.Printf("  hook cost at p50: %+.2fms (accepts), %+.2fms (rewrites)\n",
		float64((acc.p50-base.p50).Microseconds())/1000, float64((rw.p50-base.p50).Microseconds())/1000)

	// A slow hook for tasks must not delay other users' pushes of projects.
	hs := httptest.NewServer(hookHandler(false, slow))
	defer hs.Close()
	hc, _ := mhttp.NewHookClient(hs.URL, []byte(secret), 5*time.Second)
	svc.SetWriteHook(hc, []string{"tasks"})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tok := token(fmt.Sprintf("slow%d", i))
			for {
				select {
				case <-stop:
					return
				default:
				}
				b.push("tasks", 1, tok)
			}
		}(i)
	}
	time.Sleep(slow / 2)
	bob := token("bob")
	m := max(n/5, 20)
	ds := make([]time.Duration, 0, m)
	for i := 0; i < m; i++ {
		d, err := b.push("projects", 1, bob)
		if err != nil {
			close(stop)
			wg.Wait()
			return err
		}
		ds = append(ds, d)
	}
	close(stop)
	wg.Wait()
	fmt.Printf("while 4 users' task pushes wait %s each on the hook, %d pushes of projects by another user:\n  %-34s %s\n  (baseline p50 without any hook: %.2fms)\n",
		slow, m, "", summarize(ds), float64(base.p50.Microseconds())/1000)
	return nil
}
