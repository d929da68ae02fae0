// Package browser tests melonsync with a WatermelonDB web app in headless Chromium:
// app/ (LokiJS on IndexedDB, the js/ helper) bundled with esbuild and served from one
// loopback origin, "melonsync serve --cors-origins" on another, driven by run.mjs
// with puppeteer-core. It needs Node with npm and Chromium at /usr/bin/chromium
// (scripts/setup-browser.sh installs it with apt-get when missing).
package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mhttp "github.com/melonsync/melonsync/http"
)

const chromium = "/usr/bin/chromium"

var listeningRe = regexp.MustCompile(`msg=listening addr=(\S+)`)

func run(t *testing.T, dir string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// prepare installs what the test needs and returns the directory of the bundled app.
func prepare(t *testing.T) string {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: the browser test needs Node 20 with npm")
	}
	if out, err := exec.Command("bash", "../scripts/setup-browser.sh").CombinedOutput(); err != nil {
		t.Skipf("Chromium is not installed and could not be (scripts/setup-browser.sh): %v\n%s", err, out)
	}
	run(t, ".", "bash", "setup.sh")
	dist := t.TempDir()
	run(t, ".", "node_modules/.bin/esbuild", "app/app.js", "--bundle", "--format=iife", "--log-level=warning", "--outfile="+filepath.Join(dist, "app.js"))
	html, err := os.ReadFile("app/index.html")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dist, "index.html"), html, 0o644); err != nil {
		t.Fatal(err)
	}
	return dist
}

// serverLog counts the requests "melonsync serve" logged, by method.
type serverLog struct {
	mu      sync.Mutex
	methods map[string]int
}

func (l *serverLog) count(method string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.methods[method]
}

var methodRe = regexp.MustCompile(`msg=request method=(\S+)`)

// serve starts "melonsync serve" with args and returns its URL.
func serve(t *testing.T, secret string, log *serverLog, args ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "melonsync")
	run(t, "..", "go", "build", "-o", bin, "./cmd/melonsync")
	ctx, cancel := context.WithCancel(context.Background())
	full := append([]string{"serve", "--addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "m.db"), "--schema", "../examples/todo/schema.json"}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = append(os.Environ(), "MELONSYNC_JWT_SECRET="+secret)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := methodRe.FindStringSubmatch(sc.Text()); m != nil {
				log.mu.Lock()
				log.methods[m[1]]++
				log.mu.Unlock()
			}
			if m := listeningRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case addr := <-found:
		return "http://" + addr
	case <-time.After(60 * time.Second):
		t.Fatal("melonsync serve did not start")
		return ""
	}
}

// TestWatermelonDBWebApp: two devices (browser contexts) of one user create, sync,
// reload, get a live update, run into a 409 and converge; another origin is refused.
func TestWatermelonDBWebApp(t *testing.T) {
	dist := prepare(t)
	app := httptest.NewServer(http.FileServer(http.Dir(dist)))
	defer app.Close()
	other := httptest.NewServer(http.FileServer(http.Dir(dist))) // same app, an origin not allowed
	defer other.Close()
	const secret = "browser-test-secret-0123456789"
	log := &serverLog{methods: map[string]int{}}
	url := serve(t, secret, log, "--cors-origins", app.URL)
	auth, _ := mhttp.NewAuth([]byte(secret))
	token, _ := auth.Mint("alice", time.Hour)

	shotDir := os.Getenv("MELONSYNC_ARTIFACTS")
	if shotDir == "" {
		shotDir = os.TempDir()
	}
	shot := filepath.Join(shotDir, fmt.Sprintf("melonsync-browser-%d.png", time.Now().UnixNano()))
	cfg, _ := json.Marshal(map[string]any{
		"chromium": chromium, "appURL": app.URL + "/index.html", "otherAppURL": other.URL + "/index.html",
		"serverURL": url, "token": token, "screenshot": shot, "userDataDir": t.TempDir(),
	})
	cfgFile := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(cfgFile, cfg, 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "run.mjs", cfgFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res struct {
		OK       bool   `json:"ok"`
		Error    string `json:"error"`
		Conflict string `json:"conflict"`
		Steps    []struct {
			Name string `json:"name"`
			MS   int    `json:"ms"`
		} `json:"steps"`
	}
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil {
		t.Fatalf("run.mjs: %v (%v)\nstdout: %s\nstderr: %s", err, jerr, out, stderr.String())
	}
	for _, s := range res.Steps {
		t.Logf("%-50s %5d ms", s.Name, s.MS)
	}
	t.Logf("screenshot: %s", shot)
	if !res.OK || err != nil {
		t.Fatalf("browser test failed: %s\nstderr: %s", res.Error, stderr.String())
	}
	t.Logf("the 409 as the app saw it: %s", res.Conflict)
	// Access-Control-Max-Age: one preflight per route and browser context (A: pull,
	// push, ticket; B: pull, push; C: the refused one), not one or two per sync.
	pre, posts := log.count("OPTIONS"), log.count("POST")
	t.Logf("%d preflights for %d POSTs", pre, posts)
	if pre > 8 {
		t.Errorf("%d preflights for %d POSTs: the browser does not cache them", pre, posts)
	}
}
