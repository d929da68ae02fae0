// Package admin is the operator's side of a sync server: the sync log (one entry per
// pull and push, buffered and written outside the sync transactions), what is known
// of each device a user syncs from, and the actions an operator takes on them (force
// a replacement sync, revoke a device). The SQLite and PostgreSQL stores implement
// Store; the HTTP API and the dashboard are in package http.
package admin

import (
	"context"
	"encoding/json"
	"sort"

	"github.com/melonsync/melonsync/schema"
)

// Kinds of sync log entries.
const (
	KindPull = "pull"
	KindPush = "push"
)

// MaxIDsPerEntry bounds the conflicting and rejected ids kept in one log entry; the
// counts (Entry.NConflicts, Entry.NRejected) are always complete.
const MaxIDsPerEntry = 100

// Counts is how many records of one table a sync moved, by kind.
type Counts struct {
	Created int `json:"created"`
	Updated int `json:"updated"`
	Deleted int `json:"deleted"`
}

// Entry is one pull or push as the sync log keeps it. It holds ids, never values.
type Entry struct {
	// ID orders entries (newest is largest); set by the store.
	ID int64 `json:"id"`
	// At is when the request arrived, in milliseconds since the epoch.
	At     int64  `json:"at"`
	User   string `json:"user"`
	Device string `json:"device"` // "" when the request had no X-Melon-Device
	Kind   string `json:"kind"`   // KindPull or KindPush
	Route  string `json:"route"`  // method and path, e.g. "POST /api/sync/push"
	// SchemaVersion is the client's schema version (pulls; 0 when unknown).
	SchemaVersion int `json:"schemaVersion"`
	// LastPulledAt is what the client sent; Timestamp what the server answered (0
	// when the request failed).
	LastPulledAt int64 `json:"lastPulledAt"`
	Timestamp    int64 `json:"timestamp"`
	// Tables counts the records sent (pull) or received (push) per table.
	Tables map[string]Counts `json:"tables"`
	// Conflicts and Rejected list ids by table (at most MaxIDsPerEntry in all of
	// each); NConflicts and NRejected count them all.
	Conflicts  map[string][]string `json:"conflicts"`
	Rejected   map[string][]string `json:"rejected"`
	NConflicts int                 `json:"nConflicts"`
	NRejected  int                 `json:"nRejected"`
	// Strategy is "replacement" for a replacement pull, "migration" for a migration
	// pull, else "".
	Strategy string `json:"strategy"`
	// Status is the HTTP status answered; Code the error code when it failed.
	Status int    `json:"status"`
	Code   string `json:"code"`
	// DurationMS is how long the server took, in milliseconds.
	DurationMS float64 `json:"durationMs"`
}

// Records returns how many records the entry moved in all.
func (e *Entry) Records() int {
	n := 0
	for _, c := range e.Tables {
		n += c.Created + c.Updated + c.Deleted
	}
	return n
}

// Activity is what one batch of log entries says about one device; the store adds it
// to the device's summary.
type Activity struct {
	User, Device string
	// First and Last are the times of the batch's first and last request.
	First, Last int64
	Pulls       int
	Pushes      int
	// LastPull and LastPush are the times of the last successful pull and push (0:
	// none in the batch). LastPulledAt, LastTimestamp and SchemaVersion are those of
	// that pull.
	LastPull, LastPush int64
	LastPulledAt       int64
	LastTimestamp      int64
	SchemaVersion      int
	// LastStatus and LastCode are those of the batch's last request.
	LastStatus int
	LastCode   string
	// Conflicts counts the 409s after the batch's last successful push; ResetConflicts
	// says there was such a push (the device's run of conflicts starts again).
	Conflicts      int
	ResetConflicts bool
	// Rejected counts rejected records in the batch.
	Rejected int
}

// Device is what the server knows of one device of a user.
type Device struct {
	User   string `json:"user"`
	Device string `json:"device"`
	// FirstSeen and LastSeen are times of requests (ms since the epoch).
	FirstSeen int64 `json:"firstSeen"`
	LastSeen  int64 `json:"lastSeen"`
	// LastPull and LastPush are the times of the last successful pull and push.
	LastPull int64 `json:"lastPull"`
	LastPush int64 `json:"lastPush"`
	// LastPulledAt is what the device sent in its last successful pull, and
	// LastTimestamp what it was answered (the device's lastPulledAt since).
	LastPulledAt  int64 `json:"lastPulledAt"`
	LastTimestamp int64 `json:"lastTimestamp"`
	SchemaVersion int   `json:"schemaVersion"`
	Pulls         int64 `json:"pulls"`
	Pushes        int64 `json:"pushes"`
	Rejected      int64 `json:"rejected"`
	// ConflictsInRow counts the 409s since the device's last successful push.
	ConflictsInRow int    `json:"conflictsInRow"`
	LastStatus     int    `json:"lastStatus"`
	LastCode       string `json:"lastCode"`
	// ReplaceRequested is when an operator asked for a replacement sync (0: never);
	// it is pending while it is later than ReplacedAt.
	ReplaceRequested int64 `json:"replaceRequested"`
	ReplacedAt       int64 `json:"replacedAt"`
	// RevokedAt is when the device was revoked (0: it is not).
	RevokedAt int64 `json:"revokedAt"`
}

// State is what a sync request must know of its device.
type State struct {
	// Revoked: the device's requests are refused.
	Revoked bool
	// Replace: the device's next pull must be a replacement.
	Replace bool
}

// UserSummary is one user as the users page lists them.
type UserSummary struct {
	User     string `json:"user"`
	Devices  int    `json:"devices"`
	LastSeen int64  `json:"lastSeen"`
	Pulls    int64  `json:"pulls"`
	Pushes   int64  `json:"pushes"`
	// ConflictsInRow is the largest run of conflicts among the user's devices.
	ConflictsInRow int `json:"conflictsInRow"`
	Revoked        int `json:"revoked"`
}

// LogQuery selects sync log entries, newest first.
type LogQuery struct {
	User   string // "" for every user
	Device string
	// AnyDevice: Device is ignored (else Device "" selects requests without one).
	AnyDevice bool
	Kind      string // "" for both
	// Before keeps entries with ID < Before (0: no bound), for paging.
	Before int64
	Limit  int
}

// Bucket is the activity of one minute (Start, ms since the epoch).
type Bucket struct {
	Start     int64 `json:"start"`
	Pulls     int   `json:"pulls"`
	Pushes    int   `json:"pushes"`
	Conflicts int   `json:"conflicts"` // requests answered 409
	Rejected  int   `json:"rejected"`  // records rejected
	Errors    int   `json:"errors"`    // other failures (4xx but 409, 5xx)
}

// Record is one stored row of a synced table, as an operator sees it.
type Record struct {
	ID             string         `json:"id"`
	Owner          string         `json:"owner"`
	Version        int64          `json:"version"`
	CreatedVersion int64          `json:"createdVersion"`
	Device         string         `json:"device"`
	Deleted        bool           `json:"deleted"`
	Values         map[string]any `json:"values"`
	// Group is the row's group id under the access rules ("" for other tables).
	Group string `json:"group,omitempty"`
}

// RecordQuery selects rows of one table. Empty fields do not filter.
type RecordQuery struct {
	ID    string
	Owner string
	// Column and Value keep rows whose Column holds Value (a group column).
	Column string
	Value  string
	// Deleted includes tombstones.
	Deleted bool
	Limit   int
}

// TableCount is how many rows a table holds.
type TableCount struct {
	Table   string `json:"table"`
	Live    int64  `json:"live"`
	Deleted int64  `json:"deleted"`
}

// Store keeps the sync log and the device summaries, and answers the operator's
// queries. Every method is safe for concurrent use; on PostgreSQL every process sees
// what any process wrote.
type Store interface {
	// AppendLog adds entries (their ID is ignored) and each Activity to its device's
	// summary and, when keep > 0, removes all but the newest keep entries — in one
	// transaction, so the log never holds more than keep entries.
	AppendLog(ctx context.Context, entries []Entry, activity []Activity, keep int) error
	// TrimLog keeps at most keep entries (the newest) and removes those older than
	// before (ms; 0: no age bound). It returns how many it removed.
	TrimLog(ctx context.Context, keep int, before int64) (int64, error)
	// Log returns entries matching q, newest first.
	Log(ctx context.Context, q LogQuery) ([]Entry, error)
	// LogCount returns how many entries the log holds.
	LogCount(ctx context.Context) (int64, error)
	// LogSeries returns one Bucket per minute that has entries since since (ms).
	LogSeries(ctx context.Context, since int64) ([]Bucket, error)

	// Devices returns the devices of user, most recently seen first.
	Devices(ctx context.Context, user string) ([]Device, error)
	// DevicesSeen counts devices seen since since (ms).
	DevicesSeen(ctx context.Context, since int64) (int64, error)
	// Users returns users whose id contains q (every user for ""), most recently
	// seen first, including owners of records that never synced through this log.
	Users(ctx context.Context, s *schema.Schema, q string, limit int) ([]UserSummary, error)
	// UserCount counts every user: those seen syncing and owners of records.
	UserCount(ctx context.Context, s *schema.Schema) (int64, error)

	// DeviceState returns what a request of (user, device) must know.
	DeviceState(ctx context.Context, user, device string) (State, error)
	// RequestReplacement makes the next pull of the device a replacement. With
	// allDevices, device is ignored: every device of user, also ones not seen yet.
	RequestReplacement(ctx context.Context, user, device string, allDevices bool, at int64) error
	// MarkReplaced records that the device got its replacement at at.
	MarkReplaced(ctx context.Context, user, device string, at int64) error
	// SetRevoked revokes the device at at, or restores it when at is 0.
	SetRevoked(ctx context.Context, user, device string, at int64) error

	// TableCounts returns the live and deleted rows of every table of s (of user
	// only, when user is not "").
	TableCounts(ctx context.Context, s *schema.Schema, user string) ([]TableCount, error)
	// Records returns rows of t matching q, most recently changed first.
	Records(ctx context.Context, t *schema.Table, q RecordQuery) ([]Record, error)
	// Distinct returns the values of column in t's live rows with how many rows hold
	// each, most frequent first (the groups of a members table).
	Distinct(ctx context.Context, t *schema.Table, column string, limit int) ([]ValueCount, error)
}

// ValueCount is one value of a column and how many rows hold it.
type ValueCount struct {
	Value string `json:"id"`
	Rows  int64  `json:"members"`
}

// DecodeEntryJSON fills e's tables, conflicts and rejected from their stored JSON;
// what does not decode is left empty (the log is diagnostics, never a reason to fail).
func DecodeEntryJSON(e *Entry, tables, conflicts, rejected string) {
	_ = json.Unmarshal([]byte(tables), &e.Tables)
	_ = json.Unmarshal([]byte(conflicts), &e.Conflicts)
	_ = json.Unmarshal([]byte(rejected), &e.Rejected)
}

// AppendOwners adds owners of records that are not in out yet, as users never seen
// syncing, up to limit users in all.
func AppendOwners(out []UserSummary, owners []string, limit int) []UserSummary {
	sort.Strings(owners)
	for _, o := range owners {
		if len(out) >= limit {
			break
		}
		out = append(out, UserSummary{User: o})
	}
	return out
}
