package reliability_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"pgregory.net/rapid"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/client"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
	"github.com/melonsync/melonsync/transport"
)

var histories = flag.Int("reliability.histories", 0, "random histories per store of the model tests (default: each test's own)")

var (
	givenOnce sync.Once
	given     = map[string]bool{}
)

// rapidDefaults sets rapid's -rapid.checks (to -reliability.histories, else def) and
// -rapid.steps, unless they were given on the command line; restore puts them back.
func rapidDefaults(def, steps int) (restore func()) {
	n := *histories
	if n <= 0 {
		n = def
	}
	givenOnce.Do(func() { flag.Visit(func(f *flag.Flag) { given[f.Name] = true }) })
	var undo []func()
	for name, v := range map[string]string{"rapid.checks": fmt.Sprint(n), "rapid.steps": fmt.Sprint(steps)} {
		if !given[name] {
			old := flag.Lookup(name).Value.String()
			flag.Set(name, v)
			undo = append(undo, func() { flag.Set(name, old) })
		}
	}
	return func() {
		for _, u := range undo {
			u()
		}
	}
}

// sqliteOpener returns what opens a server store in a new SQLite file (removed when
// rt ends), and the file's path.
func sqliteOpener(rt *rapid.T, prefix string) (func() (server.Store, error), string) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		rt.Fatal(err)
	}
	rt.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "server.db")
	return func() (server.Store, error) { return sqlite.Open(path) }, path
}

// postgresOpener returns what opens a server store in a fresh PostgreSQL schema of
// $MELONSYNC_TEST_POSTGRES (dropped when rt ends), and the DSN naming that schema.
func postgresOpener(rt *rapid.T, prefix string) (func() (server.Store, error), string) {
	_, dsn := testutil.PostgresSchema(rt, testutil.PostgresDSN(rt), prefix)
	if dsn == "" {
		rt.Fatal("MELONSYNC_TEST_POSTGRES is not a postgres:// URL")
	}
	return func() (server.Store, error) { return postgres.Open(context.Background(), dsn) }, dsn
}

// testServer is the real handler over a real store on a loopback listener. restart
// closes it (store included) and opens it again on the same database, at a new
// address that the clients' transports follow.
type testServer struct {
	open func() (server.Store, error)
	sch  *schema.Schema
	auth *mhttp.Auth
	// onStart, when set, is called with each started service and a channel closed
	// when it stops.
	onStart func(svc *server.Service, stopped <-chan struct{})

	mu      sync.Mutex
	store   server.Store
	stopped chan struct{}
	handler *mhttp.Handler
	hs      *http.Server
	addr    string
}

func (s *testServer) start() error {
	store, err := s.open()
	if err != nil {
		return err
	}
	if err := store.Prepare(context.Background(), s.sch); err != nil {
		store.Close()
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		store.Close()
		return err
	}
	svc := server.New(store, s.sch)
	h := mhttp.NewHandler(svc, mhttp.Options{Auth: s.auth})
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	stopped := make(chan struct{})
	if s.onStart != nil {
		s.onStart(svc, stopped)
	}
	go hs.Serve(ln)
	s.mu.Lock()
	s.store, s.handler, s.hs, s.addr, s.stopped = store, h, hs, ln.Addr().String(), stopped
	s.mu.Unlock()
	return nil
}

func (s *testServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hs == nil {
		return
	}
	s.handler.Close()
	s.hs.Close()
	s.store.Close()
	close(s.stopped)
	s.hs = nil
}

func (s *testServer) restart() error {
	s.stop()
	return s.start()
}

func (s *testServer) currentAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// fault is what happens to one request.
type fault string

const (
	noFault         fault = ""
	dropRequest     fault = "request lost before the server"
	dropResponse    fault = "response lost after the server"
	restartBefore   fault = "server restarted before the request"
	restartAfter    fault = "server restarted after committing, response lost"
	killBeforeMark  fault = "client killed between push and mark-as-synced"
	errInjectedText       = "injected fault: "
)

// faultPlan is the fault to inject into the next request of one kind (pull or push).
type faultPlan struct {
	mu    sync.Mutex
	op    string // "pull" or "push"
	fault fault
	hit   bool
}

func (p *faultPlan) set(op string, f fault) {
	p.mu.Lock()
	p.op, p.fault, p.hit = op, f, false
	p.mu.Unlock()
}

func (p *faultPlan) take(op string) fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault == noFault || p.op != op || p.hit {
		return noFault
	}
	p.hit = true
	return p.fault
}

// faultTransport sends requests to the server's current address, injecting the
// planned fault.
type faultTransport struct {
	srv  *testServer
	plan *faultPlan
	next http.RoundTripper
	base *http.Transport
}

func opOf(req *http.Request) string {
	switch {
	case strings.HasSuffix(req.URL.Path, "/pull"):
		return "pull"
	case strings.HasSuffix(req.URL.Path, "/push"):
		return "push"
	}
	return ""
}

func (f *faultTransport) send(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.URL.Host = f.srv.currentAddr()
	r.Host = ""
	return f.next.RoundTrip(r)
}

func (f *faultTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch ft := f.plan.take(opOf(req)); ft {
	case noFault:
		return f.send(req)
	case dropRequest:
		return nil, errors.New(errInjectedText + string(ft))
	case dropResponse, restartAfter:
		resp, err := f.send(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if ft == restartAfter {
			if err := f.srv.restart(); err != nil {
				return nil, fmt.Errorf("restart: %w", err)
			}
			f.base.CloseIdleConnections()
		}
		return nil, errors.New(errInjectedText + string(ft))
	case restartBefore:
		if err := f.srv.restart(); err != nil {
			return nil, fmt.Errorf("restart: %w", err)
		}
		f.base.CloseIdleConnections()
		return f.send(req)
	default:
		return f.send(req)
	}
}

// acceptedPush is a push the server answered 200 to (whether or not the answer
// reached the client), in commit order.
type acceptedPush struct {
	client   int
	user     string
	changes  melonsync.Changes
	rejected map[string][]string
	// resolved lists the records a conflict policy settled (policy_model_test.go).
	resolved map[string][]string
}

// recordingTransport logs every push the server accepted, as sent and as answered.
type recordingTransport struct {
	client int
	user   string
	next   http.RoundTripper
	log    func(acceptedPush)
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if opOf(req) != "push" || req.Body == nil {
		return r.next.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := r.next.RoundTrip(req)
	if err != nil || resp.StatusCode != 200 {
		return resp, err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	if resp.Header.Get("Content-Encoding") == "gzip" {
		// Answers of 512 bytes or more come gzipped (many refused ids and reasons):
		// read them as the client does, or the accepted push would go unrecorded.
		zr, err := gzip.NewReader(bytes.NewReader(answer))
		if err != nil {
			return nil, err
		}
		if answer, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	}
	var sent struct {
		Changes melonsync.Changes `json:"changes"`
	}
	var got melonsync.PushResponse
	if json.Unmarshal(body, &sent) == nil && json.Unmarshal(answer, &got) == nil {
		r.log(acceptedPush{client: r.client, user: r.user, changes: sent.Changes, rejected: got.RejectedIDs, resolved: got.ResolvedIDs})
	}
	return resp, nil
}

// pullAll returns every record user can read, by table and id, as the server has it.
func pullAll(srv *testServer, hc *http.Client, token string) (map[string]map[string]melonsync.RawRecord, error) {
	req, _ := http.NewRequest("POST", "http://"+srv.currentAddr()+"/api/sync/pull", strings.NewReader(`{"lastPulledAt":null}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("pull: %d %s", resp.StatusCode, b)
	}
	var pr melonsync.PullResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		return nil, err
	}
	out := map[string]map[string]melonsync.RawRecord{}
	for table, tc := range pr.Changes {
		out[table] = map[string]melonsync.RawRecord{}
		for _, r := range append(append([]melonsync.RawRecord{}, tc.Created...), tc.Updated...) {
			id := r["id"].(string)
			if _, dup := out[table][id]; dup {
				return nil, fmt.Errorf("pull lists %s/%s twice", table, id)
			}
			out[table][id] = r
		}
	}
	return out, nil
}

// newModelClient opens client i of user in dir, speaking to srv with token through
// the fault transport (planned by c.plan) over record(next), the recording transport
// of the test.
func newModelClient(rt *rapid.T, dir string, i int, user, token string, sch *schema.Schema, srv *testServer, record func(next http.RoundTripper) http.RoundTripper) *modelClient {
	c := &modelClient{idx: i, user: user, path: filepath.Join(dir, fmt.Sprintf("client%d.db", i)), plan: &faultPlan{}}
	var err error
	if c.db, err = client.Open(c.path, sch); err != nil {
		rt.Fatal(err)
	}
	rt.Cleanup(func() { c.db.Close() })
	device, err := client.DeviceID(context.Background(), c.db)
	if err != nil {
		rt.Fatal(err)
	}
	ct := http.DefaultTransport.(*http.Transport).Clone()
	hc := &http.Client{Transport: &faultTransport{srv: srv, plan: c.plan, next: record(ct), base: ct}}
	c.remote, err = transport.NewClient("http://server.invalid", transport.StaticToken(token), device,
		transport.WithHTTPClient(hc), transport.WithGzipThreshold(-1), transport.WithTimeout(30*time.Second))
	if err != nil {
		rt.Fatal(err)
	}
	return c
}
