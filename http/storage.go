package http

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/server"
)

// A full disk answers 507 storage_full (nothing was written: the store rolled the
// transaction back whole) and turns /healthz to 503 "degraded" until space is back:
// a write that succeeds again clears it, and while it lasts /healthz probes with a
// small real write at most once every probeEvery.

// Where space ran out.
const (
	fullStore = "store" // the store's own disk (SQLite file, PostgreSQL tablespace)
	fullSpool = "spool" // the directory where pull answers are spooled
)

// fullRetry is the Retry-After, in seconds, of a storage_full answer.
const fullRetry = 30

// probeEvery bounds how often /healthz probes for space while storage is full.
const probeEvery = 5 * time.Second

// probeBytes is how much the spool directory's probe writes.
const probeBytes = 256 << 10

// storageFull tells where err says space ran out: in the store (it wraps
// melonsync.ErrStorageFull), in a file of this process (ENOSPC, EDQUOT: the pull
// spool), or nowhere ("").
func storageFull(err error) string {
	switch {
	case errors.Is(err, melonsync.ErrStorageFull), sqlState(err) == "53100":
		return fullStore
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fullSpool
	}
	return ""
}

// sqlState returns the SQLSTATE of a database error in err's chain (PostgreSQL
// drivers' errors have a SQLState method), "" when there is none.
func sqlState(err error) string {
	var e interface{ SQLState() string }
	if errors.As(err, &e) {
		return e.SQLState()
	}
	return ""
}

func fullMessage(where string) string {
	if where == fullSpool {
		return "the server has no disk space left to prepare this answer; try again later"
	}
	return "the server's storage is full; nothing was written; try again later"
}

// storageHealth remembers since when space has run out, by place.
type storageHealth struct {
	mu      sync.Mutex
	since   map[string]time.Time
	probed  time.Time
	probing bool
}

// failed records that a write in where failed for lack of space.
func (s *storageHealth) failed(where string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.since == nil {
		s.since = map[string]time.Time{}
	}
	if _, ok := s.since[where]; !ok {
		s.since[where] = time.Now()
	}
}

// ok records that a write in where succeeded.
func (s *storageHealth) ok(where string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.since, where)
}

// check returns, for each place whose space has run out, since when (RFC 3339). While
// some place is full it first runs that place's probe, at most once every probeEvery:
// a probe that writes clears its place.
func (s *storageHealth) check(ctx context.Context, probes map[string]func(context.Context) error) map[string]string {
	s.mu.Lock()
	run := len(s.since) > 0 && !s.probing && time.Since(s.probed) >= probeEvery
	var todo []string
	if run {
		s.probing = true
		for where := range s.since {
			todo = append(todo, where)
		}
	}
	s.mu.Unlock()
	if run {
		for _, where := range todo {
			if p := probes[where]; p != nil && p(ctx) == nil {
				s.ok(where)
			}
		}
		s.mu.Lock()
		s.probing, s.probed = false, time.Now()
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.since) == 0 {
		return nil
	}
	out := make(map[string]string, len(s.since))
	for where, t := range s.since {
		out[where] = t.UTC().Format(time.RFC3339)
	}
	return out
}

// spaceProber is a store that can check, with a small real write, that it has room
// to write again (both stores; see their ProbeSpace).
type spaceProber interface {
	ProbeSpace(ctx context.Context) error
}

// probes returns the space probes of the store and of the spool directory.
func (h *Handler) probes() map[string]func(context.Context) error {
	out := map[string]func(context.Context) error{fullSpool: h.probeSpool}
	if p, ok := h.svc.Store().(spaceProber); ok {
		out[fullStore] = p.ProbeSpace
	}
	return out
}

// probeSpool writes probeBytes to a temporary file in the spool directory.
func (h *Handler) probeSpool(context.Context) error {
	f, err := os.CreateTemp(h.opts.SpoolDir, "melonsync-probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, probeBytes))
	return errors.Join(err, f.Close())
}

// wrote reports whether a successful push changed something in the store.
func wrote(p *server.PushParams, resp *melonsync.PushResponse) bool {
	n := 0
	for _, tp := range p.Tables {
		n += len(tp.Created) + len(tp.Updated) + len(tp.Deleted)
	}
	for _, ids := range resp.RejectedIDs {
		n -= len(ids)
	}
	return n > 0
}
