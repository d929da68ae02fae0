// Package server implements the rules of WatermelonDB's sync protocol over a Store:
// what a pull returns, what a push may change, conflicts, per-user scoping and the
// sanitizing of pushed values. Transport (HTTP) and storage (SQLite, PostgreSQL) live
// in their own packages.
package server

import (
	"context"
	"errors"

	"github.com/melonsync/melonsync/schema"
)

// Store keeps the synced tables and the metadata sync needs: for each record its
// owner, the version of its last change, the device that made it, when and by which
// device it was created, and whether it is a tombstone.
//
// Versions are positive integers below 2^53 handed out in commit order: a snapshot
// that sees version v sees every change with a version ≤ v.
type Store interface {
	// Prepare creates or upgrades the tables of s (adding tables and columns, never
	// dropping data). It is called once at start, before any Read or Write.
	Prepare(ctx context.Context, s *schema.Schema) error
	// Read runs fn in one consistent snapshot of all tables.
	Read(ctx context.Context, fn func(ReadTx) error) error
	// Write runs fn in one transaction, committed only when fn returns nil. A store
	// may run fn again after the database aborted an attempt (a deadlock victim), so
	// fn must reset whatever it records outside the transaction.
	Write(ctx context.Context, fn func(WriteTx) error) error
	// Secret returns the server's JWT signing secret, generating and keeping one on
	// first use.
	Secret(ctx context.Context) ([]byte, error)
	// PurgeTombstones removes tombstones whose version is ≤ before and remembers the
	// newest version it removed: an incremental pull from before that version is no
	// longer possible (it gets a replacement answer). It returns how many tombstones
	// were removed.
	PurgeTombstones(ctx context.Context, before int64) (int64, error)
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// ReadTx reads one snapshot.
type ReadTx interface {
	// Clock returns the highest version committed in this snapshot (the store's
	// starting clock when nothing was ever written).
	Clock() (int64, error)
	// PurgedThrough returns the version through which tombstones may have been purged
	// (0 when never).
	PurgedThrough() (int64, error)
	// InGap reports whether v lies in a gap MarkGap recorded: a version this store's
	// history never handed out (history.go).
	InGap(v int64) (bool, error)
	// Scan calls fn for every row of t that matches f, with Values holding the
	// columns cols in order. The Row passed to fn is reused between calls.
	Scan(t *schema.Table, cols []schema.Column, f Filter, fn func(*Row) error) error
	// Count returns how many rows of t match f (ByCreated and Limit ignored).
	Count(t *schema.Table, f Filter) (int64, error)
	// Moves calls fn for every recorded change of group (or, in a members table, of
	// group or user) of rows of t that matches f, ordered by row id then version.
	Moves(t *schema.Table, f MoveFilter, fn func(Move) error) error
}

// MoveFilter selects moves (see ACCESS.md). Exactly one of IDs, FromGroups and User
// is set.
type MoveFilter struct {
	// After keeps moves whose version is > After.
	After int64
	// IDs keeps moves of these rows.
	IDs []string
	// FromGroups keeps moves out of these groups.
	FromGroups []string
	// User keeps moves of membership rows from or to this user.
	User string
}

// Move is one change of a group table row's group (and, for a membership row, user)
// at Version.
type Move struct {
	ID                 string
	Version            int64
	FromGroup, ToGroup string
	FromUser, ToUser   string
}

// WriteTx is one write transaction.
type WriteTx interface {
	ReadTx
	// Lookup returns the metadata of the rows of t with the given ids (tombstones
	// included); ids that do not exist are absent from the map.
	Lookup(t *schema.Table, ids []string) (map[string]Meta, error)
	// Version returns the version of this transaction's writes, allocating it on the
	// first call. It is greater than every version committed before.
	Version() (int64, error)
	// MarkGap records, with this transaction, that no version between after and this
	// transaction's version (both excluded) belongs to the store's history: after is
	// the clock the transaction read (history.go). Call it before Version: it
	// allocates the version, and a store whose writers run concurrently reads the
	// clock again while no other writer can draw a version (a later clock than
	// after, never a lower one). Gaps wholly below the purge horizon may be dropped.
	MarkGap(after int64) error
	// Apply performs ops on t with this transaction's version.
	Apply(t *schema.Table, ops []Op) error
	// Memberships returns the groups of kind g that user is a member of as this
	// transaction sees them, and keeps those membership rows from changing until it
	// ends (PostgreSQL: FOR SHARE).
	Memberships(g *schema.Group, user string) ([]string, error)
	// Unclaimed takes a lock on founding group id of kind g (held to the end of the
	// transaction, so founders of one id take turns) and reports whether no live row
	// of any table of that kind belongs to the group.
	Unclaimed(g *schema.Group, id string) (bool, error)
	// Values returns, for the live rows of t with these ids, the values of cols in
	// order (string, float64, bool or nil). Missing rows and tombstones are absent.
	// Conflict policies call it after Lookup, on rows Lookup has seen.
	Values(t *schema.Table, cols []schema.Column, ids []string) (map[string][]any, error)
}

// TablesWriteTx is a WriteTx that can look up and apply the rows of several tables at
// once (PostgreSQL: in one round trip). LookupTables(ts, ids)[i] is Lookup(ts[i],
// ids[i]), with the locks taken in the same order as by one Lookup per table in turn;
// ApplyTables(ts, ops) is Apply(ts[i], ops[i]) for each i in turn. The service uses
// them when a store's WriteTx has them.
type TablesWriteTx interface {
	LookupTables(tables []*schema.Table, ids [][]string) ([]map[string]Meta, error)
	ApplyTables(tables []*schema.Table, ops [][]Op) error
}

// CommitWriteTx is a TablesWriteTx that can apply its last writes and commit in one
// round trip. After ApplyTablesAndCommit returns nil the transaction is committed:
// the function given to Write must then return nil without another statement
// (Version answers from memory once a write took it).
type CommitWriteTx interface {
	TablesWriteTx
	ApplyTablesAndCommit(tables []*schema.Table, ops [][]Op) error
}

// GroupWriter is a Store that can commit small pushes together (group commit;
// PostgreSQL: group.go). WriteGrouped is Write for a push's function, and may run it
// in one transaction with other pushes' while keeping each all-or-nothing and its
// answer the one Write would give. The function may be run again alone at any call
// it makes of its WriteTx (so, like Write's, it must start afresh each time).
type GroupWriter interface {
	WriteGrouped(ctx context.Context, fn func(WriteTx) error) error
	// GroupStats says what group commit did since the store opened.
	GroupStats() GroupStats
}

// GroupStats counts what a GroupWriter's group commit did.
type GroupStats struct {
	// Groups is the number of group transactions run (two members or more).
	Groups int64
	// Grouped is the number of pushes committed in one of them.
	Grouped int64
	// Alone is the number of pushes a group sent to run alone.
	Alone int64
	// Single is the number of pushes that found no other one queued and ran as a
	// plain write.
	Single int64
}

// Filter selects rows for Scan. Its scope is, in this order: every row (Any), the
// rows of a members table naming User, the rows of a group table whose group is in
// Groups, or the rows Owner owns.
type Filter struct {
	// Owner restricts rows to those this user owns.
	Owner string
	// Any lifts every scope restriction (public tables, look-ups by id).
	Any bool
	// User keeps the rows of a members table whose user column is User.
	User string
	// Groups keeps the rows of a group table whose group is one of these (none when
	// Groups is empty but not nil).
	Groups []string
	// IDs, when not nil, keeps only rows with these ids.
	IDs []string
	// Deleted selects tombstones (whose Values are not read) instead of live rows.
	Deleted bool
	// After keeps rows whose version is > After (0: no lower bound).
	After int64
	// Through keeps rows whose version is ≤ Through (0: no upper bound).
	Through int64
	// CreatedAfter keeps rows created after this version; CreatedThrough (0: no
	// bound) rows created at or before it. Paged pulls (PAGING.md) use them.
	CreatedAfter, CreatedThrough int64
	// ByCreated orders live rows by creation version (then id); Limit, when > 0,
	// keeps only the first Limit of them.
	ByCreated bool
	Limit     int
	// NonDefault, when not empty, keeps rows where at least one of these columns holds
	// something other than the column's default value.
	NonDefault []schema.Column
}

// Row is one record as read by Scan.
type Row struct {
	ID     string
	Values []any // string, float64, bool or nil; aligned with the scanned columns
	// Version is the version of the last change; CreatedVersion of the creation.
	Version        int64
	CreatedVersion int64
	// CreatedDevice is the device that pushed the creation ("" when unknown).
	CreatedDevice string
	// Owner is the user who created the row.
	Owner string
	// Group is the row's group (group tables; tombstones included), User the user a
	// membership row names (members tables).
	Group, User string
}

// Meta is what a push needs to know about an existing row.
type Meta struct {
	Owner   string
	Version int64
	Deleted bool
	// Device made the last change ("" when unknown).
	Device string
	// Group is the row's group (group tables), User the user a membership row names.
	Group, User string
}

// OpKind says what an Op does.
type OpKind int

// Op kinds.
const (
	// OpInsert writes a whole new row, replacing a tombstone with the same id if any.
	OpInsert OpKind = iota
	// OpUpdate sets some columns of a live row.
	OpUpdate
	// OpDelete turns a live row into a tombstone.
	OpDelete
)

// Op is one change to apply.
type Op struct {
	Kind OpKind
	ID   string
	// Values holds a value for each column of the table (OpInsert, OpUpdate).
	Values []any
	// Set says which Values an OpUpdate writes; OpInsert writes them all.
	Set []bool
	// Owner of a new row (OpInsert).
	Owner string
	// Device that makes the change ("" when unknown).
	Device string
	// Group tables: the row's group before (OldGroup; "" for a new row) and after the
	// op; members tables: likewise the user the row names. Stores record a move when
	// they differ on an existing row, and notify the groups and users involved.
	OldGroup, Group string
	OldUser, User   string
}

// ErrNoSecret is returned by the stores' LoadSecret when the store exists but keeps
// no JWT secret yet (no server has started on it).
var ErrNoSecret = errors.New("the store keeps no JWT secret yet (start melonsync serve on it once, or set MELONSYNC_JWT_SECRET)")

// ErrNoStore is returned by the stores' LoadSecret when the database holds no
// melonsync store (a wrong path, a wrong database or search_path).
var ErrNoStore = errors.New("no melonsync store there (check --db, or start melonsync serve on it once)")
