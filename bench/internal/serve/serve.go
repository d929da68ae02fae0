// Package serve builds melonsync and runs "melonsync serve" processes and fresh
// PostgreSQL schemas for the benchmark programs.
package serve

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5"
)

// Root returns the module's root directory (the benchmarks run from a checkout).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// TodoSchema is the path of the example schema the benchmarks use.
func TodoSchema() string { return filepath.Join(Root(), "examples", "todo", "schema.json") }

// Build builds the melonsync binary into dir and returns its path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "melonsync")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/melonsync/melonsync/cmd/melonsync").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// Process is a running "melonsync serve".
type Process struct {
	URL string // http://127.0.0.1:port
	Pid int
	// MetricsURL is where its Prometheus metrics are, when it was started with
	// --metrics-addr ("" otherwise).
	MetricsURL string
	cmd        *exec.Cmd
}

var (
	listening = regexp.MustCompile(`msg=listening addr=(127\.0\.0\.1:\d+)`)
	metrics   = regexp.MustCompile(`msg=metrics url=(http://\S+)`)
)

// Start runs "melonsync serve --db db --schema schemaPath" on a free loopback port
// with the JWT secret, plus any extra flags, and waits until it listens.
func Start(bin, db, schemaPath, secret string, extra ...string) (*Process, error) {
	args := append([]string{"serve", "--db", db, "--addr", "127.0.0.1:0", "--schema", schemaPath, "--log-format", "text"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "MELONSYNC_JWT_SECRET="+secret)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Pid: cmd.Process.Pid, cmd: cmd}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := metrics.FindStringSubmatch(sc.Text()); m != nil {
				p.MetricsURL = m[1] // logged before listening: read before addr is sent
			}
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-addr:
		p.URL = "http://" + a
		return p, nil
	case <-time.After(60 * time.Second):
		p.Stop()
		return nil, fmt.Errorf("melonsync serve did not start")
	}
}

// Stop interrupts the process and waits for it (killing it after 20 s).
func (p *Process) Stop() {
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
	}
}

// FreshSchema creates nothing yet but names a new schema (prefix + random hex) and
// returns dsn with its search_path set to it (melonsync creates the schema), and a
// function that drops it.
func FreshSchema(dsn, prefix string) (string, string, func(), error) {
	b := make([]byte, 4)
	rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	u, err := url.Parse(dsn)
	if err != nil {
		return "", "", nil, err
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, dsn); err == nil {
			conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`)
			conn.Close(ctx)
		}
	}
	return u.String(), name, drop, nil
}
