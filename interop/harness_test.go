package interop

// The harness: builds melonsync, starts "melonsync serve" on a fresh store, mints tokens,
// and runs scenarios through driver.mjs (the real WatermelonDB client in Node).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/melonsync/melonsync/internal/testutil"
)

// M is a JSON object of a scenario.
type M = map[string]any

var (
	setupOnce sync.Once
	setupErr  error

	// buildBin is the melonsync binary, set by requireNode.
	buildBin string
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveBinary()
	os.Exit(code)
}

// requireNode skips when node is not installed, and prepares everything else: the
// melonsync binary and the pinned npm packages. Any failure there fails the test.
func requireNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: the WatermelonDB interop tests need Node 20 and npm")
	}
	setupOnce.Do(func() {
		cmd := exec.Command("bash", "setup.sh")
		out, err := cmd.CombinedOutput()
		if err != nil {
			setupErr = fmt.Errorf("interop/setup.sh: %v\n%s", err, out)
		}
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	buildBin = testutil.Binary(t)
}

// ---------------------------------------------------------------------------------------
// Stores

// store names where a server keeps its data: a SQLite file or a PostgreSQL database.
type store struct {
	name string
	// fresh returns the --db value of a new, empty store for one scenario.
	fresh func(t *testing.T) string
}

func sqliteStore() store {
	return store{name: "sqlite", fresh: func(t *testing.T) string {
		return filepath.Join(t.TempDir(), "melonsync.db")
	}}
}

var pgNameRe = regexp.MustCompile(`[^a-z0-9_]`)

// postgresStore creates one database per scenario on the server named by the DSN (with
// psql), and drops it afterwards.
func postgresStore(dsn string) store {
	return store{name: "postgres", fresh: func(t *testing.T) string {
		t.Helper()
		psql, err := exec.LookPath("psql")
		if err != nil {
			t.Skip("psql is not on PATH: it is needed to create a fresh PostgreSQL database per scenario")
		}
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("MELONSYNC_TEST_POSTGRES: %v", err)
		}
		name := pgNameRe.ReplaceAllString(strings.ToLower(fmt.Sprintf("melonsync_interop_%s_%d", filepath.Base(t.Name()), time.Now().UnixNano())), "_")
		if len(name) > 60 {
			name = name[len(name)-60:]
			if name[0] >= '0' && name[0] <= '9' {
				name = "m" + name[1:]
			}
		}
		if out, err := exec.Command(psql, dsn, "-v", "ON_ERROR_STOP=1", "-qc", `CREATE DATABASE "`+name+`"`).CombinedOutput(); err != nil {
			t.Fatalf("creating database %s: %v\n%s", name, err, out)
		}
		t.Cleanup(func() {
			exec.Command(psql, dsn, "-qc", `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`).Run()
		})
		nu := *u
		nu.Path = "/" + name
		return nu.String()
	}}
}

// scenario is one test of the real client, run on each store.
type scenario struct {
	name string
	run  func(t *testing.T, st store)
}

// runScenarios runs every scenario on SQLite, then (with MELONSYNC_TEST_POSTGRES) on
// PostgreSQL, each on a fresh store.
func runScenarios(t *testing.T, scenarios []scenario) {
	t.Helper()
	requireNode(t)
	t.Run("sqlite", func(t *testing.T) {
		for _, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) { sc.run(t, sqliteStore()) })
		}
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := os.Getenv("MELONSYNC_TEST_POSTGRES")
		if dsn == "" {
			t.Skip("MELONSYNC_TEST_POSTGRES is not set")
		}
		for _, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) { sc.run(t, postgresStore(dsn)) })
		}
	})
}

// newServerSchema starts a server with schemaFile on a fresh store of st; it is
// stopped when t ends.
func newServerSchema(t *testing.T, st store, schemaFile string, args ...string) *server {
	t.Helper()
	srv, err := startServerSchema(t, st.fresh(t), schemaFile, args...)
	if errors.Is(err, errNoPostgres) {
		t.Skipf("the PostgreSQL store is missing: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// ---------------------------------------------------------------------------------------
// The server process

type server struct {
	t      *testing.T
	db     string
	schema string
	addr   string
	cmd    *exec.Cmd
	log    *lockedBuffer
	done   chan struct{}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// errNoPostgres: the server refused a postgres:// store.
var errNoPostgres = errors.New("melonsync serve refuses --db postgres://")

// startServer runs "melonsync serve" and waits until it reports its address.
func startServer(t *testing.T, db string, args ...string) (*server, error) {
	t.Helper()
	return startServerSchema(t, db, filepath.Join("..", "examples", "todo", "schema.json"), args...)
}

// startServerSchema is startServer with another schema file.
func startServerSchema(t *testing.T, db, schemaFile string, args ...string) (*server, error) {
	t.Helper()
	s := &server{t: t, db: db, schema: schemaFile, log: &lockedBuffer{}}
	if err := s.start("127.0.0.1:0", args...); err != nil {
		return nil, err
	}
	t.Cleanup(s.stop)
	return s, nil
}

func (s *server) start(addr string, args ...string) error {
	full := append([]string{"serve", "--addr", addr, "--db", s.db, "--schema", s.schema}, args...)
	cmd := exec.Command(buildBin, full...)
	cmd.Env = append(os.Environ(), "MELONSYNC_JWT_SECRET=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = s.log
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			s.log.Write([]byte(line + "\n"))
			if m := testutil.Listening.FindStringSubmatch(line); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		cmd.Wait()
		close(s.done)
	}()
	select {
	case a := <-found:
		s.addr = a
		return nil
	case <-s.done:
		out := s.log.String()
		if strings.Contains(out, "PostgreSQL is not available") {
			return fmt.Errorf("%w: %s", errNoPostgres, strings.TrimSpace(out))
		}
		return fmt.Errorf("melonsync serve exited before listening:\n%s", out)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("melonsync serve did not report its address within 30s:\n%s", s.log.String())
	}
}

func (s *server) url() string { return "http://" + s.addr }

func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// restart stops the server and starts it again on the same store (and, if it can, the
// same address) with other flags.
func (s *server) restart(args ...string) error {
	s.stop()
	if err := s.start(s.addr, args...); err == nil {
		return nil
	}
	return s.start("127.0.0.1:0", args...)
}

// token mints a bearer token for a user with "melonsync token".
func (s *server) token(user string) string {
	s.t.Helper()
	cmd := exec.Command(buildBin, "token", "--user", user, "--db", s.db)
	cmd.Env = append(os.Environ(), "MELONSYNC_JWT_SECRET=")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			s.t.Fatalf("melonsync token --user %s: %v\n%s", user, err, ee.Stderr)
		}
		s.t.Fatalf("melonsync token --user %s: %v", user, err)
	}
	return strings.TrimSpace(string(out))
}

func (s *server) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(s.log.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------------------------------
// Running a scenario

type stepResult struct {
	Index  string          `json:"index"`
	Op     string          `json:"op"`
	Client string          `json:"client"`
	Name   string          `json:"name"`
	MS     float64         `json:"ms"`
	OK     bool            `json:"ok"`
	Error  string          `json:"error"`
	Timing map[string]any  `json:"timing"`
	Count  int             `json:"count"`
	Raw    json.RawMessage `json:"-"`
}

type result struct {
	OK    bool              `json:"ok"`
	Error string            `json:"error"`
	MS    int               `json:"ms"`
	Steps []json.RawMessage `json:"steps"`
	steps []stepResult
}

// run executes a scenario with the driver; checkpoint (may be nil) answers checkpoint
// steps. The scenario's url and tokens are filled in from the server when missing.
func run(t *testing.T, srv *server, sc M, checkpoint func(name string) (M, error)) *result {
	t.Helper()
	if _, ok := sc["url"]; !ok {
		sc["url"] = srv.url()
	}
	if _, ok := sc["schema"]; !ok {
		raw, err := os.ReadFile(srv.schema)
		if err != nil {
			t.Fatal(err)
		}
		sc["schema"] = json.RawMessage(raw)
	}
	if _, ok := sc["name"]; !ok {
		sc["name"] = t.Name()
	}
	data, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "scenario.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "driver.mjs", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var last []byte
	sc2 := bufio.NewScanner(stdout)
	sc2.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	for sc2.Scan() {
		line := append([]byte(nil), sc2.Bytes()...)
		var cp struct {
			Checkpoint *string `json:"checkpoint"`
		}
		if json.Unmarshal(line, &cp) == nil && cp.Checkpoint != nil {
			answer := M{}
			if checkpoint == nil {
				answer["error"] = "this test answers no checkpoints"
			} else if a, err := checkpoint(*cp.Checkpoint); err != nil {
				answer["error"] = err.Error()
			} else if a != nil {
				answer = a
			}
			b, _ := json.Marshal(answer)
			stdin.Write(append(b, '\n'))
			continue
		}
		last = line
	}
	stdin.Close()
	werr := cmd.Wait()
	if len(last) == 0 {
		t.Fatalf("driver printed no result (%v)\nstderr:\n%s\nserver log:\n%s", werr, stderr.String(), srv.logTail(30))
	}
	res := &result{}
	if err := json.Unmarshal(last, res); err != nil {
		t.Fatalf("driver result is not JSON: %v\n%s", err, last)
	}
	for _, raw := range res.Steps {
		var s stepResult
		json.Unmarshal(raw, &s)
		s.Raw = raw
		res.steps = append(res.steps, s)
	}
	if !res.OK {
		var failed []string
		for _, s := range res.steps {
			if !s.OK {
				failed = append(failed, string(s.Raw))
			}
		}
		t.Errorf("scenario failed: %s\nfailed step(s):\n%s\ndriver stderr:\n%s\nserver log (tail):\n%s",
			res.Error, strings.Join(failed, "\n"), stderr.String(), srv.logTail(20))
	} else if werr != nil {
		t.Errorf("driver exited with %v although it reported success\n%s", werr, stderr.String())
	}
	return res
}

// step returns the result of the step with the given name.
func (r *result) step(name string) *stepResult {
	for i := range r.steps {
		if r.steps[i].Name == name {
			return &r.steps[i]
		}
	}
	return nil
}

// logSyncTimes writes the time of every sync step to the test log.
func (r *result) logSyncTimes(t *testing.T) {
	t.Helper()
	var parts []string
	for _, s := range r.steps {
		if s.Op == "sync" {
			parts = append(parts, fmt.Sprintf("%s:%s %.0fms", s.Index, s.Client, s.MS))
		}
	}
	t.Logf("driver %dms; syncs: %s", r.MS, strings.Join(parts, ", "))
}
