package reliability_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/client"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/transport"
)

// Concurrent histories: several devices of the same users sync at once against the
// real server over a real store, every request and answer is recorded with its start
// and end, and the history is checked against SPEC §3 (history_check_test.go,
// doc.go).

// historyConfig shapes one history.
type historyConfig struct {
	users      int           // users, each with their own records
	goDevices  int           // Go client devices per user (client.Synchronize)
	rawDevices int           // raw HTTP devices per user: stale lastPulledAt, retries after 409
	load       time.Duration // how long the devices act at once
	seed       uint64
}

var defaultHistory = historyConfig{users: 2, goDevices: 3, rawDevices: 1, load: 3 * time.Second}

// historyCount is how many histories a test runs: $MELONSYNC_HISTORIES or def.
func historyCount(def int) int {
	if n, err := strconv.Atoi(os.Getenv("MELONSYNC_HISTORIES")); err == nil && n > 0 {
		return n
	}
	return def
}

func TestHistoriesSQLite(t *testing.T) {
	runHistories(t, "sqlite", historyCount(3), func(t *testing.T) server.Store {
		return testutil.SQLiteStore(t, t.TempDir())
	})
}

func TestHistoriesPostgres(t *testing.T) {
	testutil.PostgresDSN(t)
	runHistories(t, "postgres", historyCount(3), func(t *testing.T) server.Store {
		return testutil.PostgresStore(t, "melon_hist")
	})
}

func runHistories(t *testing.T, name string, n int, open func(*testing.T) server.Store) {
	if testing.Short() {
		t.Skip("concurrent histories skipped in -short mode")
	}
	total := historyStats{}
	start := time.Now()
	for i := 0; i < n; i++ {
		cfg := defaultHistory
		cfg.seed = uint64(time.Now().UnixNano())
		t.Run(fmt.Sprintf("history%d", i), func(t *testing.T) {
			h := newConcurrentHistory(t, cfg, open(t))
			problems, checker := h.verdict(2 * time.Minute)
			if problems != "" {
				t.Errorf("seed %d: %s", cfg.seed, problems)
			}
			if checker != "" {
				t.Fatalf("seed %d: %s", cfg.seed, checker)
			}
			h.st.histories, h.st.inFlight = 1, maxInFlight(h.ops)
			total.add(h.st)
		})
	}
	msg := fmt.Sprintf("concurrent histories (%s): %s; %s", name, total, time.Since(start).Round(time.Millisecond))
	t.Log(msg)
	fmt.Println(msg)
}

// historyStats counts what the histories did.
type historyStats struct {
	histories, pulls, pushes, conflicts, unknown, syncs, failedSyncs, refused int
	inFlight                                                                  int // most operations of one user in flight at once
}

// maxInFlight returns the most operations of one user that overlapped in time.
func maxInFlight(ops []*hOp) int {
	type edge struct {
		at    int64
		delta int
	}
	byUser := map[string][]edge{}
	for _, op := range ops {
		byUser[op.user] = append(byUser[op.user], edge{op.call, 1}, edge{op.ret, -1})
	}
	best := 0
	for _, edges := range byUser {
		sort.Slice(edges, func(i, j int) bool {
			return edges[i].at < edges[j].at || edges[i].at == edges[j].at && edges[i].delta > edges[j].delta
		})
		n := 0
		for _, e := range edges {
			n += e.delta
			best = max(best, n)
		}
	}
	return best
}

func (s *historyStats) add(o historyStats) {
	s.histories += o.histories
	s.pulls += o.pulls
	s.pushes += o.pushes
	s.conflicts += o.conflicts
	s.unknown += o.unknown
	s.syncs += o.syncs
	s.failedSyncs += o.failedSyncs
	s.refused += o.refused
	s.inFlight = max(s.inFlight, o.inFlight)
}

func (s historyStats) String() string {
	return fmt.Sprintf("%d histories, %d pulls and %d pushes checked (%d answered 409, %d with unknown outcome), %d Go client syncs (%d failed), %d requests refused by the server's limits; up to %d requests of one user in flight at once",
		s.histories, s.pulls, s.pushes, s.conflicts, s.unknown, s.syncs, s.failedSyncs, s.refused, s.inFlight)
}

// concurrentHistory is one history being made.
type concurrentHistory struct {
	t     *testing.T
	cfg   historyConfig
	sch   *schema.Schema
	srv   *testutil.Server
	begin time.Time
	ctx   context.Context

	mu  sync.Mutex
	ops []*hOp
	st  historyStats

	goDevs  []*goDevice
	rawDevs []*rawDevice
	// problems are the failures found while the history ran or converged.
	problems []string
}

// problem notes a failure (any goroutine may call it).
func (h *concurrentHistory) problem(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.problems = append(h.problems, fmt.Sprintf(format, args...))
}

// verdict runs the history, lets the devices converge and checks it all. It returns
// the failures seen while running and converging, and what the checker says of the
// recorded history ("" each when nothing is wrong).
func (h *concurrentHistory) verdict(timeout time.Duration) (problems, checker string) {
	h.run()
	if len(h.problems) == 0 {
		h.converge()
	}
	return strings.Join(h.problems, "\n"), checkHistory(h.sch, h.ops, timeout)
}

func newConcurrentHistory(t *testing.T, cfg historyConfig, store server.Store) *concurrentHistory {
	sch := testutil.TodoSchema(t)
	h := &concurrentHistory{t: t, cfg: cfg, sch: sch, begin: time.Now(), ctx: context.Background()}
	h.srv = testutil.NewStoreServer(t, store, sch, mhttp.Options{})
	dir := t.TempDir()
	for u := 0; u < cfg.users; u++ {
		user := fmt.Sprintf("user%d", u)
		token := h.srv.Token(t, user)
		for d := 0; d < cfg.goDevices; d++ {
			h.goDevs = append(h.goDevs, h.newGoDevice(filepath.Join(dir, fmt.Sprintf("%s-%d.db", user, d)), user, token, cfg.seed+uint64(100*u+d)))
		}
		for d := 0; d < cfg.rawDevices; d++ {
			name := fmt.Sprintf("%s-raw%d", user, d)
			h.rawDevs = append(h.rawDevs, &rawDevice{h: h, user: user, device: name, token: token,
				hc:    &http.Client{Transport: h.recorder(user, name, http.DefaultTransport), Timeout: 30 * time.Second},
				rng:   rand.New(rand.NewPCG(cfg.seed, uint64(1000+100*u+d))),
				known: map[string]string{}})
		}
	}
	return h
}

func (h *concurrentHistory) now() int64 { return time.Since(h.begin).Nanoseconds() }

func (h *concurrentHistory) record(op *hOp) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	if op.kind == "pull" {
		h.st.pulls++
		return
	}
	h.st.pushes++
	switch op.outcome {
	case outConflict:
		h.st.conflicts++
	case outUnknown:
		h.st.unknown++
	}
}

// recorder returns a RoundTripper that records every pull and push of device.
func (h *concurrentHistory) recorder(user, device string, next http.RoundTripper) http.RoundTripper {
	return &historyRecorder{h: h, user: user, device: device, next: next}
}

type historyRecorder struct {
	h            *concurrentHistory
	user, device string
	next         http.RoundTripper
}

func (r *historyRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	kind := opOf(req)
	if kind == "" || req.Body == nil {
		return r.next.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	op := &hOp{user: r.user, device: r.device, kind: kind}
	var sent struct {
		LastPulledAt *int64            `json:"lastPulledAt"`
		Changes      melonsync.Changes `json:"changes"`
	}
	if err := json.Unmarshal(body, &sent); err != nil {
		return nil, fmt.Errorf("history: the client sent %s: %v", body, err)
	}
	if sent.LastPulledAt != nil {
		op.since = *sent.LastPulledAt
	}
	op.changes = sent.Changes
	op.call = r.h.now()
	resp, err := r.next.RoundTrip(req)
	var answer []byte
	if err == nil {
		answer, err = readAnswer(resp)
	}
	op.ret = r.h.now()
	if err != nil {
		if kind == "push" {
			op.outcome = outUnknown
			r.h.record(op)
		}
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	resp.Header.Del("Content-Encoding")
	resp.ContentLength = int64(len(answer))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" && kind == "pull":
		// Refused before doing anything (the server's limits): not an operation.
		r.h.mu.Lock()
		r.h.st.refused++
		r.h.mu.Unlock()
		return resp, nil
	case resp.StatusCode == http.StatusServiceUnavailable && kind == "push":
		op.outcome = outUnknown
	case resp.StatusCode == http.StatusConflict && kind == "push":
		var e struct {
			Error struct {
				Details struct {
					Conflicts map[string][]string `json:"conflicts"`
				} `json:"details"`
			} `json:"error"`
		}
		if err := json.Unmarshal(answer, &e); err != nil {
			return nil, fmt.Errorf("history: a 409 answer %s: %v", answer, err)
		}
		op.outcome, op.conflicts = outConflict, e.Error.Details.Conflicts
	case resp.StatusCode == http.StatusOK && kind == "push":
		var pr melonsync.PushResponse
		if err := json.Unmarshal(answer, &pr); err != nil {
			return nil, fmt.Errorf("history: a push answer %s: %v", answer, err)
		}
		if len(pr.RejectedIDs) > 0 {
			r.h.problem("%s: records of its own user refused: %v", r.device, pr.RejectedIDs)
		}
		op.outcome, op.pushTS = outOK, pr.Timestamp
	case resp.StatusCode == http.StatusOK:
		var pr melonsync.PullResponse
		if err := json.Unmarshal(answer, &pr); err != nil {
			return nil, fmt.Errorf("history: a pull answer %s: %v", answer, err)
		}
		if pr.Strategy != "" || pr.HasMore {
			r.h.problem("%s: a pull answered strategy %q, hasMore %v, with nothing purged and no paging asked", r.device, pr.Strategy, pr.HasMore)
		}
		op.pull = &pr
	default:
		r.h.problem("%s: %s answered %d: %s", r.device, kind, resp.StatusCode, answer)
		return resp, nil
	}
	r.h.record(op)
	return resp, nil
}

// readAnswer reads a whole answer body, gunzipped.
func readAnswer(resp *http.Response) ([]byte, error) {
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.Header.Get("Content-Encoding") != "gzip" {
		return b, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// run lets every device act at once for cfg.load.
func (h *concurrentHistory) run() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, d := range h.goDevs {
		wg.Add(1)
		go func() { defer wg.Done(); d.loop(stop) }()
	}
	for _, d := range h.rawDevs {
		wg.Add(1)
		go func() { defer wg.Done(); d.loop(stop) }()
	}
	time.Sleep(h.cfg.load)
	close(stop)
	wg.Wait()
}

// converge syncs every Go device, one at a time, until none has anything to push,
// then checks that each holds exactly its user's data on the server (a last full
// pull, part of the history).
func (h *concurrentHistory) converge() {
	for round := 0; ; round++ {
		pending := false
		for _, d := range h.goDevs {
			for attempt := 0; ; attempt++ {
				err := d.sync()
				if err == nil {
					break
				}
				if attempt == 5 {
					h.problem("%s cannot sync when alone: %v", d.device, err)
					return
				}
			}
			if d.unsynced() > 0 {
				pending = true
			}
		}
		if !pending && round > 0 {
			break
		}
		if round == 6 {
			h.problem("the devices still have changes to push after %d rounds of syncs", round)
			return
		}
	}
	servers := map[string]map[string]melonsync.RawRecord{}
	for _, d := range h.rawDevs {
		if servers[d.user] == nil {
			pr, err := d.pull(0)
			if err != nil {
				h.problem("%s: last full pull: %v", d.device, err)
				return
			}
			servers[d.user] = recordsOf(pr.Changes)
		}
	}
	for _, d := range h.goDevs {
		want := servers[d.user]
		got := d.records()
		for key, r := range got {
			s := want[key]
			if s == nil {
				h.problem("%s holds %s, the server does not: %v", d.device, key, r)
				return
			}
			for col, v := range s {
				if !reflect.DeepEqual(r[col], v) {
					h.problem("%s: %s.%s = %#v, the server has %#v", d.device, key, col, r[col], v)
					return
				}
			}
		}
		if len(got) != len(want) {
			h.problem("%s holds %d records, the server %d", d.device, len(got), len(want))
			return
		}
	}
}

// recordsOf returns the created and updated records of changes by "table/id".
func recordsOf(c melonsync.Changes) map[string]melonsync.RawRecord {
	out := map[string]melonsync.RawRecord{}
	for table, tc := range c {
		for _, r := range append(append([]melonsync.RawRecord{}, tc.Created...), tc.Updated...) {
			out[table+"/"+r["id"].(string)] = r
		}
	}
	return out
}

// goDevice is a real Go client: its own database file and HTTP transport.
type goDevice struct {
	h            *concurrentHistory
	user, device string
	db           *client.DB
	opts         client.SyncOptions
	rng          *rand.Rand
	n            int
}

func (h *concurrentHistory) newGoDevice(path, user, token string, seed uint64) *goDevice {
	t := h.t
	db, err := client.Open(path, h.sch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	device, err := client.DeviceID(h.ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: h.recorder(user, device, http.DefaultTransport.(*http.Transport).Clone())}
	remote, err := transport.NewClient(h.srv.URL, transport.StaticToken(token), device,
		transport.WithHTTPClient(hc), transport.WithGzipThreshold(-1), transport.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return &goDevice{h: h, user: user, device: device, db: db, opts: remote.Options(), rng: rand.New(rand.NewPCG(seed, 7))}
}

func (d *goDevice) sync() error {
	err := client.Synchronize(d.h.ctx, d.db, d.opts)
	d.h.mu.Lock()
	d.h.st.syncs++
	if err != nil {
		d.h.st.failedSyncs++
	}
	d.h.mu.Unlock()
	if err != nil && (errors.Is(err, client.ErrProgrammer) || errors.Is(err, client.ErrInvalidData) || errors.Is(err, client.ErrAuth)) {
		d.h.problem("%s: sync: %v", d.device, err)
	}
	return err
}

// loop writes locally (mostly updates of the user's few records, which other
// devices update too) and syncs, until stop.
func (d *goDevice) loop(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		if err := d.act(); err != nil {
			d.h.problem("%s: local write: %v", d.device, err)
			return
		}
		d.sync() // a conflict (409) or a refusal is retried by the next round
		time.Sleep(time.Duration(d.rng.IntN(3)) * time.Millisecond)
	}
}

func (d *goDevice) act() error {
	recs := d.records()
	keys := sortedKeys(recs)
	d.n++
	name := fmt.Sprintf("%s-%d", d.device[:6], d.n)
	return d.db.Write(d.h.ctx, func(tx *client.Tx) error {
		p := d.rng.Float64()
		switch {
		case len(keys) < 3 || p < 0.1 && len(keys) < 10:
			table := []string{"projects", "tasks"}[d.rng.IntN(2)]
			_, err := tx.Create(table, map[string]any{"name": name, "position": float64(d.rng.IntN(1000))})
			return err
		case p < 0.16:
			table, id, _ := strings.Cut(keys[d.rng.IntN(len(keys))], "/")
			return tx.MarkAsDeleted(table, id)
		default:
			table, id, _ := strings.Cut(keys[d.rng.IntN(len(keys))], "/")
			vals := map[string]any{"name": name}
			if d.rng.IntN(2) == 0 {
				vals["position"] = float64(d.rng.IntN(1000))
			}
			return tx.Update(table, id, vals)
		}
	})
}

// records returns the device's live records by "table/id".
func (d *goDevice) records() map[string]client.Record {
	out := map[string]client.Record{}
	err := d.db.Read(d.h.ctx, func(tx *client.Tx) error {
		for _, t := range d.h.sch.Tables {
			recs, err := tx.Query(t.Name, client.Query{})
			if err != nil {
				return err
			}
			for _, r := range recs {
				out[t.Name+"/"+r["id"].(string)] = r
			}
		}
		return nil
	})
	if err != nil {
		d.h.problem("%s: read: %v", d.device, err)
	}
	return out
}

// unsynced counts the device's local changes not pushed yet.
func (d *goDevice) unsynced() int {
	n := 0
	d.db.Read(d.h.ctx, func(tx *client.Tx) error {
		for _, t := range d.h.sch.Tables {
			recs, err := tx.Query(t.Name, client.Query{IncludeDeleted: true})
			if err != nil {
				return err
			}
			for _, r := range recs {
				if r["_status"] != client.StatusSynced {
					n++
				}
			}
		}
		return nil
	})
	return n
}

// rawDevice speaks the protocol by hand to do what a Go client does not: push with a
// stale lastPulledAt, pull from old timestamps, retry a push after a 409 with the
// pull that follows it, and send only some columns of an updated record.
type rawDevice struct {
	h                   *concurrentHistory
	user, device, token string
	hc                  *http.Client
	rng                 *rand.Rand
	seen                []int64           // timestamps its pulls got, oldest first
	known               map[string]string // "table/id" → "" of the records it believes live
	n                   int
}

func (d *rawDevice) loop(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		var err error
		switch p := d.rng.Float64(); {
		case len(d.seen) == 0 || p < 0.3:
			err = d.pullOn()
		case p < 0.45:
			_, err = d.pull(d.seen[d.rng.IntN(len(d.seen))])
		default:
			err = d.pushStale()
		}
		if err != nil {
			d.h.problem("%s: %v", d.device, err)
			return
		}
		time.Sleep(time.Duration(d.rng.IntN(3)) * time.Millisecond)
	}
}

func (d *rawDevice) post(path string, body any, out any) (int, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", d.h.srv.URL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(melonsync.HeaderDevice, d.device)
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(answer, out); err != nil {
			return 0, err
		}
	}
	return resp.StatusCode, nil
}

// pull pulls from since (0: first sync) without changing what the device knows.
func (d *rawDevice) pull(since int64) (*melonsync.PullResponse, error) {
	body := map[string]any{"lastPulledAt": nil}
	if since > 0 {
		body["lastPulledAt"] = since
	}
	var pr melonsync.PullResponse
	for {
		status, err := d.post("/api/sync/pull", body, &pr)
		if err != nil {
			return nil, err
		}
		switch status {
		case http.StatusOK:
			return &pr, nil
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			time.Sleep(10 * time.Millisecond)
		default:
			return nil, fmt.Errorf("pull answered %d", status)
		}
	}
}

// pullOn pulls from the device's last timestamp and takes the answer in.
func (d *rawDevice) pullOn() error {
	var since int64
	if len(d.seen) > 0 {
		since = d.seen[len(d.seen)-1]
	}
	pr, err := d.pull(since)
	if err != nil {
		return err
	}
	if since == 0 {
		d.known = map[string]string{}
	}
	for key := range recordsOf(pr.Changes) {
		d.known[key] = ""
	}
	for table, tc := range pr.Changes {
		for _, id := range tc.Deleted {
			delete(d.known, table+"/"+id)
		}
	}
	d.seen = append(d.seen, pr.Timestamp)
	return nil
}

// pushStale pushes a few changes with a lastPulledAt drawn from the timestamps it
// has seen (often not the newest); after a 409 it pulls on and tries again.
func (d *rawDevice) pushStale() error {
	changes := d.changes()
	lp := d.seen[len(d.seen)-1-d.rng.IntN(min(len(d.seen), 4))]
	for attempt := 0; attempt < 3; attempt++ {
		status, err := d.post("/api/sync/push", map[string]any{"changes": changes, "lastPulledAt": lp}, nil)
		if err != nil {
			return err
		}
		switch status {
		case http.StatusOK:
			return nil
		case http.StatusConflict, http.StatusTooManyRequests, http.StatusServiceUnavailable:
		default:
			return fmt.Errorf("push answered %d", status)
		}
		if err := d.pullOn(); err != nil {
			return err
		}
		lp = d.seen[len(d.seen)-1]
		changes = d.keepKnown(changes)
	}
	return nil
}

// changes draws a push: updates of one or two known records (sometimes only their
// name), sometimes a deletion or a new record.
func (d *rawDevice) changes() melonsync.Changes {
	c := melonsync.Changes{}
	tc := func(table string) *melonsync.TableChanges {
		if c[table] == nil {
			c[table] = &melonsync.TableChanges{Created: []melonsync.RawRecord{}, Updated: []melonsync.RawRecord{}, Deleted: []string{}}
		}
		return c[table]
	}
	keys := sortedKeys(d.known)
	d.n++
	name := fmt.Sprintf("%s-%d", d.device, d.n)
	if len(keys) < 3 || d.rng.IntN(8) == 0 {
		tc("projects").Created = append(tc("projects").Created, melonsync.RawRecord{"id": fmt.Sprintf("%s-p%d", d.device, d.n), "name": name, "position": float64(d.n)})
		return c
	}
	used := map[string]bool{}
	for i := 0; i < 1+d.rng.IntN(2); i++ {
		key := keys[d.rng.IntN(len(keys))]
		if used[key] {
			continue
		}
		used[key] = true
		table, id, _ := strings.Cut(key, "/")
		if d.rng.IntN(10) == 0 {
			tc(table).Deleted = append(tc(table).Deleted, id)
			continue
		}
		r := melonsync.RawRecord{"id": id, "name": fmt.Sprintf("%s.%d", name, i)}
		if d.rng.IntN(2) == 0 {
			r["position"] = float64(d.rng.IntN(1000))
		}
		tc(table).Updated = append(tc(table).Updated, r)
	}
	return c
}

// keepKnown drops from c the updates and deletions of records the device no longer
// believes live (it pulled their deletion).
func (d *rawDevice) keepKnown(c melonsync.Changes) melonsync.Changes {
	out := melonsync.Changes{}
	for table, tc := range c {
		n := &melonsync.TableChanges{Created: tc.Created, Updated: []melonsync.RawRecord{}, Deleted: []string{}}
		for _, r := range tc.Updated {
			if _, ok := d.known[table+"/"+r["id"].(string)]; ok {
				n.Updated = append(n.Updated, r)
			}
		}
		for _, id := range tc.Deleted {
			if _, ok := d.known[table+"/"+id]; ok {
				n.Deleted = append(n.Deleted, id)
			}
		}
		out[table] = n
	}
	return out
}
