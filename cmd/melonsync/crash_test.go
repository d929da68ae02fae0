package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
)

// crashCycles is how many times each crash test kills the server
// (MELONSYNC_CRASH_CYCLES, default 15).
func crashCycles(t *testing.T) int {
	if v := os.Getenv("MELONSYNC_CRASH_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("MELONSYNC_CRASH_CYCLES=%q", v)
		}
		return n
	}
	return 15
}

// serverProc is a running "melonsync serve" process.
type serverProc struct {
	cmd  *exec.Cmd
	url  string
	logs *bytes.Buffer
}

func startServerProc(t *testing.T, bin, db, secret string) *serverProc {
	t.Helper()
	return startServeProc(t, bin, secret, "--db", db, "--schema", "../../examples/todo/schema.json", "--tombstone-retention", "0")
}

// startServeProc starts "melonsync serve --addr 127.0.0.1:0 ARGS…" with secret as
// MELONSYNC_JWT_SECRET and waits until it listens; it is killed when t ends.
func startServeProc(t *testing.T, bin, secret string, args ...string) *serverProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "MELONSYNC_JWT_SECRET="+secret)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProc{cmd: cmd, logs: &bytes.Buffer{}}
	t.Cleanup(func() { p.kill() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if m := testutil.Listening.FindStringSubmatch(line); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
			if len(line) < 2000 && p.logs.Len() < 1<<20 {
				p.logs.WriteString(line + "\n")
			}
		}
		if !sent {
			close(addr)
		}
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatalf("serve exited before listening:\n%s", p.logs)
		}
		p.url = "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	return p
}

func (p *serverProc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

// crashPush is one push of the crash test: a batch of new records in three tables
// plus an update of its worker's counter record, all carrying its marker.
type crashPush struct {
	worker, seq int
	marker      string
	ids         []string
	acked       bool
	timestamp   int64
}

func newCrashPush(cycle, worker, seq int) *crashPush {
	p := &crashPush{worker: worker, seq: seq, marker: fmt.Sprintf("c%d-w%d-p%d", cycle, worker, seq)}
	for i := 0; i < 10; i++ {
		p.ids = append(p.ids, fmt.Sprintf("%s-%d", p.marker, i))
	}
	return p
}

func (p *crashPush) body() []byte {
	proj, tasks, comms := []map[string]any{}, []map[string]any{}, []map[string]any{}
	for i, id := range p.ids {
		switch {
		case i < 3:
			proj = append(proj, map[string]any{"id": id, "name": p.marker, "position": i})
		case i < 8:
			tasks = append(tasks, map[string]any{"id": id, "name": p.marker, "project_id": p.ids[0], "description": strings.Repeat("d", 200)})
		default:
			comms = append(comms, map[string]any{"id": id, "body": p.marker, "task_id": p.ids[3]})
		}
	}
	counter := map[string]any{"id": fmt.Sprintf("counter-%d", p.worker), "name": p.marker, "position": p.seq}
	b, _ := json.Marshal(map[string]any{"lastPulledAt": 0, "changes": map[string]any{
		"projects": map[string]any{"created": proj, "updated": []any{counter}, "deleted": []any{}},
		"tasks":    map[string]any{"created": tasks, "updated": []any{}, "deleted": []any{}},
		"comments": map[string]any{"created": comms, "updated": []any{}, "deleted": []any{}},
	}})
	return b
}

// TestCrashSQLite and TestCrashPostgres kill the real server with SIGKILL while
// pushes are in flight, many times, and start it again on the same store with no
// repair step: every push is applied whole or not at all, every acknowledged push is
// there, and timestamps never go back.
func TestCrashSQLite(t *testing.T) {
	runCrash(t, "sqlite", filepath.Join(t.TempDir(), "crash.db"))
}

func TestCrashPostgres(t *testing.T) {
	_, dsn := testutil.PostgresSchema(t, testutil.PostgresDSN(t), "melon_crash")
	if dsn == "" {
		t.Fatal("MELONSYNC_TEST_POSTGRES is not a postgres:// URL")
	}
	runCrash(t, "postgres", dsn)
}

func runCrash(t *testing.T, name, db string) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	bin := testutil.Binary(t)
	secret := "crash-test-secret-0123456789abcdef"
	auth, err := mhttp.NewAuth([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	token, err := auth.Mint("crash", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	post := func(base, path string, device string, body []byte) (int, []byte, error) {
		req, _ := http.NewRequest("POST", base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set(melonsync.HeaderDevice, device)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(resp.Body); err != nil {
			return 0, nil, err
		}
		return resp.StatusCode, buf.Bytes(), nil
	}

	const workers = 4
	cycles := crashCycles(t)
	var pushes []*crashPush
	var maxAcked int64
	seq := make([]int, workers)
	start := time.Now()
	for cycle := 0; cycle < cycles; cycle++ {
		p := startServerProc(t, bin, db, secret)
		// The server came back with no repair step; its clock did not go back.
		st, body, err := post(p.url, "/api/sync/pull", "checker", []byte(`{"lastPulledAt":null,"schemaVersion":3}`))
		if err != nil || st != 200 {
			t.Fatalf("cycle %d: pull after restart: %d %v %s\n%s", cycle, st, err, body, p.logs)
		}
		var pr melonsync.PullResponse
		if err := json.Unmarshal(body, &pr); err != nil {
			t.Fatal(err)
		}
		if pr.Timestamp < maxAcked {
			t.Fatalf("cycle %d: timestamp %d after restart is older than an acknowledged push's %d", cycle, pr.Timestamp, maxAcked)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					seq[w]++
					cp := newCrashPush(cycle, w, seq[w])
					mu.Lock()
					pushes = append(pushes, cp)
					mu.Unlock()
					st, body, err := post(p.url, "/api/sync/push", fmt.Sprintf("worker-%d", w), cp.body())
					if err != nil {
						return // the server is gone: this push may or may not have landed
					}
					if st != 200 {
						t.Errorf("push %s: %d %s", cp.marker, st, body)
						return
					}
					var resp melonsync.PushResponse
					json.Unmarshal(body, &resp)
					mu.Lock()
					cp.acked, cp.timestamp = true, resp.Timestamp
					if resp.Timestamp > maxAcked {
						maxAcked = resp.Timestamp
					}
					mu.Unlock()
				}
			}(w)
		}
		time.Sleep(time.Duration(30+mrand.IntN(300)) * time.Millisecond)
		p.kill()
		close(stop)
		wg.Wait()
		if t.Failed() {
			t.Fatalf("server logs:\n%s", p.logs)
		}
	}

	// Once more: everything as the server has it after the last crash.
	p := startServerProc(t, bin, db, secret)
	st, body, err := post(p.url, "/api/sync/pull", "checker", []byte(`{"lastPulledAt":null,"schemaVersion":3}`))
	if err != nil || st != 200 {
		t.Fatalf("final pull: %d %v", st, err)
	}
	var pr melonsync.PullResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.Timestamp < maxAcked {
		t.Fatalf("final timestamp %d < acknowledged %d", pr.Timestamp, maxAcked)
	}
	have := map[string]string{} // id → marker
	counters := map[string]map[string]any{}
	for table, tc := range pr.Changes {
		for _, r := range tc.Created {
			id := r["id"].(string)
			if _, dup := have[id]; dup {
				t.Fatalf("%s listed twice", id)
			}
			marker, _ := r["name"].(string)
			if table == "comments" {
				marker, _ = r["body"].(string)
			}
			have[id] = marker
			if strings.HasPrefix(id, "counter-") {
				counters[id] = r
			}
		}
	}
	var acked, applied, absent int
	lastApplied := map[int]*crashPush{}
	for _, cp := range pushes {
		n := 0
		for _, id := range cp.ids {
			if m, ok := have[id]; ok {
				if m != cp.marker {
					t.Errorf("%s holds %q, want %q", id, m, cp.marker)
				}
				n++
			}
		}
		switch {
		case n == len(cp.ids):
			applied++
			if l := lastApplied[cp.worker]; l == nil || cp.seq > l.seq {
				lastApplied[cp.worker] = cp
			}
		case n == 0:
			absent++
			if cp.acked {
				t.Errorf("push %s was acknowledged but is not in the store", cp.marker)
			}
		default:
			t.Errorf("push %s is half applied: %d of %d records", cp.marker, n, len(cp.ids))
		}
		if cp.acked {
			acked++
		}
	}
	// Each worker's counter holds the marker of its last applied push: the update
	// went in with the creates or not at all.
	for w, cp := range lastApplied {
		c := counters[fmt.Sprintf("counter-%d", w)]
		if c == nil || c["name"] != cp.marker || c["position"] != float64(cp.seq) {
			t.Errorf("worker %d: counter %v, want the marker of its last applied push %s", w, c, cp.marker)
		}
	}
	msg := fmt.Sprintf("crash test (%s): %d SIGKILLs, %d pushes sent, %d acknowledged, %d applied whole (%d records and a counter update each), %d absent, 0 half-applied; %s",
		name, cycles, len(pushes), acked, applied, 10, absent, time.Since(start).Round(time.Millisecond))
	t.Log(msg)
	fmt.Println(msg)
	if applied == 0 || acked == 0 {
		t.Fatalf("no push landed: the test proved nothing")
	}
}
