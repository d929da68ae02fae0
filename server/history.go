package server

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/melonsync/melonsync"
)

// A device must never go on believing it is in sync with a history the store no
// longer has (a backup restored, a failover to a replica that lagged). Versions are
// handed out densely in commit order, and every timestamp a device holds is one
// committed version of the store (a pull's clock, a push's version). So a restored
// store, whose clock is c, has lost exactly the versions above c that were handed out
// before the restore — and every one of them is below the wall clock of the restart.
//
// Hence the rule: the first write of every process (Resume, or its first push), and
// any write that finds the clock lower than the highest this process has seen, takes
// its version v and records the gap (c, v) — versions between c and v this history
// never handed out (store.MarkGap). In the normal case nothing lies there, as v is
// the version right after c. After a restore, the lost timestamps all lie there. A
// pull whose lastPulledAt lies in a gap gets a replacement answer (InGap), exactly
// as one from after the clock does before the first write.
//
// Limits: timestamps from the lost history are all below v only if the wall clock
// at the restart is later than every one of them (versions are milliseconds; a clock
// set back breaks it); plain-SQL writes made to a restored store before any melonsync
// process writes it move the clock without a gap (start melonsync first). Gaps are
// one row per process start, dropped once the purge horizon passes them. See
// docs/operations.md, "Restoring a backup".

// checkGaps turns the gap check of pulls off, for the benchmark that measures it.
var checkGaps = true

// history is what a Service knows of its store's history.
type history struct {
	resumed atomic.Bool  // a gap was recorded by this process (Resume or a push)
	highest atomic.Int64 // the highest clock or version this process has seen
}

// saw notes that the store's clock was at least v.
func (h *history) saw(v int64) {
	for {
		old := h.highest.Load()
		if v <= old || h.highest.CompareAndSwap(old, v) {
			return
		}
	}
}

// needsGap reports whether a write that found the store's clock at clock must record
// the gap up to its version: the first of this process, or the store went back
// (seen: highest as loaded before the clock was read, so that a concurrent write of
// this process cannot look like the store going back).
func (h *history) needsGap(clock, seen int64) bool {
	return !h.resumed.Load() || clock < seen
}

// Resume records that this process starts on the store: the versions between the
// store's clock and the version of this write were never handed out by its history
// (a device holding one came from a history the store no longer has, such as the
// writes after a restored backup was taken, and gets a replacement on its next pull).
// A server calls it on start, before serving; when it fails (say, the disk is full),
// the first push does the same. It returns the new clock.
func (s *Service) Resume(ctx context.Context) (int64, error) {
	var v int64
	err := s.store.Write(ctx, func(tx WriteTx) error {
		clock, err := tx.Clock()
		if err != nil {
			return err
		}
		if err := tx.MarkGap(clock); err != nil {
			return err
		}
		v, err = tx.Version()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("resume: %w", err)
	}
	s.history.resumed.Store(true)
	s.history.saw(v)
	return v, nil
}

// markGap is the part of a push's transaction that records the gap below its
// version when needsGap says so (clock: the clock the transaction read first; seen:
// the highest clock this process had seen before), before the version is taken. It reports whether it recorded one.
func (s *Service) markGap(tx WriteTx, clock, seen int64) (bool, error) {
	if !s.history.needsGap(clock, seen) {
		return false, nil
	}
	return true, tx.MarkGap(clock)
}

// strategy returns the strategy of a pull from p.LastPulledAt in a snapshot whose
// clock is clock: "" for an incremental answer (or a first sync), replacement when
// an incremental one would be wrong.
func (s *Service) strategy(tx ReadTx, p PullParams, clock int64) (string, error) {
	s.history.saw(clock)
	since := p.LastPulledAt
	switch {
	case since <= 0:
		return "", nil
	case p.Replacement:
		// An operator forced it for this device.
		return melonsync.StrategyReplacement, nil
	case since > clock:
		// A lastPulledAt this store never handed out (say, the database was restored
		// from a backup and nobody wrote since): only a replacement answer is correct.
		return melonsync.StrategyReplacement, nil
	}
	purged, err := tx.PurgedThrough()
	if err != nil {
		return "", err
	}
	if since < purged {
		return melonsync.StrategyReplacement, nil
	}
	// A timestamp of a history the store no longer has (a restored backup).
	if !checkGaps {
		return "", nil
	}
	if lost, err := tx.InGap(since); err != nil || lost {
		return melonsync.StrategyReplacement, err
	}
	return "", nil
}
