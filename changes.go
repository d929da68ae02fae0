package melonsync

// RawRecord is one record as it travels on the wire: column name to a string,
// float64/json.Number, bool or nil, always with a string "id".
type RawRecord = map[string]any

// TableChanges lists the changes of one table.
type TableChanges struct {
	Created []RawRecord `json:"created"`
	Updated []RawRecord `json:"updated"`
	Deleted []string    `json:"deleted"`
}

// Changes maps a table name to its changes, as in WatermelonDB's SyncDatabaseChangeSet.
type Changes map[string]*TableChanges

// Count returns the number of created, updated and deleted records in c.
func (c Changes) Count() (created, updated, deleted int) {
	for _, tc := range c {
		if tc == nil {
			continue
		}
		created += len(tc.Created)
		updated += len(tc.Updated)
		deleted += len(tc.Deleted)
	}
	return
}

// Empty reports whether c holds no change at all.
func (c Changes) Empty() bool {
	a, b, d := c.Count()
	return a+b+d == 0
}

// MigrationColumns names the columns added to one table by a schema migration.
type MigrationColumns struct {
	Table   string   `json:"table"`
	Columns []string `json:"columns"`
}

// Migration is WatermelonDB's MigrationSyncChanges: what the client's schema gained
// since it last synced (version From).
type Migration struct {
	From    int                `json:"from"`
	Tables  []string           `json:"tables"`
	Columns []MigrationColumns `json:"columns"`
}

// PullRequest is the body of POST /api/sync/pull.
type PullRequest struct {
	LastPulledAt  *int64     `json:"lastPulledAt"`
	SchemaVersion int        `json:"schemaVersion,omitempty"`
	Migration     *Migration `json:"migration"`
	// PageSize, when > 0, asks for a paged answer of about that many records: its
	// timestamp is a version through which everything was sent, and HasMore says
	// whether to pull again from it. Replacement answers are never paged.
	PageSize int `json:"pageSize,omitempty"`
}

// PullResponse is the answer to a pull.
type PullResponse struct {
	Changes   Changes `json:"changes"`
	Timestamp int64   `json:"timestamp"`
	// Strategy is "replacement" when the server could not compute an incremental
	// answer and sent the whole readable data set instead.
	Strategy string `json:"experimentalStrategy,omitempty"`
	// HasMore is true on a page of a paged pull (PullRequest.PageSize) that another
	// page follows; the answer also carries it as "experimentalHasMore".
	HasMore bool `json:"hasMore,omitempty"`
	// Remaining estimates how many records the following pages bring (paged pulls).
	Remaining int64 `json:"remaining,omitempty"`
}

// PushRequest is the body of POST /api/sync/push.
type PushRequest struct {
	Changes      Changes `json:"changes"`
	LastPulledAt int64   `json:"lastPulledAt"`
}

// PushResponse is the answer to a successful push.
type PushResponse struct {
	OK          bool                `json:"ok"`
	Timestamp   int64               `json:"timestamp"`
	RejectedIDs map[string][]string `json:"experimentalRejectedIds,omitempty"`
	// RejectedReasons says, by record id, why a rejected record was refused (the write
	// hook's reasons); ids refused without a reason are absent.
	RejectedReasons map[string]string `json:"rejectedReasons,omitempty"`
	// ResolvedIDs lists the pushed records that met a newer change on the server and
	// were settled by their table's conflict policy instead of a 409; the device pulls
	// the settled record back as "updated".
	ResolvedIDs map[string][]string `json:"resolvedIds,omitempty"`
}

// Strategy values of PullResponse.Strategy.
const StrategyReplacement = "replacement"

// Request headers with a meaning in the protocol.
const (
	// HeaderDevice identifies the device (one local database) that sends a request.
	HeaderDevice = "X-Melon-Device"
	// HeaderCreatedAsUpdated asks a pull to put every non-deleted record in "updated".
	HeaderCreatedAsUpdated = "X-Melon-Send-Created-As-Updated"
)
