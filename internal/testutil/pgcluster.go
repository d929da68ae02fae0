package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PostgresCluster is a PostgreSQL server of the test's own, in a temporary
// directory, that the test may stop, crash and restart without disturbing anyone:
// never do that to the shared server of MELONSYNC_TEST_POSTGRES.
type PostgresCluster struct {
	// DSN reaches the cluster's postgres database as the superuser postgres over
	// TCP on 127.0.0.1.
	DSN  string
	Port int

	bin   string   // directory of initdb and pg_ctl
	dir   string   // temporary directory: data/, the socket, the log
	runAs []string // command prefix that runs as the cluster's OS user
}

// NewPostgresCluster creates and starts a cluster with the PostgreSQL server
// binaries in $MELONSYNC_TEST_PGBIN, else on the PATH, else in the newest
// /usr/lib/postgresql/*/bin. initdb refuses to run as root, so as root the cluster
// runs as the postgres OS user (with runuser). The test is skipped, saying why, when
// the binaries or that user are missing. The cluster is stopped and deleted when t
// ends.
func NewPostgresCluster(t TB) *PostgresCluster {
	t.Helper()
	bin, err := postgresBin()
	if err != nil {
		t.Skip("no PostgreSQL server binaries to run a cluster of the test's own: " + err.Error())
	}
	c := &PostgresCluster{bin: bin}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root, and initdb refuses root: no postgres OS user to run the cluster as")
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			t.Skip("running as root, and initdb refuses root: no runuser to run the cluster as postgres")
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		c.runAs = []string{runuser, "-u", "postgres", "--"}
	}
	c.dir, err = os.MkdirTemp("", "melonsync-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(c.dir) })
	if uid >= 0 {
		if err := os.Chown(c.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := c.run("initdb", "-D", c.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	for attempt := 0; ; attempt++ {
		c.Port, err = freePort()
		if err != nil {
			t.Fatal(err)
		}
		if err = c.Start(); err == nil {
			break
		}
		if attempt == 2 {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { c.run("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop") })
	c.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
	return c
}

// Start starts the stopped cluster and waits until it accepts connections.
func (c *PostgresCluster) Start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100", c.Port, c.dir)
	if out, err := c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, c.Log())
	}
	return nil
}

// Stop stops the cluster in mode "smart", "fast" (roll back what runs, end the
// sessions, checkpoint) or "immediate" (end at once, as a crash: the next start
// recovers from the WAL).
func (c *PostgresCluster) Stop(mode string) error {
	if out, err := c.run("pg_ctl", "-D", c.data(), "-m", mode, "-w", "-t", "60", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
	return nil
}

// Log returns the server's log so far.
func (c *PostgresCluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "log"))
	return string(b)
}

func (c *PostgresCluster) data() string { return filepath.Join(c.dir, "data") }

func (c *PostgresCluster) run(tool string, args ...string) ([]byte, error) {
	argv := append(append(append([]string{}, c.runAs...), filepath.Join(c.bin, tool)), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = c.dir
	return cmd.CombinedOutput()
}

// postgresBin finds the directory holding initdb and pg_ctl.
func postgresBin() (string, error) {
	if d := os.Getenv("MELONSYNC_TEST_PGBIN"); d != "" {
		return d, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("initdb is not on the PATH, nor in /usr/lib/postgresql/*/bin (set MELONSYNC_TEST_PGBIN)")
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(strings.TrimSpace(filepath.Base(filepath.Dir(binDir))), 64)
	return v
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// WaitFor polls cond every 50 ms for up to d; it reports whether cond became true.
func WaitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}
