package reliability_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// The checker must catch a broken server: these stores break one rule each, and the
// test fails unless the checker itself (the convergence check aside) refuses one of
// three histories.

// brokenStore wraps a real store and breaks one of its promises.
type brokenStore struct {
	server.Store
	// lateClock: a pull's timestamp is the newest version committed when it asks
	// for it, not the one its snapshot saw — the classic "timestamp too high" bug
	// that loses every change committed in between.
	lateClock bool
	// blindPush: a push does not see that a record changed after its lastPulledAt
	// (no 409 for live records): lost updates.
	blindPush bool
	committed atomic.Int64 // highest version a Write committed
}

func (s *brokenStore) Read(ctx context.Context, fn func(server.ReadTx) error) error {
	if !s.lateClock {
		return s.Store.Read(ctx, fn)
	}
	return s.Store.Read(ctx, func(tx server.ReadTx) error { return fn(lateClockTx{tx, s}) })
}

type lateClockTx struct {
	server.ReadTx
	s *brokenStore
}

func (tx lateClockTx) Clock() (int64, error) {
	c, err := tx.ReadTx.Clock()
	time.Sleep(2 * time.Millisecond) // let other pushes commit meanwhile
	return max(c, tx.s.committed.Load()), err
}

func (s *brokenStore) Write(ctx context.Context, fn func(server.WriteTx) error) error {
	var v int64
	err := s.Store.Write(ctx, func(tx server.WriteTx) error {
		v = 0
		return fn(&brokenWriteTx{WriteTx: tx, s: s, v: &v})
	})
	if err == nil && v > 0 {
		for {
			old := s.committed.Load()
			if v <= old || s.committed.CompareAndSwap(old, v) {
				break
			}
		}
	}
	return err
}

type brokenWriteTx struct {
	server.WriteTx
	s *brokenStore
	v *int64
}

func (tx *brokenWriteTx) Version() (int64, error) {
	v, err := tx.WriteTx.Version()
	*tx.v = v
	return v, err
}

func (tx *brokenWriteTx) Lookup(t *schema.Table, ids []string) (map[string]server.Meta, error) {
	metas, err := tx.WriteTx.Lookup(t, ids)
	if tx.s.blindPush {
		for id, m := range metas {
			if !m.Deleted {
				m.Version = 0
				metas[id] = m
			}
		}
	}
	return metas, err
}

func TestHistoryCheckerCatchesBrokenStores(t *testing.T) {
	if testing.Short() {
		t.Skip("concurrent histories skipped in -short mode")
	}
	for _, tc := range []struct {
		name  string
		store func(server.Store) *brokenStore
	}{
		{"timestamp too high", func(s server.Store) *brokenStore { return &brokenStore{Store: s, lateClock: true} }},
		{"no 409 on a changed record", func(s server.Store) *brokenStore { return &brokenStore{Store: s, blindPush: true} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < 3; i++ {
				cfg := defaultHistory
				cfg.load = time.Second
				cfg.seed = uint64(time.Now().UnixNano())
				found := ""
				t.Run(fmt.Sprintf("history%d", i), func(t *testing.T) {
					h := newConcurrentHistory(t, cfg, tc.store(testutil.SQLiteStore(t, t.TempDir())))
					problems, checker := h.verdict(20 * time.Second)
					if problems != "" {
						first, _, _ := strings.Cut(problems, "\n")
						t.Logf("the run and convergence checks saw: %s", first)
					}
					if strings.Contains(checker, undecided) {
						t.Logf("%s", checker) // not a verdict: try another history
						checker = ""
					}
					found = checker
				})
				if found != "" {
					first, _, _ := strings.Cut(found, "\n")
					t.Logf("caught in history %d: %s", i, first)
					if testing.Verbose() {
						t.Logf("%s", found)
					}
					return
				}
			}
			t.Fatalf("the checker passed 3 histories on a store with %q", tc.name)
		})
	}
}
