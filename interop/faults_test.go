package interop

// The real WatermelonDB client under network and server faults: a TCP proxy between
// the client and "melonsync serve" cuts answers, pulls and pushes mid-way, and the
// server is restarted (and killed) during syncs. The app's answer to a failed sync is
// to call synchronize() again; it must converge with no WatermelonDB warning or error,
// nothing lost, nothing doubled, no delete undone.

import (
	"encoding/json"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/melonsync/melonsync/internal/testutil/faultproxy"
)

func TestWatermelonDBFaults(t *testing.T) {
	runScenarios(t, []scenario{{"faults_then_converge", scenarioFaults}})
}

// faultRunner answers the scenario's checkpoints by acting on the proxy and the server.
type faultRunner struct {
	t     *testing.T
	srv   *server
	proxy *faultproxy.Proxy

	wg      sync.WaitGroup // a kill in the background
	mu      sync.Mutex
	bgErr   error
	actions []string // what was done, for the log
}

func (f *faultRunner) logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, fmt.Sprintf(format, args...))
}

// restart starts the server again on its store; when its old address is taken, on
// another, which the proxy then forwards to.
func (f *faultRunner) restart(kill bool) error {
	if kill {
		f.srv.cmd.Process.Signal(syscall.SIGKILL)
		<-f.srv.done
	}
	if err := f.srv.restart(); err != nil {
		return err
	}
	f.proxy.SetUpstream(f.srv.addr)
	return nil
}

func (f *faultRunner) checkpoint(name string) (M, error) {
	p := f.proxy
	switch name {
	case "heal":
		f.wg.Wait()
		return nil, p.Reset()
	case "cut pull":
		// New connections only (the driver opens one per request): the pull's answer
		// is cut after its headers (about 200 bytes) and part of its body.
		p.CutAfter(faultproxy.Down, 400)
	case "lose answer":
		// Checkpoints in beforePush run after the pull: the push reaches the server
		// whole, and the connection is reset when the answer starts.
		p.CutAfter(faultproxy.Down, 0)
	case "cut push":
		p.CutAfter(faultproxy.Up, 3000)
	case "restart":
		if err := f.restart(false); err != nil {
			return nil, err
		}
		f.logf("restarted between pull and push")
	case "kill after apply":
		// The push is applied and committed; when its answer starts, the connection
		// is reset and the server killed before anything else, then started again.
		before := p.Stats().Cut
		p.CutAfter(faultproxy.Down, 0)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for deadline := time.Now().Add(30 * time.Second); p.Stats().Cut == before; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					f.mu.Lock()
					f.bgErr = fmt.Errorf("the push's answer never came")
					f.mu.Unlock()
					return
				}
			}
			if err := f.restart(true); err != nil {
				f.mu.Lock()
				f.bgErr = err
				f.mu.Unlock()
			}
			f.logf("killed after applying a push, restarted")
		}()
	default:
		return nil, fmt.Errorf("unknown checkpoint %q", name)
	}
	return nil, nil
}

func checkpoint(name string) M { return M{"op": "checkpoint", "name": name} }

// failedSync is a sync that a fault makes fail with an error containing msg (as
// Node's http module words it), or with any error when msg is true.
func failedSync(client string, msg any, opts ...M) M {
	return syncStep(client, append(opts, M{"expectError": msg})...)
}

func scenarioFaults(t *testing.T, st store) {
	srv := newServer(t, st)
	proxy, err := faultproxy.New(srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	f := &faultRunner{t: t, srv: srv, proxy: proxy}
	heal := checkpoint("heal")
	taskValues := M{"project_id": "", "name": "task {i}", "is_done": false, "position": 1}
	steps := []M{
		// B fills the server; A's first sync is cut mid-answer, then done again.
		{"op": "createMany", "client": "B", "table": "tasks", "count": 300, "idPrefix": "b", "values": taskValues},
		syncStep("B"),
		checkpoint("cut pull"),
		named("first pull cut mid-answer", failedSync("A", true)),
		heal,
		M{"op": "expect", "client": "A", "table": "tasks", "count": 0},
		named("first sync again", syncStep("A", M{"expectPull": M{"tables": M{"tasks": M{"created": "$any"}}}})),
		M{"op": "expect", "client": "A", "table": "tasks", "count": 300},

		// A creates, updates and deletes; the push is applied but its answer is lost.
		create("A", "tasks", "a1", task("", "a one", false, 1)),
		create("A", "tasks", "a2", task("", "a two", false, 2)),
		update("A", "tasks", "b0", M{"name": "b0 edited by A"}),
		markAsDeleted("A", "tasks", "b1"),
		named("push answer lost", failedSync("A", "ECONNRESET", M{"beforePush": []M{checkpoint("lose answer")}})),
		heal,
		// The push was applied: the retry's pull brings its records back as updated.
		named("sync again after the lost answer", syncStep("A", M{"expectPull": M{"tables": M{"tasks": tc(nil, ids("a1", "a2", "b0"), ids("b1"))}}})),
		M{"op": "expect", "client": "A", "table": "tasks", "count": 301, "absent": []string{"b1"},
			"records": []M{synced("a1", M{"name": "a one"}), synced("a2", nil), synced("b0", M{"name": "b0 edited by A"})}},

		// A large push is cut while it is sent.
		{"op": "createMany", "client": "A", "table": "tasks", "count": 200, "idPrefix": "c", "values": taskValues},
		markAsDeleted("A", "tasks", "b2"),
		named("push cut mid-request", failedSync("A", "ECONNRESET", M{"beforePush": []M{checkpoint("cut push")}})),
		heal,
		// Nothing of the cut push was applied.
		named("sync again after the cut push", syncStep("A", M{"expectPull": M{"tables": M{"tasks": none}}})),

		// B deletes and adds; A's incremental pull is cut mid-answer.
		markAsDeleted("B", "tasks", "b10"),
		markAsDeleted("B", "tasks", "b11"),
		update("B", "tasks", "b12", M{"name": "b12 edited by B"}),
		{"op": "createMany", "client": "B", "table": "tasks", "count": 100, "idPrefix": "d", "values": taskValues},
		syncStep("B"),
		checkpoint("cut pull"),
		named("incremental pull cut mid-answer", failedSync("A", true)),
		heal,
		named("sync again after the cut pull", syncStep("A")),
		M{"op": "expect", "client": "A", "table": "tasks", "count": 598, "absent": []string{"b1", "b2", "b10", "b11"},
			"records": []M{synced("b12", M{"name": "b12 edited by B"})}},

		// The server restarts between A's pull and push.
		update("A", "tasks", "b30", M{"name": "b30 edited by A"}),
		markAsDeleted("A", "tasks", "b31"),
		create("A", "tasks", "e1", task("", "e one", false, 1)),
		named("server restarted during the sync", syncStep("A", M{"beforePush": []M{checkpoint("restart")}})),

		// The server is killed right after it applied A's push, before answering.
		update("A", "tasks", "b40", M{"name": "b40 edited by A"}),
		markAsDeleted("A", "tasks", "b41"),
		create("A", "tasks", "f1", task("", "f one", false, 1)),
		named("server killed after applying the push", failedSync("A", "ECONNRESET", M{"beforePush": []M{checkpoint("kill after apply")}})),
		heal,
		named("sync again after the kill", syncStep("A", M{"expectPull": M{"tables": M{"tasks": tc(nil, ids("b40", "f1"), ids("b41"))}}})),

		// Everyone ends with the server's state: B, and C syncing from scratch.
		syncStep("B"),
		syncStep("A", M{"expectPush": nil}),
		syncStep("C"),
		converged("A", "B", "C"),
		M{"op": "expect", "client": "C", "table": "tasks", "count": 598,
			"absent":  []string{"b1", "b2", "b10", "b11", "b31", "b41"},
			"records": []M{synced("a1", nil), synced("e1", nil), synced("f1", nil), synced("b40", M{"name": "b40 edited by A"}), synced("b30", M{"name": "b30 edited by A"})}},
	}
	start := time.Now()
	res := run(t, srv, M{
		"url":     "http://" + proxy.Addr(),
		"tokens":  M{"alice": srv.token("alice")},
		"clients": M{"A": M{"user": "alice"}, "B": M{"user": "alice"}, "C": M{"user": "alice"}},
		"steps":   steps,
	}, f.checkpoint)
	f.wg.Wait()
	if f.bgErr != nil {
		t.Error(f.bgErr)
	}
	for _, s := range res.steps {
		if s.Op == "sync" && s.Name != "" {
			var r struct {
				ExpectedError string `json:"expectedError"`
			}
			_ = json.Unmarshal(s.Raw, &r)
			t.Logf("%s: %.0f ms %s", s.Name, s.MS, r.ExpectedError)
		}
	}
	st2 := proxy.Stats()
	t.Logf("%v in all; proxy: %+v; %v", time.Since(start).Round(time.Millisecond), st2, f.actions)
}
