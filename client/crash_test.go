package client

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Crash safety: a child process (this test binary again) writes batches and is killed
// with SIGKILL; the file must hold exactly the batches that committed.

const ldbCrashEnv = "MELONSYNC_CLIENT_CRASH_CHILD"

const ldbCrashBatch = 50

// TestLdbCrashChild is the child's body; it does nothing in a normal run.
func TestLdbCrashChild(t *testing.T) {
	spec := os.Getenv(ldbCrashEnv)
	if spec == "" {
		t.Skip("only runs as the child of TestCrashLeavesLastCommittedState")
	}
	mode, path, _ := strings.Cut(spec, ":")
	db, err := Open(path, ldbMockSchema(t))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second) // bounded even if nobody kills us
	for k := 1; time.Now().Before(deadline); k++ {
		err := db.Write(ctx, func(tx *Tx) error {
			for i := 0; i < ldbCrashBatch; i++ {
				if _, err := tx.Create("mock_tasks", map[string]any{"project_id": "batch-" + strconv.Itoa(k), "position": i}); err != nil {
					return err
				}
			}
			return tx.SetLocal("batches", strconv.Itoa(k))
		})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Println("committed", k)
		if mode == "hang" && k == 5 {
			// a big write that never commits: the kill comes in its middle
			db.Write(ctx, func(tx *Tx) error {
				for i := 0; i < 5000; i++ {
					if _, err := tx.Create("mock_tasks", map[string]any{"project_id": "in-flight"}); err != nil {
						return err
					}
				}
				tx.SetLocal("batches", "in-flight")
				fmt.Println("in-flight")
				time.Sleep(time.Until(deadline))
				return nil
			})
			os.Exit(3)
		}
	}
	os.Exit(0)
}

func TestCrashLeavesLastCommittedState(t *testing.T) {
	if os.Getenv(ldbCrashEnv) != "" {
		t.Skip("child")
	}
	runs := []struct {
		mode  string
		after time.Duration // kill this long after the 3rd commit ("hang": when in flight)
	}{{"hang", 0}, {"loop", 0}, {"loop", 7 * time.Millisecond}, {"loop", 23 * time.Millisecond}}
	for i, r := range runs {
		t.Run(fmt.Sprintf("%s-%d", r.mode, i), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "crash.db")
			cmd, lines := startChild(t, "TestLdbCrashChild", ldbCrashEnv+"="+r.mode+":"+path)
			lastCommitted := 0
			timeout := time.After(15 * time.Second)
		wait:
			for {
				select {
				case line, ok := <-lines:
					if !ok {
						t.Fatal("child ended before the kill")
					}
					if strings.HasPrefix(line, "error") {
						t.Fatal(line)
					}
					if n, ok := strings.CutPrefix(line, "committed "); ok {
						lastCommitted, _ = strconv.Atoi(n)
						if r.mode == "loop" && lastCommitted == 3 {
							time.Sleep(r.after)
							break wait
						}
					}
					if line == "in-flight" {
						break wait
					}
				case <-timeout:
					t.Fatal("child too slow")
				}
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			for range lines {
			}

			db, err := Open(path, ldbMockSchema(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			v, ok, err := db.GetLocal(context.Background(), "batches")
			if err != nil || !ok {
				t.Fatalf("batches: %q %v %v", v, ok, err)
			}
			k, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("batches = %q: a write that never committed is visible", v)
			}
			if k < lastCommitted {
				t.Fatalf("batch %d was acknowledged but only %d survived", lastCommitted, k)
			}
			if n := ldbCountAll(t, db, "mock_tasks"); n != k*ldbCrashBatch {
				t.Errorf("%d tasks for %d batches: a half-written batch survived", n, k)
			}
			var bad int
			db.Read(context.Background(), func(tx *Tx) (err error) {
				bad, err = tx.Count("mock_tasks", Where(Eq("project_id", "in-flight")))
				return err
			})
			if bad != 0 {
				t.Errorf("%d records of the write in flight survived", bad)
			}
			var check string
			if err := db.writer.QueryRow("pragma integrity_check").Scan(&check); err != nil || check != "ok" {
				t.Errorf("integrity_check: %q %v", check, err)
			}
			t.Logf("killed after %d acknowledged batches; %d in the file", lastCommitted, k)
		})
	}
}

const ldbTurboCrashEnv = "MELONSYNC_CLIENT_TURBO_CRASH_CHILD"

// TestLdbTurboCrashChild is the child of TestCrashDuringTurboLoadKeepsNothing: a
// streamed first sync whose answer stops arriving half-way, after the stream has
// moved from one table to the next (so that one table's indexes were built again
// and the other's are still dropped) and after more pages than the cache holds went
// to the WAL; it does nothing in a normal run.
func TestLdbTurboCrashChild(t *testing.T) {
	path := os.Getenv(ldbTurboCrashEnv)
	if path == "" {
		t.Skip("only runs as the child of TestCrashDuringTurboLoadKeepsNothing")
	}
	db, err := Open(path, ldbMockSchema(t))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriter(pw)
		fmt.Fprint(w, `{"changes": {"mock_projects": {"created": [`)
		for i := 0; i < 2000; i++ {
			if i > 0 {
				w.WriteByte(',')
			}
			fmt.Fprintf(w, `{"id": "p%d", "name": "project %d"}`, i, i)
		}
		fmt.Fprint(w, `]}, "mock_tasks": {"created": [`)
		for i := 0; i < 40000; i++ { // more than the page cache holds: pages go to the WAL
			if i == 30000 {
				w.Flush()
			}
			if i > 0 {
				w.WriteByte(',')
			}
			fmt.Fprintf(w, `{"id": "t%d", "name": "task %d %s", "project_id": "p%d"}`, i, i, strings.Repeat("x", 200), i%10)
		}
		w.Flush() // and no more: the answer stalls here
		select {}
	}()
	err = Synchronize(context.Background(), db, SyncOptions{
		UnsafeTurbo: true,
		PullChanges: func(context.Context, PullArgs) (*PullResult, error) { return &PullResult{Body: pr}, nil },
		OnProgress: func(p Progress) {
			if p.Records == 30000 {
				fmt.Println("in-flight")
			}
		},
	})
	fmt.Println("error: the sync ended", err)
	os.Exit(2)
}

// A process killed in the middle of a streamed first sync leaves a valid file with
// WatermelonDB's layout (every index there), no record and no lastPulledAt: the next
// sync is a first sync again, and streamed.
func TestCrashDuringTurboLoadKeepsNothing(t *testing.T) {
	if os.Getenv(ldbTurboCrashEnv) != "" {
		t.Skip("child")
	}
	path := filepath.Join(t.TempDir(), "turbo-crash.db")
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	ref, err := Open(fresh, ldbMockSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	ref.Close()
	cmd, lines := startChild(t, "TestLdbTurboCrashChild", ldbTurboCrashEnv+"="+path)
	timeout := time.After(30 * time.Second)
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("child ended before the kill")
			}
			if strings.HasPrefix(line, "error") {
				t.Fatal(line)
			}
			if line == "in-flight" {
				break wait
			}
		case <-timeout:
			t.Fatal("child too slow")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	for range lines {
	}

	if got, want := ldbMaster(t, ldbRawSQL(t, path)), ldbMaster(t, ldbRawSQL(t, fresh)); !reflect.DeepEqual(got, want) {
		t.Errorf("sqlite_master after the crash:\n%v\nwant (a new file):\n%v", got, want)
	}
	db, err := Open(path, ldbMockSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.writer.QueryRow("pragma integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check: %q %v", check, err)
	}
	if n := stCountAll(t, db); n != 0 {
		t.Errorf("%d records of the interrupted load survived", n)
	}
	if v := stLastPulledAt(t, db); v != nil {
		t.Errorf("lastPulledAt %d survived", *v)
	}
	if ok, err := TurboEligible(context.Background(), db); !ok || err != nil {
		t.Fatalf("TurboEligible after the crash: %v, %v", ok, err)
	}
	err = Synchronize(context.Background(), db, SyncOptions{UnsafeTurbo: true, PullChanges: func(context.Context, PullArgs) (*PullResult, error) {
		return &PullResult{Body: stStream(10, 77, "")}, nil
	}})
	if err != nil || stCountAll(t, db) != 10 {
		t.Errorf("the first sync after the crash: %v, %d records", err, stCountAll(t, db))
	}
}

// startChild runs this test binary's test named test in a child process with env
// (NAME=value) added, and returns it with the lines it prints; it is killed when t
// ends.
func startChild(t *testing.T, test, env string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return cmd, lines
}
