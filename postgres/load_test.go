package postgres_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/server/storetest"
)

// syncLoad is many HTTP clients of a few users pushing and pulling through faults,
// with everything they were told recorded, so that what the store holds at the end
// can be checked against it: every acknowledged push is there, every failed one is
// wholly there or not at all, and no pull skipped anything.
type syncLoad struct {
	t      *testing.T
	base   string
	hc     *http.Client
	tokens map[string]string // user → token

	mu      sync.Mutex
	pushes  map[string][]*pushAttempt // user → every push attempt, in order of sending
	acked   map[string][]*pushAttempt // user → acknowledged pushes, in order of answer
	deleted map[string]bool           // ids some push attempt deletes
	status  map[string]map[int]int    // route → status → count (0: no answer)
	replica map[string]*pullReplica   // puller → what it holds
	slowest map[string]time.Duration  // route → its longest request
	answers []answer                  // every request's route, times and status

	health    []healthPoint
	stop      chan struct{}
	wg        sync.WaitGroup
	requests  atomic.Int64
	abandoned atomic.Int64
}

// pushAttempt is one push sent: it creates three tasks and may delete one created by
// an earlier acknowledged push of the same device.
type pushAttempt struct {
	user, device string
	name         string   // the created tasks' name
	created      []string // ids
	deletes      string   // id or ""
	status       int      // 0: no answer
	err          string
}

// pullReplica is a puller's local copy: task id → name.
type pullReplica struct {
	user    string
	since   int64
	records map[string]string
}

type healthPoint struct {
	at     time.Time
	status int
}

// newSyncLoad starts, against the server at base, pushers devices pushing and
// pullers devices pulling for each user, and a /healthz poller; Stop ends them.
func newSyncLoad(t *testing.T, base string, tokens map[string]string, pushers, pullers int) *syncLoad {
	l := &syncLoad{
		t: t, base: base, tokens: tokens,
		// A request that gets no answer in this time is a hang: the server must answer
		// 503 when the database does not, not leave the client waiting.
		hc:      &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		pushes:  map[string][]*pushAttempt{},
		acked:   map[string][]*pushAttempt{},
		deleted: map[string]bool{},
		status:  map[string]map[int]int{},
		replica: map[string]*pullReplica{},
		slowest: map[string]time.Duration{},
		stop:    make(chan struct{}),
	}
	users := make([]string, 0, len(tokens))
	for u := range tokens {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		for p := 0; p < pushers; p++ {
			l.wg.Add(1)
			go l.pusher(u, fmt.Sprintf("%s-push%d", u, p))
		}
		for p := 0; p < pullers; p++ {
			name := fmt.Sprintf("%s-pull%d", u, p)
			rep := &pullReplica{user: u, records: map[string]string{}}
			l.replica[name] = rep
			l.wg.Add(1)
			go l.puller(name, rep)
		}
	}
	l.wg.Add(1)
	go l.healthPoller()
	return l
}

func (l *syncLoad) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// Stop ends the clients and waits for them.
func (l *syncLoad) Stop() {
	close(l.stop)
	l.wg.Wait()
}

// answer is one request as a client saw it.
type answer struct {
	route      string
	start, end time.Time
	status     int
}

// count records one answer of route to a request sent at start.
func (l *syncLoad) count(route string, status int, start time.Time) {
	l.requests.Add(1)
	end := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.status[route] == nil {
		l.status[route] = map[int]int{}
	}
	l.status[route][status]++
	l.slowest[route] = max(l.slowest[route], end.Sub(start))
	l.answers = append(l.answers, answer{route, start, end, status})
}

// answered returns the answers of route received in [from, to].
func (l *syncLoad) answered(route string, from, to time.Time) []answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []answer
	for _, a := range l.answers {
		if a.route == route && !a.end.Before(from) && !a.end.After(to) {
			out = append(out, a)
		}
	}
	return out
}

// retryable tells answers a client waits out and tries again: the database is not
// reachable (503), or the user's bound on requests at once is reached (429: a request
// the client gave up on may still hold its slot).
func retryable(status int) bool {
	return status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests
}

func (l *syncLoad) pusher(user, device string) {
	defer l.wg.Done()
	cl := &syncClient{base: l.base, token: l.tokens[user], device: device, hc: l.hc}
	var pool []string // ids of acknowledged creates not yet deleted
	for i := 0; !l.stopped(); i++ {
		a := &pushAttempt{user: user, device: device, name: fmt.Sprintf("%s #%d", device, i)}
		for k := 0; k < 3; k++ {
			a.created = append(a.created, fmt.Sprintf("%s-%d-%d", device, i, k))
		}
		if i%2 == 1 && len(pool) > 0 {
			a.deletes, pool = pool[0], pool[1:]
		}
		created := make([]melonsync.RawRecord, len(a.created))
		for k, id := range a.created {
			created[k] = melonsync.RawRecord{"id": id, "name": a.name}
		}
		deleted := []string{}
		if a.deletes != "" {
			deleted = append(deleted, a.deletes)
		}
		ch := melonsync.Changes{"tasks": {Created: created, Updated: []melonsync.RawRecord{}, Deleted: deleted}}
		l.mu.Lock()
		l.pushes[user] = append(l.pushes[user], a)
		if a.deletes != "" {
			l.deleted[a.deletes] = true
		}
		l.mu.Unlock()
		// Retry until acknowledged, as an app does; every other push is given up
		// after its first failure instead, so that the store's end state shows
		// whether a failed push was applied whole or not at all.
		for attempt := 0; ; attempt++ {
			start := time.Now()
			_, st, err := cl.push(context.Background(), 0, ch)
			l.count("push", st, start)
			if err == nil {
				a.status = st
				break
			}
			if !retryable(st) {
				l.t.Errorf("push %s: status %d: %v", a.name, st, err)
			}
			if i%2 == 0 || l.stopped() || !retryable(st) {
				l.mu.Lock()
				a.status, a.err = st, err.Error()
				l.mu.Unlock()
				l.abandoned.Add(1)
				break
			}
			time.Sleep(time.Duration(20+10*min(attempt, 20)) * time.Millisecond)
		}
		if a.status == 200 {
			l.mu.Lock()
			l.acked[user] = append(l.acked[user], a)
			l.mu.Unlock()
			pool = append(pool, a.created...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *syncLoad) puller(name string, rep *pullReplica) {
	defer l.wg.Done()
	cl := &syncClient{base: l.base, token: l.tokens[rep.user], device: name, hc: l.hc}
	for !l.stopped() {
		l.pullOnce(cl, rep)
		time.Sleep(10 * time.Millisecond)
	}
}

// pullOnce pulls rep's user's changes since rep.since, applies them, and checks that
// every push acknowledged before the pull was sent is in rep. It reports whether
// the pull succeeded.
func (l *syncLoad) pullOnce(cl *syncClient, rep *pullReplica) bool {
	l.mu.Lock()
	ackedBefore := len(l.acked[rep.user])
	l.mu.Unlock()
	start := time.Now()
	r, st, err := cl.pull(context.Background(), rep.since)
	l.count("pull", st, start)
	if err != nil {
		if !retryable(st) {
			// A spooled pull's 200 is whole: a 200 with a broken body is a bug too.
			l.t.Errorf("pull %s since %d: status %d: %v", cl.device, rep.since, st, err)
		}
		return false
	}
	if r.Timestamp < rep.since {
		l.t.Errorf("pull %s: timestamp %d went back from %d", cl.device, r.Timestamp, rep.since)
	}
	if tc := r.Changes["tasks"]; tc != nil {
		for _, rec := range append(append([]melonsync.RawRecord{}, tc.Created...), tc.Updated...) {
			rep.records[rec["id"].(string)], _ = rec["name"].(string)
		}
		for _, id := range tc.Deleted {
			delete(rep.records, id)
		}
	}
	rep.since = r.Timestamp
	l.mu.Lock()
	acked := l.acked[rep.user][:ackedBefore]
	deleted := l.deleted
	for _, a := range acked {
		for _, id := range a.created {
			if _, ok := rep.records[id]; !ok && !deleted[id] {
				l.t.Errorf("pull %s up to %d skipped %s of the acknowledged push %q", cl.device, r.Timestamp, id, a.name)
			}
		}
		if a.deletes != "" {
			if _, ok := rep.records[a.deletes]; ok {
				l.t.Errorf("pull %s up to %d still has %s, deleted by the acknowledged push %q", cl.device, r.Timestamp, a.deletes, a.name)
			}
		}
	}
	l.mu.Unlock()
	return true
}

func (l *syncLoad) healthPoller() {
	defer l.wg.Done()
	hc := &http.Client{Timeout: 30 * time.Second}
	for !l.stopped() {
		st := 0
		start := time.Now()
		if resp, err := hc.Get(l.base + "/healthz"); err == nil {
			resp.Body.Close()
			st = resp.StatusCode
		}
		l.count("healthz", st, start)
		l.mu.Lock()
		l.health = append(l.health, healthPoint{time.Now(), st})
		l.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
}

// acks returns how many pushes were acknowledged so far.
func (l *syncLoad) acks() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.acked {
		n += len(a)
	}
	return n
}

// healthSince returns the /healthz statuses polled since t.
func (l *syncLoad) healthSince(t time.Time) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for _, h := range l.health {
		if !h.at.Before(t) {
			out = append(out, h.status)
		}
	}
	return out
}

// waitRecovered waits up to d for n more acknowledged pushes and a healthy /healthz.
func (l *syncLoad) waitRecovered(d time.Duration, n int) error {
	since := time.Now()
	before := l.acks()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		h := l.healthSince(since)
		if l.acks() >= before+n && len(h) > 0 && h[len(h)-1] == 200 {
			return nil
		}
	}
	return fmt.Errorf("not recovered within %v: %d pushes acknowledged (want %d), /healthz %v", d, l.acks()-before, n, l.healthSince(since))
}

// Check stops the clients and compares the store's end state with what they were
// told: each puller, after one more pull, holds exactly its user's tasks.
func (l *syncLoad) Check(h *storetest.Harness) {
	t := l.t
	t.Helper()
	l.Stop()
	for user := range l.tokens {
		state := map[string]string{}
		r := h.PullFrom(user, "check", 0)
		for _, rec := range r.Changes["tasks"].Created {
			state[rec["id"].(string)], _ = rec["name"].(string)
		}
		l.checkPushes(user, state)
		for name, rep := range l.replica {
			if rep.user != user {
				continue
			}
			cl := &syncClient{base: l.base, token: l.tokens[user], device: name, hc: l.hc}
			ok := false
			for i := 0; i < 20 && !ok; i++ {
				if ok = l.pullOnce(cl, rep); !ok {
					time.Sleep(200 * time.Millisecond)
				}
			}
			if !ok {
				t.Errorf("puller %s: no pull succeeded after the faults", name)
				continue
			}
			var missing, extra []string
			for id, name := range state {
				if rep.records[id] != name {
					missing = append(missing, id)
				}
			}
			for id := range rep.records {
				if _, ok := state[id]; !ok {
					extra = append(extra, id)
				}
			}
			if len(missing)+len(extra) > 0 {
				sort.Strings(missing)
				sort.Strings(extra)
				t.Errorf("puller %s holds %d tasks, the store %d: missing or different %v, extra %v", name, len(rep.records), len(state), head(missing), head(extra))
			}
		}
	}
	if n := l.status["push"][500] + l.status["pull"][500] + l.status["healthz"][500]; n > 0 {
		t.Errorf("%d answers were 500", n)
	}
	for route, st := range l.status {
		for s := range st {
			if s != 200 && !retryable(s) {
				t.Errorf("%s answered %d %d times", route, s, st[s])
			}
		}
	}
}

// checkPushes checks user's pushes against state (the store's tasks of user).
func (l *syncLoad) checkPushes(user string, state map[string]string) {
	t := l.t
	applied, notApplied := 0, 0
	for _, a := range l.pushes[user] {
		var present []string
		for _, id := range a.created {
			if name, ok := state[id]; ok {
				if name != a.name {
					t.Errorf("task %s is named %q, pushed as %q", id, name, a.name)
				}
				present = append(present, id)
			} else if !l.deleted[id] {
				// Deleted ids are only ever ones of acknowledged pushes.
				continue
			} else {
				present = append(present, id) // created, then deleted by a later push
			}
		}
		deleteApplied := a.deletes == ""
		if a.deletes != "" {
			_, alive := state[a.deletes]
			deleteApplied = !alive
		}
		whole := len(present) == len(a.created) && deleteApplied
		none := len(present) == 0 && (a.deletes == "" || !deleteApplied)
		switch {
		case a.status == 200 && !whole:
			t.Errorf("acknowledged push %q is not all there: created %v, present %v, deletes %q (applied %v)", a.name, a.created, present, a.deletes, deleteApplied)
		case a.status != 200 && !whole && !none:
			t.Errorf("failed push %q (%d %s) is half applied: created %v, present %v, deletes %q (applied %v)", a.name, a.status, a.err, a.created, present, a.deletes, deleteApplied)
		case a.status != 200 && whole:
			applied++
		case a.status != 200:
			notApplied++
		}
	}
	t.Logf("%s: %d pushes sent, %d acknowledged; of the failed ones %d were applied (the answer was lost), %d not", user, len(l.pushes[user]), len(l.acked[user]), applied, notApplied)
}

// Summary returns the answers counted, for the log.
func (l *syncLoad) Summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	routes := make([]string, 0, len(l.status))
	for r := range l.status {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	for _, r := range routes {
		fmt.Fprintf(&b, "%s %v; ", r, l.status[r])
	}
	b.WriteString("slowest answer")
	for _, r := range routes {
		fmt.Fprintf(&b, " %s %v", r, l.slowest[r].Round(time.Millisecond))
	}
	return b.String()
}

func head(ids []string) []string {
	if len(ids) > 10 {
		return append(ids[:10:10], "…")
	}
	return ids
}
