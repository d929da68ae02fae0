package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/melonsync/melonsync"
)

// decodeStrategy reads the experimentalStrategy of a pull answer: a string
// ("replacement") or {"default": ..., "override": {table: ...}}.
func decodeStrategy(raw []byte) (Strategy, error) {
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		return Strategy{Default: str}, nil
	}
	var obj struct {
		Default  string            `json:"default"`
		Override map[string]string `json:"override"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return Strategy{}, invalidData("pull", "invalid pull strategy: experimentalStrategy must be a string or {default, override}")
	}
	return Strategy{Default: obj.Default, Override: obj.Override}, nil
}

// checkStrategy returns a typed error for an unknown strategy.
func checkStrategy(s Strategy) error {
	if err := s.Validate(); err != nil {
		return &SyncError{Kind: KindInvalidData, Op: "pull", Message: err.Error(), Err: err}
	}
	return nil
}

// PullArgs is what Synchronize asks PullChanges for.
type PullArgs struct {
	// LastPulledAt is the timestamp of the last pull, nil on the first sync.
	LastPulledAt *int64
	// SchemaVersion is the local schema version.
	SchemaVersion int
	// Migration lists what the schema gained since the last sync (migration sync),
	// or nil.
	Migration *melonsync.Migration
	// SendCreatedAsUpdated is SyncOptions.SendCreatedAsUpdated; a transport may tell
	// the server (melonsync's sends X-Melon-Send-Created-As-Updated).
	SendCreatedAsUpdated bool
	// Turbo asks for the raw response body in PullResult.Body, to be streamed into
	// the database (SyncOptions.UnsafeTurbo).
	Turbo bool
	// PageSize is SyncOptions.PageSize: a paged pull of about that many records.
	PageSize int
	// Stream says the caller takes the raw answer in PullResult.Body for any pull
	// (Synchronize always does: it applies the answer while decoding it, so memory
	// does not grow with the answer). A PullFunc may still return decoded Changes.
	Stream bool
}

// Request returns the wire form of the pull.
func (a PullArgs) Request() melonsync.PullRequest {
	return melonsync.PullRequest{LastPulledAt: a.LastPulledAt, SchemaVersion: a.SchemaVersion, Migration: a.Migration, PageSize: a.PageSize}
}

// PullResult is what PullChanges returns: decoded changes and the server timestamp,
// or, for a turbo sync, the raw response body.
type PullResult struct {
	Changes   melonsync.Changes
	Timestamp int64
	// Strategy is the server's experimentalStrategy (zero: incremental). A PullFunc
	// may also set Strategy.ReplacementScope (WatermelonDB's
	// experimentalQueryRecordsForReplacement).
	Strategy Strategy
	// Extra holds the other top-level keys of the answer, for OnDidPullChanges.
	Extra map[string]json.RawMessage
	// Body is the raw JSON answer ({"changes": ..., "timestamp": ...}). Synchronize
	// reads and closes it, applying it as it is decoded: inserted straight into the
	// empty database in turbo mode, with ApplyRemoteChanges' rules otherwise (in
	// batches; see apply_stream.go). WatermelonDB's syncJson.
	Body io.ReadCloser
}

// PullFunc fetches the changes since args.LastPulledAt (WatermelonDB's pullChanges).
type PullFunc func(ctx context.Context, args PullArgs) (*PullResult, error)

// PushFunc sends local changes (WatermelonDB's pushChanges). It must return only
// after the server has committed them, and fail if it has not. It may return nil, or
// a response listing rejected ids.
type PushFunc func(ctx context.Context, req melonsync.PushRequest) (*melonsync.PushResponse, error)

// RemoteChangeInfo is passed to OnWillApplyRemoteChanges.
type RemoteChangeInfo struct {
	// RemoteChangeCount is the number of pulled records, -1 when the answer is a
	// body streamed into the database (turbo mode, and PullArgs.Stream) (not known
	// before the stream is read).
	RemoteChangeCount int
}

// PulledInfo is passed to OnDidPullChanges: what the pull returned besides changes.
type PulledInfo struct {
	Timestamp int64
	Strategy  Strategy
	Extra     map[string]json.RawMessage
	// Records is the number of records pulled.
	Records int
}

// Progress reports the progress of a long sync.
type Progress struct {
	Phase string
	// Records is the number of pulled records applied so far.
	Records int
	// Total is the number of records to apply, -1 when not known (a streamed answer).
	Total int
	// Paged pulls (phase "page", after each page is applied): Remaining estimates
	// the records the next pages bring; HasMore says whether one follows.
	Remaining int64
	HasMore   bool
}

// SyncOptions configures Synchronize. Only PullChanges is required. The names in
// brackets are WatermelonDB's synchronize() arguments.
type SyncOptions struct {
	// PullChanges fetches remote changes [pullChanges]. Required.
	PullChanges PullFunc
	// PushChanges sends local changes [pushChanges]. When nil, Synchronize only pulls.
	PushChanges PushFunc
	// MigrationsEnabledAtVersion is the schema version at which migration syncs were
	// enabled (0: not enabled) [migrationsEnabledAtVersion]. It must be ≥ the oldest
	// version the schema's migrations start from and ≤ the schema version.
	MigrationsEnabledAtVersion int
	// SendCreatedAsUpdated says the server sends created records as updated
	// [sendCreatedAsUpdated].
	SendCreatedAsUpdated bool
	// ConflictResolver may replace the result of merging a local record with a remote
	// one [conflictResolver]. It is called for every record updated by a pull; return
	// resolved (which it may modify) to keep the default.
	ConflictResolver func(table string, local, remote, resolved Record) Record
	// Log, when not nil, is filled in with what happened [log].
	Log *SyncLog
	// OnWillApplyRemoteChanges is called after the pull, before its changes are
	// applied [onWillApplyRemoteChanges]. An error stops the sync.
	OnWillApplyRemoteChanges func(ctx context.Context, info RemoteChangeInfo) error
	// OnDidPullChanges is called after the pulled changes are committed, with the rest
	// of the pull's answer [onDidPullChanges]. An error fails the sync (the pulled
	// changes stay applied).
	OnDidPullChanges func(ctx context.Context, info PulledInfo) error
	// UnsafeTurbo streams the first sync straight into the database [unsafeTurbo]:
	// PullChanges must return PullResult.Body, the database must never have synced
	// and hold no record. Memory stays flat whatever the size of the data set.
	UnsafeTurbo bool
	// OnProgress, when set, is called as pulled records are applied.
	OnProgress func(Progress)
	// PageSize, when > 0, pulls in pages of about that many records: each page is
	// applied and its timestamp saved in a write of its own (an interrupted first sync
	// resumes after the last page applied), and the push follows the last page.
	// OnProgress reports each page (phase "page").
	PageSize int
	// NoConflictRetry turns off the automatic second attempt after a push conflict.
	// By default a push refused with a conflict runs the whole sync once more, as
	// WatermelonDB recommends ("retry once").
	NoConflictRetry bool
}

var running sync.Map // *DB → struct{}: databases with a Synchronize in progress

// IsSyncing reports whether a Synchronize is running on db in this process.
func IsSyncing(db *DB) bool {
	_, ok := running.Load(db)
	return ok
}

// Synchronize runs WatermelonDB's sync on db: pull the changes since the last pull;
// in one write, apply them and save the new lastPulledAt (and the schema version,
// per the migration-sync rules); fetch the local changes; push them; mark them as
// synced, except records modified meanwhile and ids the server rejected.
//
// A second Synchronize on the same database while one runs fails at once with
// ErrConcurrentSync and changes nothing. Failures are *SyncError values of a known
// kind when they are (ErrNetwork, ErrAuth, ErrConflict, ErrServer, ErrInvalidData,
// ErrProgrammer); errors of PullChanges/PushChanges are returned wrapped. A cancelled
// ctx stops the sync where it is; whatever was committed is consistent, and the next
// sync completes the work (a push whose answer was lost is sent again).
func Synchronize(ctx context.Context, db *DB, opts SyncOptions) (err error) {
	log := opts.Log
	log.update(func(l *SyncLog) {
		l.StartedAt = time.Now()
		l.Phase = PhaseStarting
		l.Attempts = 1
	})
	defer func() {
		if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			// A database call interrupted by the cancellation reports it its own way.
			err = fmt.Errorf("%w: %v", ctx.Err(), err)
		}
		if err != nil {
			log.update(func(l *SyncLog) { l.Error = err })
		}
	}()
	if db == nil {
		return programmerError("database is nil")
	}
	if opts.PullChanges == nil {
		return programmerError("PullChanges is required")
	}
	if _, busy := running.LoadOrStore(db, struct{}{}); busy {
		return concurrentError()
	}
	defer running.Delete(db)

	for attempt := 1; ; attempt++ {
		pushFailed, err := synchronizeOnce(ctx, db, &opts)
		if err != nil && pushFailed && attempt == 1 && !opts.NoConflictRetry && errors.Is(err, ErrConflict) && ctx.Err() == nil {
			log.update(func(l *SyncLog) {
				l.Attempts = attempt + 1
				l.Warnings = append(l.Warnings, "push refused with a conflict; pulling again and retrying once")
				l.Phase = phaseRetryAfterConflict
			})
			continue
		}
		return err
	}
}

func concurrentError() *SyncError {
	return &SyncError{Kind: KindConcurrent, Op: "synchronize",
		Message: "concurrent synchronization is not allowed: another synchronize() is running on this database; this one stopped before committing anything"}
}

// synchronizeOnce runs the procedure once: read the sync state, pull, apply what was
// pulled in one write (with SyncOptions.PageSize, page after page, each in its own
// write), then push the local changes. pushFailed tells whether err came from the
// push.
func synchronizeOnce(ctx context.Context, db *DB, opts *SyncOptions) (pushFailed bool, err error) {
	for first := true; ; first = false {
		info, err := pullOnce(ctx, db, opts, first)
		if err != nil {
			return false, err
		}
		more := false
		if opts.PageSize > 0 {
			var remaining int64
			more, remaining = pageInfo(info.Extra)
			if opts.OnProgress != nil {
				opts.OnProgress(Progress{Phase: "page", Records: max(info.Records, 0), Total: -1, Remaining: remaining, HasMore: more})
			}
		}
		if !more {
			return pushLocal(ctx, db, opts, info.Timestamp)
		}
	}
}

// pullOnce pulls (one page when SyncOptions.PageSize is set) and applies the answer
// in one write with its timestamp. Only the first pull of a sync may be turbo.
func pullOnce(ctx context.Context, db *DB, opts *SyncOptions, first bool) (PulledInfo, error) {
	log := opts.Log
	lastPulledAt, mi, err := readSyncState(ctx, db, opts)
	if err != nil {
		return PulledInfo{}, err
	}
	turbo := opts.UnsafeTurbo && first
	if turbo {
		if err := checkTurbo(ctx, db, lastPulledAt); err != nil {
			return PulledInfo{}, err
		}
		log.update(func(l *SyncLog) { l.Turbo = true; l.RemoteChangeCount = -1 })
	}
	log.setPhase(PhaseReadyToPull)
	if err := ctx.Err(); err != nil {
		return PulledInfo{}, err
	}

	res, err := opts.PullChanges(ctx, PullArgs{
		LastPulledAt: copyPtr(lastPulledAt), SchemaVersion: mi.schemaVersion, Migration: mi.migration,
		SendCreatedAsUpdated: opts.SendCreatedAsUpdated, Turbo: turbo, PageSize: opts.PageSize, Stream: true,
	})
	if err != nil {
		return PulledInfo{}, withOp("pull", err)
	}
	if res == nil {
		return PulledInfo{}, invalidData("pull", "pullChanges() returned no result")
	}
	if res.Body != nil {
		defer res.Body.Close()
	}
	log.setPhase(PhasePulled)
	res, remoteCount, err := checkPulled(ctx, db, res, turbo)
	if err != nil {
		return PulledInfo{}, err
	}
	if opts.OnWillApplyRemoteChanges != nil {
		if err := opts.OnWillApplyRemoteChanges(ctx, RemoteChangeInfo{RemoteChangeCount: remoteCount}); err != nil {
			return PulledInfo{}, fmt.Errorf("onWillApplyRemoteChanges: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return PulledInfo{}, err
	}

	info, err := applyPulled(ctx, db, opts, res, remoteCount, turbo, lastPulledAt, mi)
	if err != nil {
		return PulledInfo{}, err
	}
	if opts.OnDidPullChanges != nil {
		if err := opts.OnDidPullChanges(ctx, info); err != nil {
			return PulledInfo{}, fmt.Errorf("onDidPullChanges: %w", err)
		}
	}
	return info, nil
}

// readSyncState reads the last pulled-at time and what the pull must ask for the
// schema's migrations.
func readSyncState(ctx context.Context, db *DB, opts *SyncOptions) (lastPulledAt *int64, mi migrationInfo, err error) {
	log := opts.Log
	err = db.Read(ctx, func(tx *Tx) error {
		var err error
		if lastPulledAt, err = readLocalInt(tx, melonsync.KeyLastPulledAt); err != nil {
			return err
		}
		log.update(func(l *SyncLog) { l.LastPulledAt = copyPtr(lastPulledAt) })
		mi, err = getMigrationInfo(tx, db, log, lastPulledAt, opts.MigrationsEnabledAtVersion)
		return err
	})
	return lastPulledAt, mi, err
}

// checkPulled checks the strategy and changes of a decoded pull answer; an answer
// given as a body is streamed into the database later (applyPulled). remoteCount is
// the number of records, -1 when not known before applying (a body).
func checkPulled(ctx context.Context, db *DB, res *PullResult, turbo bool) (_ *PullResult, remoteCount int, err error) {
	if turbo {
		if res.Body == nil {
			return nil, 0, programmerError("unsafeTurbo needs PullResult.Body (the raw answer to stream); PullChanges returned decoded changes")
		}
		return res, -1, nil
	}
	if res.Body != nil && res.Changes == nil {
		return res, -1, nil // streamed into the database by applyPulled
	}
	if err := checkStrategy(res.Strategy); err != nil {
		return nil, 0, err
	}
	if err := checkRemoteChanges(db, res.Changes); err != nil {
		return nil, 0, err
	}
	a, b, c := res.Changes.Count()
	return res, a + b + c, nil
}

// applyPulled applies a pull answer in one write transaction, with the new
// pulled-at time (and schema version), unless another sync changed the pulled-at time
// since lastPulledAt was read.
func applyPulled(ctx context.Context, db *DB, opts *SyncOptions, res *PullResult, remoteCount int, turbo bool, lastPulledAt *int64, mi migrationInfo) (PulledInfo, error) {
	log := opts.Log
	streamed := remoteCount < 0 // checkPulled leaves a body to stream
	info := PulledInfo{Strategy: res.Strategy, Extra: res.Extra, Records: remoteCount}
	err := db.Write(ctx, func(tx *Tx) error {
		current, err := readLocalInt(tx, melonsync.KeyLastPulledAt)
		if err != nil {
			return err
		}
		if !equalPtr(current, lastPulledAt) {
			return concurrentError()
		}
		if streamed {
			var sr *streamResult
			if turbo {
				sr, err = tx.turboLoad(ctx, res.Body, log, opts.OnProgress)
			} else {
				sr, err = tx.streamApply(ctx, res.Body, applyOptions(Strategy{}, opts), res.Strategy.ReplacementScope, opts.OnProgress)
			}
			if err != nil {
				return err
			}
			info.Timestamp, info.Strategy, info.Extra, info.Records = sr.Timestamp, sr.Strategy, sr.Extra, sr.Records
			log.update(func(l *SyncLog) { l.RemoteChangeCount = sr.Records })
		} else {
			info.Timestamp = res.Timestamp
		}
		newLastPulledAt := info.Timestamp
		log.update(func(l *SyncLog) { l.NewLastPulledAt = &newLastPulledAt })
		if newLastPulledAt <= 0 {
			return invalidData("pull", "pullChanges() returned invalid timestamp %d. timestamp must be a non-zero number", newLastPulledAt)
		}
		if !streamed {
			if err := applyDecoded(tx, opts, res, remoteCount); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		log.setPhase(PhaseAppliedRemote)
		if current != nil && newLastPulledAt < *current {
			log.warn("pull has finished and received server time %d, but the previous pulled-at time was greater (%d); this is most likely a server bug", newLastPulledAt, *current)
		}
		if err := tx.SetLocal(melonsync.KeyLastPulledAt, strconv.FormatInt(newLastPulledAt, 10)); err != nil {
			return err
		}
		if mi.shouldSaveSchemaVersion {
			if err := tx.SetLocal(melonsync.KeyLastPulledSchemaVersion, strconv.Itoa(mi.schemaVersion)); err != nil {
				return err
			}
		}
		return nil
	})
	return info, err
}

// applyDecoded applies decoded remote changes, reporting progress before and after.
func applyDecoded(tx *Tx, opts *SyncOptions, res *PullResult, remoteCount int) error {
	opts.Log.update(func(l *SyncLog) { l.RemoteChangeCount = remoteCount })
	if opts.OnProgress != nil {
		opts.OnProgress(Progress{Phase: "applying", Records: 0, Total: remoteCount})
	}
	if err := tx.ApplyRemoteChanges(res.Changes, applyOptions(res.Strategy, opts)); err != nil {
		return fmt.Errorf("apply remote changes: %w", err)
	}
	if opts.OnProgress != nil {
		opts.OnProgress(Progress{Phase: "applied", Records: remoteCount, Total: remoteCount})
	}
	return nil
}

// pushLocal pushes the local changes (if any, and if the options can push) based on
// the pull at newLastPulledAt, and marks them as synced. pushFailed tells whether err
// came from the push itself.
func pushLocal(ctx context.Context, db *DB, opts *SyncOptions, newLastPulledAt int64) (pushFailed bool, err error) {
	log := opts.Log
	if opts.PushChanges == nil {
		log.setPhase(PhasePushNotDefined)
		log.update(func(l *SyncLog) { l.FinishedAt = time.Now(); l.Phase = PhaseDone })
		return false, nil
	}
	log.setPhase(PhaseReadyToFetchLocal)
	if err := ctx.Err(); err != nil {
		return false, err
	}
	local, err := db.FetchLocalChanges(ctx)
	if err != nil {
		return false, fmt.Errorf("fetch local changes: %w", err)
	}
	a, b, c := local.Changes.Count()
	log.update(func(l *SyncLog) { l.LocalChangeCount = a + b + c; l.Phase = PhaseFetchedLocal })
	if a+b+c > 0 {
		log.setPhase(PhaseReadyToPush)
		if err := ctx.Err(); err != nil {
			return false, err
		}
		resp, err := opts.PushChanges(ctx, melonsync.PushRequest{Changes: local.Changes, LastPulledAt: newLastPulledAt})
		if err != nil {
			return true, withOp("push", err)
		}
		var rejected map[string][]string
		var reasons map[string]string
		var settled map[string][]string
		if resp != nil {
			rejected, reasons, settled = resp.RejectedIDs, resp.RejectedReasons, resp.ResolvedIDs
		}
		log.update(func(l *SyncLog) {
			l.Phase = PhasePushed
			l.RejectedIDs, l.RejectedReasons, l.ServerResolvedIDs = rejected, reasons, settled
		})
		// Marking as synced must happen even if ctx was cancelled meanwhile: the server
		// has committed the push. If it does not happen, the next sync pushes the same
		// records again, which the server accepts (same device).
		if err := db.MarkAsSynced(context.WithoutCancel(ctx), local, rejected); err != nil {
			return false, fmt.Errorf("mark local changes as synced: %w", err)
		}
		log.setPhase(PhaseMarkedAsSynced)
	}
	log.update(func(l *SyncLog) { l.FinishedAt = time.Now(); l.Phase = PhaseDone })
	return false, nil
}

func equalPtr(a, b *int64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// checkRemoteChanges validates pulled records as WatermelonDB's validateRemoteRaw does
// (an object with a valid string "id", no "_status" or "_changed"), so that bad data is
// an ErrInvalidData before anything is written. Tables the local schema does not have
// are skipped (forward compatibility; ApplyRemoteChanges notes them).
func checkRemoteChanges(db *DB, changes melonsync.Changes) error {
	s := db.Schema()
	for table, tc := range changes {
		if s.Table(table) == nil || tc == nil {
			continue
		}
		for _, list := range [][]melonsync.RawRecord{tc.Created, tc.Updated} {
			for _, raw := range list {
				if err := checkRemoteRaw(table, raw); err != nil {
					return err
				}
			}
		}
		for _, id := range tc.Deleted {
			if id == "" {
				return invalidData("pull", "table %q: an empty id in deleted", table)
			}
		}
	}
	return nil
}

// checkRemoteRaw is the database's record check, as a typed error.
func checkRemoteRaw(table string, raw map[string]any) error {
	if err := validateRemoteRaw(table, raw); err != nil {
		return &SyncError{Kind: KindInvalidData, Op: "pull", Message: err.Error(), Err: err}
	}
	return nil
}

// checkTurbo enforces WatermelonDB's turbo rules: first sync only, and (its docs) on
// an empty database.
func checkTurbo(ctx context.Context, db *DB, lastPulledAt *int64) error {
	if lastPulledAt != nil {
		return programmerError("unsafeTurbo can only be used as the first sync")
	}
	empty, err := isEmpty(ctx, db)
	if err != nil {
		return err
	}
	if !empty {
		return programmerError("unsafeTurbo can only be used on an empty database (it holds records or local changes)")
	}
	return nil
}

// TurboEligible reports whether db can take a turbo (streamed) first sync: it never
// synced and holds no record. A scheduler or a command can use it to set
// SyncOptions.UnsafeTurbo.
func TurboEligible(ctx context.Context, db *DB) (bool, error) {
	lpa, err := LastPulledAt(ctx, db)
	if err != nil || lpa != nil {
		return false, err
	}
	return isEmpty(ctx, db)
}

// pageInfo reads a paged pull's hasMore (or experimentalHasMore) and remaining from
// the answer's other keys.
func pageInfo(extra map[string]json.RawMessage) (more bool, remaining int64) {
	for _, key := range []string{"hasMore", "experimentalHasMore"} {
		if raw, ok := extra[key]; ok && string(raw) == "true" {
			more = true
		}
	}
	if raw, ok := extra["remaining"]; ok {
		json.Unmarshal(raw, &remaining)
	}
	return more, remaining
}

// withOp adds op to an error of PullChanges or PushChanges, unless it is a SyncError
// that names its op already (the HTTP transport's): each layer says its part once.
func withOp(op string, err error) error {
	var se *SyncError
	if errors.As(err, &se) && se.Op != "" {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}
