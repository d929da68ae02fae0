// Command bigpush measures the memory that large pushes arriving at once take: peak
// RSS of the server process (and bytes allocated) for one push and for several
// concurrent pushes of many records each, with the large-body bound (the default,
// --max-large-bodies 2) and without it, each in a fresh process of its own, printed
// side by side. -gzip sends the bodies gzipped; BIGPUSH_MEMPROFILE=file writes the
// allocation profile of each variant's process (the last one run keeps the file).
//
//	go run ./bench/bigpush -n 400000 -pushes 1,4
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
)

func main() {
	n := flag.Int("n", 400_000, "records per push")
	pushes := flag.String("pushes", "1,4", "pushes sent at once (one user each), one run per number")
	large := flag.Int("max-large-bodies", 0, "run one variant in this process: the bound (-1: none)")
	zip := flag.Bool("gzip", false, "send the bodies gzipped")
	flag.Parse()
	if *large != 0 {
		p, err := strconv.Atoi(*pushes)
		if err == nil {
			err = run(*n, p, *large, *zip)
		}
		if err != nil {
			log.Fatal(err)
		}
		return
	}
	for _, p := range strings.Split(*pushes, ",") {
		fmt.Printf("%s push(es) of %d records at once (SQLite, gzip %v), peak RSS of the server process\n", p, *n, *zip)
		for _, v := range []int{-1, mhttp.DefaultLimits.LargeBodies} {
			cmd := exec.Command(os.Args[0], "-n", fmt.Sprint(*n), "-pushes", p, "-max-large-bodies", fmt.Sprint(v), "-gzip="+fmt.Sprint(*zip))
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			if err := cmd.Run(); err != nil {
				log.Fatal(err)
			}
		}
		fmt.Println()
	}
}

func run(n, pushes, large int, zip bool) error {
	dir, err := os.MkdirTemp("", "melonsync-bigpush")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sch, err := schema.Load(filepath.Join("examples", "todo", "schema.json"))
	if err != nil {
		return err
	}
	store, err := sqlite.Open(filepath.Join(dir, "s.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Prepare(context.Background(), sch); err != nil {
		return err
	}
	auth, _ := mhttp.NewAuth([]byte("bench-secret-0123456789abcdef"))
	h := mhttp.NewHandler(server.New(store, sch), mhttp.Options{Auth: auth, MaxBodyBytes: 256 << 20, Limits: mhttp.Limits{LargeBodies: large, Wait: 10 * time.Minute}})
	ts := httptest.NewServer(h)
	defer ts.Close()
	bodies := make([][]byte, pushes)
	for p := range bodies {
		var b strings.Builder
		b.WriteString(`{"lastPulledAt":0,"changes":{"tasks":{"created":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"id":"u%dt%d","project_id":"p1","name":"Task %d","is_done":false,"position":%d}`, p, i, i, i)
		}
		b.WriteString(`]}}}`)
		bodies[p] = []byte(b.String())
	}
	size := len(bodies[0])
	if zip {
		for p, body := range bodies {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(body)
			zw.Close()
			bodies[p] = buf.Bytes()
		}
	}
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	before := rssKB("VmRSS")
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // reset the peak to now
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, pushes)
	for p := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, _ := auth.Mint(fmt.Sprintf("user%d", p), time.Hour)
			req, _ := http.NewRequest("POST", ts.URL+"/api/sync/push", bytes.NewReader(bodies[p]))
			req.Header.Set("Authorization", "Bearer "+tok)
			if zip {
				req.Header.Set("Content-Encoding", "gzip")
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("push: %d", resp.StatusCode)
				}
			}
			errs[p] = err
		}()
	}
	wg.Wait()
	runtime.ReadMemStats(&ms1)
	if f := os.Getenv("BIGPUSH_MEMPROFILE"); f != "" {
		out, _ := os.Create(f)
		pprof.Lookup("allocs").WriteTo(out, 0)
		out.Close()
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	what := "no bound on large bodies"
	if large > 0 {
		what = fmt.Sprintf("--max-large-bodies %d", large)
	}
	fmt.Printf("%-28s body %5.1f MB  RSS before %6.0f MB  peak %6.0f MB (+%4.0f)  allocated %6.0f MB  all done in %v\n", what,
		float64(size)/1e6, before/1024, rssKB("VmHWM")/1024, (rssKB("VmHWM")-before)/1024,
		float64(ms1.TotalAlloc-ms0.TotalAlloc)/(1<<20), time.Since(start).Round(time.Millisecond))
	return nil
}

// rssKB reads a field of /proc/self/status in kB.
func rssKB(field string) float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			var v float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, field+":")), "%f", &v)
			return v
		}
	}
	return 0
}
