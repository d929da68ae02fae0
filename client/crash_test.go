package client

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
			cmd := exec.Command(os.Args[0], "-test.run=^TestLdbCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), ldbCrashEnv+"="+r.mode+":"+path)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			lines := make(chan string)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
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
