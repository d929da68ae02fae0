package client

// WatermelonDB's synchronize-abort.test.js, plus cancellation at every phase and the
// retry after a push conflict.

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/melonsync/melonsync"
)

func TestSyncConcurrentFailsFast(t *testing.T) {
	db := ldbOpen(t)
	delayed := func(d time.Duration, ts int64) PullFunc {
		return func(ctx context.Context, _ PullArgs) (*PullResult, error) {
			time.Sleep(d)
			return &PullResult{Changes: melonsync.Changes{}, Timestamp: ts}, nil
		}
	}
	done := make(chan error, 1)
	go func() {
		done <- Synchronize(context.Background(), db, SyncOptions{PullChanges: delayed(100*time.Millisecond, 100)})
	}()
	time.Sleep(20 * time.Millisecond)
	if !IsSyncing(db) {
		t.Error("IsSyncing is false while a sync runs")
	}
	start := time.Now()
	pulled := false
	err := Synchronize(context.Background(), db, SyncOptions{PullChanges: func(ctx context.Context, a PullArgs) (*PullResult, error) {
		pulled = true
		return delayed(300*time.Millisecond, 300)(ctx, a)
	}})
	if !errors.Is(err, ErrConcurrentSync) || !strings.Contains(strings.ToLower(err.Error()), "concurrent sync") {
		t.Fatalf("second sync: %v", err)
	}
	if time.Since(start) > 50*time.Millisecond || pulled {
		t.Errorf("the second sync did not fail fast (%v, pulled %v)", time.Since(start), pulled)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v := stLastPulledAt(t, db); v == nil || *v != 100 {
		t.Errorf("lastPulledAt %v, want 100", v)
	}
	if IsSyncing(db) {
		t.Error("IsSyncing after the sync")
	}
}

// Two handles on one file (two processes, in effect): the later commit is refused, as
// WatermelonDB refuses it, and nothing of it is kept.
func TestSyncConcurrentOnTwoHandlesOfOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	db1, err := Open(path, ldbMockSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db1.Close()
	db2, err := Open(path, ldbMockSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	pulling, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Synchronize(context.Background(), db1, SyncOptions{PullChanges: func(context.Context, PullArgs) (*PullResult, error) {
			close(pulling)
			<-release
			return &PullResult{Changes: stChangeSet(map[string]melonsync.TableChanges{"mock_projects": {Created: []melonsync.RawRecord{{"id": "late", "name": "x"}}}}), Timestamp: 300}, nil
		}})
	}()
	<-pulling // the first sync has read lastPulledAt: the second finishes while it pulls
	if err := Synchronize(context.Background(), db2, SyncOptions{PullChanges: stEmptyPull(100).Pull}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; !errors.Is(err, ErrConcurrentSync) {
		t.Fatalf("the later sync: %v, want ErrConcurrentSync", err)
	}
	if v := stLastPulledAt(t, db1); v == nil || *v != 100 {
		t.Errorf("lastPulledAt %v, want 100", v)
	}
	ldbExpectMissing(t, db1, "mock_projects", "late")
}

// A cancelled context stops the sync at any phase; the next sync completes the work
// and no local change is lost.
func TestSyncCancelledAtEveryPhase(t *testing.T) {
	phases := []string{"pull", "will apply", "apply", "did pull", "push before server", "push after server"}
	for _, phase := range phases {
		t.Run(phase, func(t *testing.T) {
			db := ldbOpen(t)
			ldbMakeLocalChanges(t, db)
			before := stSummary(stLocalChanges(t, db))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			remote := stChangeSet(map[string]melonsync.TableChanges{
				"mock_projects": {Created: []melonsync.RawRecord{{"id": "new_project", "name": "remote"}}},
			})
			serverGot := 0
			pull := func(ctx context.Context, _ PullArgs) (*PullResult, error) {
				if phase == "pull" {
					cancel()
					return nil, ctx.Err()
				}
				return &PullResult{Changes: stClone(remote), Timestamp: 1500}, nil
			}
			push := func(ctx context.Context, req melonsync.PushRequest) (*melonsync.PushResponse, error) {
				switch phase {
				case "push before server":
					cancel()
					return nil, ctx.Err()
				case "push after server":
					serverGot++
					cancel() // the server committed; the answer arrives after the cancel
					return &melonsync.PushResponse{OK: true, Timestamp: 1600}, nil
				}
				serverGot++
				return nil, nil
			}
			opts := SyncOptions{PullChanges: pull, PushChanges: push,
				OnWillApplyRemoteChanges: func(ctx context.Context, _ RemoteChangeInfo) error {
					if phase == "will apply" {
						cancel()
					}
					return nil
				},
				ConflictResolver: func(_ string, _, _, resolved Record) Record {
					return resolved
				},
				OnDidPullChanges: func(ctx context.Context, _ PulledInfo) error {
					if phase == "did pull" {
						cancel()
						return ctx.Err()
					}
					return nil
				},
			}
			if phase == "apply" {
				opts.OnProgress = func(p Progress) {
					if p.Phase == "applying" {
						cancel()
					}
				}
			}
			err := Synchronize(ctx, db, opts)
			switch phase {
			case "push after server":
				if err != nil {
					t.Fatalf("a push the server committed should still be marked as synced: %v", err)
				}
				stExpectNoLocalChanges(t, db)
				return
			default:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("error %v, want context.Canceled", err)
				}
			}
			if IsSyncing(db) {
				t.Fatal("still syncing after the cancel")
			}
			// Nothing local was lost.
			after := stSummary(stLocalChanges(t, db))
			if diff := cmp.Diff(before, after); diff != "" {
				t.Fatalf("local changes after the cancelled sync (-before +after):\n%s", diff)
			}
			// The next sync repairs everything.
			serverGot = 0
			phase = "none"
			if err := Synchronize(context.Background(), db, opts); err != nil {
				t.Fatal(err)
			}
			if serverGot != 1 {
				t.Errorf("pushes in the repairing sync: %d", serverGot)
			}
			stExpectNoLocalChanges(t, db)
			ldbExpectMatches(t, db, "mock_projects", "new_project", map[string]any{"name": "remote"})
			if v := stLastPulledAt(t, db); v == nil || *v != 1500 {
				t.Errorf("lastPulledAt %v", v)
			}
		})
	}
}

func TestSyncRetriesOnceAfterPushConflict(t *testing.T) {
	conflict := &SyncError{Kind: KindConflict, Op: "push", Status: 409, Message: "changed on the server", Conflicts: map[string][]string{"mock_projects": {"pUpdated"}}}
	t.Run("second attempt succeeds", func(t *testing.T) {
		db := ldbOpen(t)
		ldbMakeLocalChanges(t, db)
		pull := stEmptyPull(1500)
		n := 0
		push := &stPusher{fn: func(context.Context, melonsync.PushRequest) (*melonsync.PushResponse, error) {
			n++
			if n == 1 {
				return nil, conflict
			}
			return nil, nil
		}}
		log := &SyncLog{}
		if err := Synchronize(context.Background(), db, SyncOptions{PullChanges: pull.Pull, PushChanges: push.Push, Log: log}); err != nil {
			t.Fatal(err)
		}
		if len(pull.Calls()) != 2 || len(push.Calls()) != 2 || log.Attempts != 2 {
			t.Errorf("pulls %d pushes %d attempts %d, want 2 2 2", len(pull.Calls()), len(push.Calls()), log.Attempts)
		}
		if c := pull.Calls()[1]; c.LastPulledAt == nil || *c.LastPulledAt != 1500 {
			t.Errorf("the retry did not pull from the new lastPulledAt: %+v", c)
		}
		stExpectNoLocalChanges(t, db)
	})
	t.Run("two conflicts fail", func(t *testing.T) {
		db := ldbOpen(t)
		ldbMakeLocalChanges(t, db)
		push := &stPusher{fn: func(context.Context, melonsync.PushRequest) (*melonsync.PushResponse, error) { return nil, conflict }}
		err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(1500).Pull, PushChanges: push.Push})
		var se *SyncError
		if !errors.Is(err, ErrConflict) || !errors.As(err, &se) || se.Conflicts["mock_projects"][0] != "pUpdated" {
			t.Fatalf("error %v", err)
		}
		if len(push.Calls()) != 2 {
			t.Errorf("pushes %d, want 2", len(push.Calls()))
		}
		if len(stSummary(stLocalChanges(t, db))) == 0 {
			t.Error("local changes lost")
		}
	})
	t.Run("NoConflictRetry", func(t *testing.T) {
		db := ldbOpen(t)
		ldbMakeLocalChanges(t, db)
		push := &stPusher{fn: func(context.Context, melonsync.PushRequest) (*melonsync.PushResponse, error) { return nil, conflict }}
		err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(1500).Pull, PushChanges: push.Push, NoConflictRetry: true})
		if !errors.Is(err, ErrConflict) || len(push.Calls()) != 1 {
			t.Fatalf("error %v, pushes %d", err, len(push.Calls()))
		}
	})
	t.Run("other push errors are not retried", func(t *testing.T) {
		db := ldbOpen(t)
		ldbMakeLocalChanges(t, db)
		push := &stPusher{fn: func(context.Context, melonsync.PushRequest) (*melonsync.PushResponse, error) {
			return nil, &SyncError{Kind: KindNetwork, Op: "push", Message: "reset"}
		}}
		err := Synchronize(context.Background(), db, SyncOptions{PullChanges: stEmptyPull(1500).Pull, PushChanges: push.Push})
		if !errors.Is(err, ErrNetwork) || len(push.Calls()) != 1 {
			t.Fatalf("error %v, pushes %d", err, len(push.Calls()))
		}
	})
}
