package postgres_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/internal/testutil"
)

// syncClient speaks the sync protocol to one server over HTTP.
type syncClient struct {
	base   string
	token  string
	device string
	hc     *http.Client
}

// call posts body to path and decodes a 200 answer into out. It returns the status.
func (c *syncClient) call(ctx context.Context, path string, body any, out any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	if c.device != "" {
		req.Header.Set(melonsync.HeaderDevice, c.device)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != 200 {
		return resp.StatusCode, fmt.Errorf("%s: %d %s", path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s: %v", path, err)
	}
	return 200, nil
}

func (c *syncClient) pull(ctx context.Context, lastPulledAt int64) (*melonsync.PullResponse, int, error) {
	var r melonsync.PullResponse
	st, err := c.call(ctx, "/api/sync/pull", map[string]any{"lastPulledAt": lastPulledAt, "schemaVersion": 3}, &r)
	return &r, st, err
}

func (c *syncClient) push(ctx context.Context, lastPulledAt int64, changes melonsync.Changes) (*melonsync.PushResponse, int, error) {
	var r melonsync.PushResponse
	st, err := c.call(ctx, "/api/sync/push", map[string]any{"lastPulledAt": lastPulledAt, "changes": changes}, &r)
	return &r, st, err
}

// startServer runs "melonsync serve" on a free loopback port against db and returns
// its base URL and process; it is stopped (SIGTERM, then killed) when t ends.
func startServer(t testing.TB, db, secret string) (string, *os.Process) {
	t.Helper()
	// Many clients of one shared user at once are the point of the stress tests: no
	// per-user bounds on concurrent requests here.
	cmd := exec.Command(testutil.Binary(t), "serve", "--db", db, "--addr", "127.0.0.1:0", "--schema", testutil.TodoSchemaPath(),
		"--max-pulls-per-user", "-1", "--max-pushes-per-user", "-1")
	cmd.Env = append(os.Environ(), "MELONSYNC_JWT_SECRET="+secret)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	addr := make(chan string, 1)
	var logMu sync.Mutex
	var logBuf bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, "level=INFO") || !strings.Contains(line, "msg=request ") {
				logMu.Lock()
				logBuf.WriteString(line + "\n") // all but routine request lines
				logMu.Unlock()
			}
			if m := testutil.Listening.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("server log:\n%s", logBuf.String())
			logMu.Unlock()
		}
	})
	select {
	case a := <-addr:
		return "http://" + a, cmd.Process
	case <-exited:
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("melonsync serve exited:\n%s", logBuf.String())
	case <-time.After(60 * time.Second):
		t.Fatal("melonsync serve did not start in 60 s")
	}
	return "", nil
}
