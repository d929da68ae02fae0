package client

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/melonsync/melonsync"
)

// Sync phases, as WatermelonDB names them in its sync log. The phase is for people
// reading a log, not a stable API.
const (
	PhaseStarting            = "starting"
	PhaseReadyToPull         = "ready to pull"
	PhasePulled              = "pulled"
	PhaseAppliedRemote       = "applied remote changes"
	PhaseReadyToFetchLocal   = "ready to fetch local changes"
	PhaseFetchedLocal        = "fetched local changes"
	PhaseReadyToPush         = "ready to push"
	PhasePushed              = "pushed"
	PhaseMarkedAsSynced      = "marked local changes as synced"
	PhasePushNotDefined      = "pushChanges not defined"
	PhaseDone                = "done"
	phaseRetryAfterConflict  = "retrying after a push conflict"
	phaseInsertingTurboPrefx = "inserting records"
)

// ResolvedConflict is one record that changed both locally and remotely, as the sync
// log keeps it: the local raw record, the remote one, and the result.
type ResolvedConflict struct {
	Table    string `json:"table"`
	Local    Record `json:"local"`
	Remote   Record `json:"remote"`
	Resolved Record `json:"resolved"`
}

// SyncLog is WatermelonDB's sync log: pass a new one (or SyncLogger.NewLog) in
// SyncOptions.Log and Synchronize fills it in. It is safe to read a Snapshot while the
// sync runs; once Synchronize has returned, the fields may be read directly.
//
// A log holds record contents (in ResolvedConflicts): show or send it only censored
// (Censored, or SyncLogger.Logs).
type SyncLog struct {
	StartedAt               time.Time
	FinishedAt              time.Time
	Phase                   string
	LastPulledAt            *int64
	NewLastPulledAt         *int64
	LastPulledSchemaVersion *int
	Migration               *melonsync.Migration
	// RemoteChangeCount is the number of records pulled; -1 in turbo mode until the
	// stream has been read (WatermelonDB reports NaN).
	RemoteChangeCount int
	LocalChangeCount  int
	ResolvedConflicts []ResolvedConflict
	RejectedIDs       map[string][]string
	// RejectedReasons says, by record id, why the server refused a rejected record
	// (the app backend's write hook: "title too long"); ids refused without a reason
	// are absent.
	RejectedReasons map[string]string
	// ServerResolvedIDs lists the pushed records that met a newer server change and
	// were settled by the server's conflict policy for their table; the next pull
	// brings the settled record.
	ServerResolvedIDs map[string][]string
	// Turbo tells whether the pull was streamed straight into the database.
	Turbo bool
	// Attempts is 2 when the sync was retried after a push conflict.
	Attempts int
	// Warnings notes what WatermelonDB logs as errors without failing the sync (a
	// server that sends a smaller timestamp than before, a fallback migration...).
	Warnings []string
	Error    error

	mu sync.Mutex
}

func (l *SyncLog) update(fn func(l *SyncLog)) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(l)
}

func (l *SyncLog) setPhase(p string) { l.update(func(l *SyncLog) { l.Phase = p }) }

func (l *SyncLog) warn(format string, args ...any) {
	l.update(func(l *SyncLog) { l.Warnings = append(l.Warnings, fmt.Sprintf(format, args...)) })
}

// Snapshot returns a copy of the log taken under its lock.
func (l *SyncLog) Snapshot() *SyncLog {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &SyncLog{
		StartedAt: l.StartedAt, FinishedAt: l.FinishedAt, Phase: l.Phase,
		LastPulledAt: copyPtr(l.LastPulledAt), NewLastPulledAt: copyPtr(l.NewLastPulledAt),
		LastPulledSchemaVersion: copyPtr(l.LastPulledSchemaVersion), Migration: l.Migration,
		RemoteChangeCount: l.RemoteChangeCount, LocalChangeCount: l.LocalChangeCount,
		Turbo: l.Turbo, Attempts: l.Attempts, Error: l.Error,
		Warnings: append([]string(nil), l.Warnings...),
	}
	for _, rc := range l.ResolvedConflicts {
		c.ResolvedConflicts = append(c.ResolvedConflicts, ResolvedConflict{
			Table: rc.Table, Local: maps.Clone(rc.Local), Remote: maps.Clone(rc.Remote), Resolved: maps.Clone(rc.Resolved),
		})
	}
	c.RejectedIDs = cloneIDs(l.RejectedIDs)
	c.ServerResolvedIDs = cloneIDs(l.ServerResolvedIDs)
	c.RejectedReasons = maps.Clone(l.RejectedReasons)
	return c
}

// Censored returns a snapshot of the log with record contents hidden as WatermelonDB's
// censorRaw hides them: every string value, except of "id", "_status", "_changed" and
// columns ending in "_id", becomes its first two characters, "***", its last two and
// its length ("Hello" → "He***lo(5)").
func (l *SyncLog) Censored() *SyncLog {
	c := l.Snapshot()
	for i := range c.ResolvedConflicts {
		rc := &c.ResolvedConflicts[i]
		rc.Local, rc.Remote, rc.Resolved = CensorRecord(rc.Local), CensorRecord(rc.Remote), CensorRecord(rc.Resolved)
	}
	return c
}

// Duration returns how long the sync took, or has been running.
func (l *SyncLog) Duration() time.Duration {
	s := l.Snapshot()
	if s.StartedAt.IsZero() {
		return 0
	}
	if s.FinishedAt.IsZero() {
		return time.Since(s.StartedAt)
	}
	return s.FinishedAt.Sub(s.StartedAt)
}

// MarshalJSON writes the log with WatermelonDB's field names (startedAt, phase,
// remoteChangeCount, resolvedConflicts, rejectedIds, error...). It does not censor:
// marshal Censored() for anything that leaves the device.
func (l *SyncLog) MarshalJSON() ([]byte, error) {
	s := l.Snapshot()
	type out struct {
		StartedAt               *time.Time           `json:"startedAt,omitempty"`
		Phase                   string               `json:"phase,omitempty"`
		LastPulledAt            *int64               `json:"lastPulledAt"`
		LastPulledSchemaVersion *int                 `json:"lastPulledSchemaVersion,omitempty"`
		Migration               *melonsync.Migration `json:"migration,omitempty"`
		NewLastPulledAt         *int64               `json:"newLastPulledAt,omitempty"`
		Turbo                   bool                 `json:"turbo,omitempty"`
		RemoteChangeCount       int                  `json:"remoteChangeCount"`
		LocalChangeCount        int                  `json:"localChangeCount"`
		ResolvedConflicts       []ResolvedConflict   `json:"resolvedConflicts,omitempty"`
		RejectedIDs             map[string][]string  `json:"rejectedIds,omitempty"`
		RejectedReasons         map[string]string    `json:"rejectedReasons,omitempty"`
		ServerResolvedIDs       map[string][]string  `json:"serverResolvedIds,omitempty"`
		Attempts                int                  `json:"attempts,omitempty"`
		Warnings                []string             `json:"warnings,omitempty"`
		FinishedAt              *time.Time           `json:"finishedAt,omitempty"`
		Error                   string               `json:"error,omitempty"`
		ErrorCode               string               `json:"errorCode,omitempty"`
	}
	o := out{
		Phase: s.Phase, LastPulledAt: s.LastPulledAt, LastPulledSchemaVersion: s.LastPulledSchemaVersion,
		Migration: s.Migration, NewLastPulledAt: s.NewLastPulledAt, Turbo: s.Turbo,
		RemoteChangeCount: s.RemoteChangeCount, LocalChangeCount: s.LocalChangeCount,
		ResolvedConflicts: s.ResolvedConflicts, RejectedIDs: s.RejectedIDs, Warnings: s.Warnings,
		RejectedReasons: s.RejectedReasons, ServerResolvedIDs: s.ServerResolvedIDs,
	}
	if s.Attempts > 1 {
		o.Attempts = s.Attempts
	}
	if !s.StartedAt.IsZero() {
		o.StartedAt = &s.StartedAt
	}
	if !s.FinishedAt.IsZero() {
		o.FinishedAt = &s.FinishedAt
	}
	if s.Error != nil {
		o.Error, o.ErrorCode = s.Error.Error(), ErrorCode(s.Error)
	}
	return json.Marshal(o)
}

// CensorRecord returns a copy of r with its contents censored (see SyncLog.Censored).
func CensorRecord(r Record) Record {
	if r == nil {
		return nil
	}
	out := make(Record, len(r))
	for k, v := range r {
		if s, ok := v.(string); ok && censorKey(k) {
			v = CensorValue(s)
		}
		out[k] = v
	}
	return out
}

func censorKey(k string) bool {
	return k != "id" && !strings.HasSuffix(k, "_id") && k != "_status" && k != "_changed"
}

// CensorValue hides a string as WatermelonDB's censorValue does: its first two and
// last two characters around "***", then its length in parentheses.
func CensorValue(s string) string {
	r := []rune(s)
	head, tail := r, r
	if len(r) > 2 {
		head, tail = r[:2], r[len(r)-2:]
	}
	return fmt.Sprintf("%s***%s(%d)", string(head), string(tail), len(r))
}

// SyncLogger keeps the logs of the last N syncs, like WatermelonDB's SyncLogger.
// It is safe for concurrent use.
type SyncLogger struct {
	mu    sync.Mutex
	limit int
	logs  []*SyncLog
}

// NewSyncLogger returns a logger keeping the last limit logs (10 when limit < 1).
func NewSyncLogger(limit int) *SyncLogger {
	if limit < 1 {
		limit = 10
	}
	return &SyncLogger{limit: limit}
}

// NewLog starts a new log, dropping the oldest one when the logger is full. Pass it
// in SyncOptions.Log.
func (sl *SyncLogger) NewLog() *SyncLog {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if len(sl.logs) >= sl.limit {
		sl.logs = append(sl.logs[:0:0], sl.logs[len(sl.logs)-sl.limit+1:]...)
	}
	l := &SyncLog{}
	sl.logs = append(sl.logs, l)
	return l
}

// Logs returns censored copies of the kept logs, oldest first. They are safe to
// show, save or send.
func (sl *SyncLogger) Logs() []*SyncLog {
	sl.mu.Lock()
	logs := append([]*SyncLog(nil), sl.logs...)
	sl.mu.Unlock()
	out := make([]*SyncLog, len(logs))
	for i, l := range logs {
		out[i] = l.Censored()
	}
	return out
}

// Last returns a censored copy of the newest log, or nil.
func (sl *SyncLogger) Last() *SyncLog {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if len(sl.logs) == 0 {
		return nil
	}
	return sl.logs[len(sl.logs)-1].Censored()
}

// String returns the censored logs as indented JSON, for a bug report (WatermelonDB's
// formattedLogs).
func (sl *SyncLogger) String() string {
	b, err := json.MarshalIndent(sl.Logs(), "", "  ")
	if err != nil {
		return fmt.Sprintf("sync logs: %v", err)
	}
	return string(b)
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func cloneIDs(m map[string][]string) map[string][]string {
	if m == nil {
		return nil
	}
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = append([]string(nil), v...)
	}
	return out
}
