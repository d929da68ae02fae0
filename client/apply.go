package client

import (
	"fmt"
	"sort"
	"strings"

	"github.com/melonsync/melonsync"
)

// Pull strategies (WatermelonDB's SyncPullStrategy).
const (
	// StrategyIncremental applies the pulled changes on top of the local data.
	StrategyIncremental = "incremental"
	// StrategyReplacement treats the pulled created and updated records as the whole
	// data set: local synced (and locally updated or deleted) records that are not in
	// it are destroyed; records created locally and not yet pushed are kept.
	StrategyReplacement = "replacement"
)

// Strategy chooses the pull strategy per table (WatermelonDB's experimentalStrategy,
// string or object form). The zero Strategy is incremental for every table.
type Strategy struct {
	// Default is the strategy of tables without an override: "" or
	// StrategyIncremental, or StrategyReplacement.
	Default string
	// Override maps a table name to its strategy.
	Override map[string]string
	// ReplacementScope, per table, limits a replacement to the records matching the
	// conditions (WatermelonDB's experimentalQueryRecordsForReplacement): records
	// outside it are treated incrementally. A table with no entry is replaced whole.
	ReplacementScope map[string][]Condition
}

// For returns the strategy that applies to table.
func (s Strategy) For(table string) string {
	if v := s.Override[table]; v != "" {
		return v
	}
	if s.Default == "" {
		return StrategyIncremental
	}
	return s.Default
}

// Validate reports an ErrInvalid error ("invalid pull strategy") when Default or an
// override names an unknown strategy.
func (s Strategy) Validate() error {
	ok := func(v string) bool { return v == "" || v == StrategyIncremental || v == StrategyReplacement }
	if !ok(s.Default) {
		return fmt.Errorf("%w: invalid pull strategy %q", ErrInvalid, s.Default)
	}
	for t, v := range s.Override {
		if !ok(v) {
			return fmt.Errorf("%w: invalid pull strategy %q for table %q", ErrInvalid, v, t)
		}
	}
	return nil
}

// ApplyOptions are the settings of ApplyRemoteChanges.
type ApplyOptions struct {
	// Strategy is the pull strategy (the pull response's experimentalStrategy).
	Strategy Strategy
	// SendCreatedAsUpdated says the server sends every record as updated, so an
	// updated record that does not exist locally is expected (no warning), and a
	// created one is worth a warning.
	SendCreatedAsUpdated bool
	// ConflictResolver, when set, is called for every remote record applied to an
	// existing local one, with the local record (including _status and _changed), the
	// remote record as received and the result of the per-column merge; what it returns
	// is stored (sanitized; the id cannot change, and an invalid _status becomes
	// "created" as in WatermelonDB). It must not return nil.
	ConflictResolver func(table string, local, remote, resolved Record) Record
	// OnConflict, when set, is told of every resolved conflict: a remote change applied
	// to a record with local unpushed changes (non-empty _changed). It is the sync log's
	// resolvedConflicts.
	OnConflict func(table string, local, remote, resolved Record)
	// OnWarning, when set, receives the situations that WatermelonDB logs as errors
	// but gets over (a created record that exists locally, an updated one that does
	// not, an unknown table, …). id is "" when the warning is not about one record.
	OnWarning func(table, id, message string)
}

func (o *ApplyOptions) warn(table, id, format string, args ...any) {
	if o.OnWarning != nil {
		o.OnWarning(table, id, fmt.Sprintf(format, args...))
	}
}

// ApplyRemoteChanges applies pulled changes to the database inside tx, with
// WatermelonDB's applyRemoteChanges semantics (SPEC §4):
//
//   - created, not local: created as synced; created, exists locally: merged as an
//     update (warning); created, marked as deleted locally: destroyed and created
//     again as synced (warning);
//   - updated, exists locally: per-column merge, client wins: remote values except the
//     columns in the local _changed, which keep their local values and stay marked; the
//     record keeps its _status (a synced record that equals the remote one is not
//     written); updated, marked as deleted locally: skipped (the deletion will be
//     pushed); updated, not local: created as synced (warning unless
//     SendCreatedAsUpdated);
//   - deleted: destroyed permanently, whatever its local status; unknown ids ignored;
//   - with the replacement strategy (per table), see StrategyReplacement.
//
// Remote values are sanitized to the column types, unknown columns are dropped, columns
// missing from a created record get their default, and tables not in the schema are
// skipped (warning). Strategy only affects tables present in changes. Every record is
// checked first: one without a valid string "id", or with "_status" or "_changed", fails
// the whole call with ErrInvalid before anything is written. On any error, return it
// from the Write function so that nothing is kept.
func (tx *Tx) ApplyRemoteChanges(changes melonsync.Changes, opts ApplyOptions) error {
	if err := tx.check(true); err != nil {
		return err
	}
	if err := opts.Strategy.Validate(); err != nil {
		return err
	}
	var unknown []string
	for name := range changes {
		if _, ok := tx.db.tables[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		opts.warn(name, "", "the server sent changes of table %q, which the schema does not have; skipped", name)
	}
	for _, t := range tx.db.schema.Tables {
		tc := changes[t.Name]
		if tc == nil {
			continue
		}
		for _, list := range [][]melonsync.RawRecord{tc.Created, tc.Updated} {
			for _, raw := range list {
				if err := validateRemoteRaw(t.Name, raw); err != nil {
					return err
				}
			}
		}
	}
	for _, t := range tx.db.schema.Tables {
		tc, ok := changes[t.Name]
		if !ok {
			continue
		}
		if tc == nil {
			tc = &melonsync.TableChanges{}
		}
		if err := tx.applyTable(tx.db.tables[t.Name], tc, &opts); err != nil {
			return err
		}
	}
	return nil
}

func validateRemoteRaw(table string, raw melonsync.RawRecord) error {
	if raw == nil {
		return fmt.Errorf("%w: invalid raw record in %s: null", ErrInvalid, table)
	}
	id, ok := raw["id"].(string)
	_, hasStatus := raw["_status"]
	_, hasChanged := raw["_changed"]
	if !ok || !melonsync.ValidID(id) || hasStatus || hasChanged {
		return fmt.Errorf("%w: invalid raw record in %s (id %v): records must have a string 'id' matching ^[A-Za-z0-9_.-]{1,64}$ and no '_status' or '_changed'", ErrInvalid, table, raw["id"])
	}
	return nil
}

// applyTable works out, from the state before any change (as WatermelonDB does), what
// to do with each record of one table, then does it.
func (tx *Tx) applyTable(ti *tableInfo, tc *melonsync.TableChanges, opts *ApplyOptions) error {
	table := ti.t.Name
	if opts.SendCreatedAsUpdated && len(tc.Created) > 0 {
		opts.warn(table, "", "sendCreatedAsUpdated is set, and yet the server sent %d record(s) of %s as created", len(tc.Created), table)
	}
	st, subject, err := tx.loadLocal(ti, tc, opts)
	if err != nil {
		return err
	}
	destroy, destroyDeleted := st.toDestroy(tc, subject)
	return tx.applyPlan(ti, tc, opts, st, destroy, destroyDeleted)
}

// localState is what a table holds locally of the records a pull concerns.
type localState struct {
	local          map[string]Record // local records not marked as deleted
	locallyDeleted map[string]bool   // ids marked as deleted locally
	localOrder     []string
	deletedOrder   []string
}

func (st *localState) add(r Record) {
	id := r["id"].(string)
	if r["_status"] == StatusDeleted {
		st.addDeleted(id)
		return
	}
	if _, ok := st.local[id]; !ok {
		st.localOrder = append(st.localOrder, id)
	}
	st.local[id] = r
}

func (st *localState) addDeleted(id string) {
	if !st.locallyDeleted[id] {
		st.locallyDeleted[id] = true
		st.deletedOrder = append(st.deletedOrder, id)
	}
}

// changeIDs lists the ids of a table's changes: created, updated, deleted.
func changeIDs(tc *melonsync.TableChanges) []string {
	ids := make([]string, 0, len(tc.Created)+len(tc.Updated)+len(tc.Deleted))
	for _, r := range tc.Created {
		ids = append(ids, r["id"].(string))
	}
	for _, r := range tc.Updated {
		ids = append(ids, r["id"].(string))
	}
	return append(ids, tc.Deleted...)
}

// loadLocal reads the local records the changes concern: those with their ids, and,
// in a replacement, every record the replacement covers (the whole table, or the
// records in its scope and every locally deleted one). subject is nil unless this is
// a replacement; then it tells which local records the replacement covers.
func (tx *Tx) loadLocal(ti *tableInfo, tc *melonsync.TableChanges, opts *ApplyOptions) (st *localState, subject func(id string) bool, err error) {
	table := ti.t.Name
	st = &localState{local: map[string]Record{}, locallyDeleted: map[string]bool{}}
	addAll := func(recs []Record, err error) error {
		for _, r := range recs {
			st.add(r)
		}
		return err
	}
	if opts.Strategy.For(table) != StrategyReplacement {
		return st, nil, addAll(tx.fetchByIDs(ti, changeIDs(tc)))
	}
	scope, ok := opts.Strategy.ReplacementScope[table]
	if !ok {
		return st, func(string) bool { return true }, addAll(tx.queryRecords(ti, ti.selectSQL))
	}
	if err := addAll(tx.fetchByIDs(ti, changeIDs(tc))); err != nil {
		return nil, nil, err
	}
	where, args, err := Query{Where: scope, IncludeDeleted: true}.sql(ti)
	if err != nil {
		return nil, nil, err
	}
	scoped, err := tx.queryRecords(ti, ti.selectSQL+where, args...)
	if err != nil {
		return nil, nil, err
	}
	inScope := make(map[string]bool, len(scoped))
	for _, r := range scoped {
		inScope[r["id"].(string)] = true
		st.add(r)
	}
	// every locally deleted record of the table takes part, as in WatermelonDB
	ids, err := tx.queryIDs(`select "id" from "` + table + `" where "_status" = 'deleted'`)
	if err != nil {
		return nil, nil, fmt.Errorf("client: apply remote changes to %s: %w", table, err)
	}
	for _, id := range ids {
		st.addDeleted(id)
	}
	return st, func(id string) bool { return inScope[id] }, nil
}

// toDestroy returns the local records to destroy: those the server deleted and, in a
// replacement (subject not nil), those it covers that the answer does not hold
// (except records created locally and not pushed yet). destroyDeleted are the locally
// deleted ones among them.
func (st *localState) toDestroy(tc *melonsync.TableChanges, subject func(id string) bool) (destroy, destroyDeleted []string) {
	if subject == nil {
		for _, id := range tc.Deleted {
			if _, ok := st.local[id]; ok {
				destroy = append(destroy, id)
			}
			if st.locallyDeleted[id] {
				destroyDeleted = append(destroyDeleted, id)
			}
		}
		return destroy, destroyDeleted
	}
	remoteDeleted := make(map[string]bool, len(tc.Deleted))
	for _, id := range tc.Deleted {
		remoteDeleted[id] = true
	}
	keep := make(map[string]bool, len(tc.Created)+len(tc.Updated))
	for _, r := range tc.Created {
		keep[r["id"].(string)] = true
	}
	for _, r := range tc.Updated {
		keep[r["id"].(string)] = true
	}
	for _, id := range st.localOrder {
		if remoteDeleted[id] || (subject(id) && !keep[id] && st.local[id]["_status"] != StatusCreated) {
			destroy = append(destroy, id)
		}
	}
	for _, id := range st.deletedOrder {
		if remoteDeleted[id] || (subject(id) && !keep[id]) {
			destroyDeleted = append(destroyDeleted, id)
		}
	}
	return destroy, destroyDeleted
}

// applyPlan applies a table's changes in WatermelonDB's order: destroy the locally
// deleted records that go away, create, update, then destroy.
func (tx *Tx) applyPlan(ti *tableInfo, tc *melonsync.TableChanges, opts *ApplyOptions, st *localState, destroy, destroyDeleted []string) error {
	table := ti.t.Name
	local, locallyDeleted := st.local, st.locallyDeleted
	// 1. locally deleted records that go away
	for _, id := range destroyDeleted {
		if err := tx.destroyRow(table, id, true); err != nil {
			return err
		}
	}
	// 2. created
	for _, raw := range tc.Created {
		id := raw["id"].(string)
		switch {
		case local[id] != nil:
			opts.warn(table, id, "the server wants to create record %s#%s, but it already exists locally; updating it instead (a previous sync may have failed half way)", table, id)
			if err := tx.updateFromRemote(ti, local[id], raw, opts); err != nil {
				return err
			}
		case locallyDeleted[id]:
			opts.warn(table, id, "the server wants to create record %s#%s, but it exists locally and is marked as deleted; destroying the local record and creating it again", table, id)
			if err := tx.destroyRow(table, id, false); err != nil {
				return err
			}
			if err := tx.insertSynced(ti, raw, id); err != nil {
				return err
			}
		default:
			if err := tx.insertSynced(ti, raw, id); err != nil {
				return err
			}
		}
	}
	// 3. updated
	for _, raw := range tc.Updated {
		id := raw["id"].(string)
		switch {
		case local[id] != nil:
			if err := tx.updateFromRemote(ti, local[id], raw, opts); err != nil {
				return err
			}
		case locallyDeleted[id]:
			// deleted locally: the deletion will be pushed
		default:
			if !opts.SendCreatedAsUpdated {
				opts.warn(table, id, "the server wants to update record %s#%s, but it does not exist locally; creating it", table, id)
			}
			if err := tx.insertSynced(ti, raw, id); err != nil {
				return err
			}
		}
	}
	// 4. deleted (and, in a replacement, the records not in the data set)
	for _, id := range destroy {
		if err := tx.destroyRow(table, id, false); err != nil {
			return err
		}
	}
	return nil
}

// fetchByIDs returns the records (including those marked as deleted) whose id is in ids.
func (tx *Tx) fetchByIDs(ti *tableInfo, ids []string) ([]Record, error) {
	const chunk = 500
	var out []Record
	for start := 0; start < len(ids); start += chunk {
		end := min(start+chunk, len(ids))
		part := ids[start:end]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		q := ti.selectSQL + ` where "id" in (?` + strings.Repeat(", ?", len(part)-1) + ")"
		recs, err := tx.queryRecords(ti, q, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

// destroyRow deletes a record for sync (onlyDeleted: only when marked as deleted).
func (tx *Tx) destroyRow(table, id string, onlyDeleted bool) error {
	q := `delete from "` + table + `" where "id" is ?`
	if onlyDeleted {
		q += ` and "_status" = 'deleted'`
	}
	res, err := tx.exec(q, id)
	if err != nil {
		return fmt.Errorf("client: destroy %s#%s: %w", table, id, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		tx.note(table, id, ChangeDeleted, true)
	}
	return nil
}

// insertSynced stores a remote record as synced (WatermelonDB's prepareCreateFromRaw).
func (tx *Tx) insertSynced(ti *tableInfo, raw map[string]any, id string) error {
	r := ti.sanitizeRaw(raw, id)
	r["_status"], r["_changed"] = StatusSynced, ""
	if _, err := tx.exec(ti.insertSQL, ti.rowArgs(r)...); err != nil {
		if isPrimaryKeyConflict(err) {
			return fmt.Errorf("%w: %s#%s", ErrExists, ti.t.Name, id)
		}
		return fmt.Errorf("client: insert %s#%s: %w", ti.t.Name, id, err)
	}
	tx.note(ti.t.Name, id, ChangeCreated, true)
	return nil
}

// InsertSynced is the streaming path for a first sync into an empty table (WatermelonDB's
// unsafeTurbo): it inserts rec as a synced record (_status "synced", _changed "") with a
// statement prepared once per transaction, without looking for an existing record and
// without any merge. rec needs a valid string "id" and must not have "_status" or
// "_changed" (ErrInvalid); values are sanitized and unknown columns dropped, as in
// ApplyRemoteChanges. An id that already exists fails with ErrExists: return the error
// from the Write function so that nothing is kept.
func (tx *Tx) InsertSynced(table string, rec Record) error {
	if err := tx.check(true); err != nil {
		return err
	}
	ti, err := tx.db.table(table)
	if err != nil {
		return err
	}
	if err := validateRemoteRaw(table, rec); err != nil {
		return err
	}
	return tx.insertSynced(ti, rec, rec["id"].(string))
}

// updateFromRemote applies a remote record to an existing local one (WatermelonDB's
// prepareUpdateFromRaw).
func (tx *Tx) updateFromRemote(ti *tableInfo, local Record, remote map[string]any, opts *ApplyOptions) error {
	table := ti.t.Name
	id := local["id"].(string)
	if local["_status"] == StatusSynced {
		r := ti.sanitizeRaw(remote, id)
		r["_status"], r["_changed"] = StatusSynced, ""
		if ti.recordsEqual(local, r) {
			return nil // nothing to do (frequent in replacement syncs)
		}
	}
	isConflict := local["_changed"] != ""
	resolved := resolveConflict(local, remote)
	if opts.ConflictResolver != nil {
		resolved = opts.ConflictResolver(table, copyRecord(local), remote, resolved)
		if resolved == nil {
			return fmt.Errorf("%w: the conflict resolver returned nil for %s#%s", ErrInvalid, table, id)
		}
	}
	final := ti.sanitizeRaw(resolved, id)
	if _, err := tx.exec(ti.updateSQL, ti.updateArgs(final)...); err != nil {
		return fmt.Errorf("client: update %s#%s: %w", table, id, err)
	}
	tx.note(table, id, ChangeUpdated, true)
	if isConflict && opts.OnConflict != nil {
		opts.OnConflict(table, copyRecord(local), copyRecord(remote), copyRecord(final))
	}
	return nil
}

// resolveConflict is WatermelonDB's per-column, client-wins merge: the remote record on
// top of the local one, except the columns in the local _changed, which keep their local
// values; id, _status and _changed stay local.
func resolveConflict(local Record, remote map[string]any) Record {
	if local["_status"] == StatusDeleted {
		return copyRecord(local)
	}
	out := make(Record, len(local)+len(remote))
	for k, v := range local {
		out[k] = v
	}
	for k, v := range remote {
		out[k] = v
	}
	out["id"], out["_status"], out["_changed"] = local["id"], local["_status"], local["_changed"]
	changed, _ := local["_changed"].(string)
	for _, col := range strings.Split(changed, ",") {
		if v, ok := local[col]; ok && col != "" {
			out[col] = v
		}
	}
	return out
}
