package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync/admin"
	"github.com/melonsync/melonsync/schema"
)

var _ admin.Store = (*Store)(nil)

const logColumns = `id, at, user_id, device, kind, route, schema_version, last_pulled_at, "timestamp", tables::text, conflicts::text, rejected::text, n_conflicts, n_rejected, strategy, status, code, duration_ms`

const upsertDevice = `INSERT INTO __melon_devices AS d (user_id, device, first_seen, last_seen, last_pull, last_push,
	last_pulled_at, last_timestamp, schema_version, pulls, pushes, rejected, conflicts_in_row, last_status, last_code)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (user_id, device) DO UPDATE SET
	first_seen = CASE WHEN d.first_seen = 0 THEN excluded.first_seen ELSE least(d.first_seen, excluded.first_seen) END,
	last_seen = greatest(d.last_seen, excluded.last_seen),
	last_pull = greatest(d.last_pull, excluded.last_pull),
	last_push = greatest(d.last_push, excluded.last_push),
	last_pulled_at = CASE WHEN excluded.last_pull > d.last_pull THEN excluded.last_pulled_at ELSE d.last_pulled_at END,
	last_timestamp = CASE WHEN excluded.last_pull > d.last_pull THEN excluded.last_timestamp ELSE d.last_timestamp END,
	schema_version = CASE WHEN excluded.last_pull > d.last_pull THEN excluded.schema_version ELSE d.schema_version END,
	pulls = d.pulls + excluded.pulls,
	pushes = d.pushes + excluded.pushes,
	rejected = d.rejected + excluded.rejected,
	conflicts_in_row = CASE WHEN $16 THEN excluded.conflicts_in_row ELSE d.conflicts_in_row + excluded.conflicts_in_row END,
	last_status = CASE WHEN excluded.last_seen >= d.last_seen THEN excluded.last_status ELSE d.last_status END,
	last_code = CASE WHEN excluded.last_seen >= d.last_seen THEN excluded.last_code ELSE d.last_code END`

// AppendLog writes entries (with COPY) and device activity in one transaction.
func (s *Store) AppendLog(ctx context.Context, entries []admin.Entry, activity []admin.Activity, keep int) error {
	// Devices are upserted in a fixed order, so two processes flushing at once
	// cannot deadlock on each other's rows.
	sort.Slice(activity, func(i, j int) bool {
		if activity[i].User != activity[j].User {
			return activity[i].User < activity[j].User
		}
		return activity[i].Device < activity[j].Device
	})
	return s.retryTx(ctx, func(tx pgx.Tx) error {
		cols := []string{"at", "user_id", "device", "kind", "route", "schema_version", "last_pulled_at", "timestamp",
			"tables", "conflicts", "rejected", "n_records", "n_conflicts", "n_rejected", "strategy", "status", "code", "duration_ms"}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"__melon_sync_log"}, cols, pgx.CopyFromSlice(len(entries), func(i int) ([]any, error) {
			e := &entries[i]
			return []any{e.At, e.User, e.Device, e.Kind, e.Route, int32(e.SchemaVersion), e.LastPulledAt, e.Timestamp,
				jsonText(e.Tables), jsonText(e.Conflicts), jsonText(e.Rejected), int32(e.Records()), int32(e.NConflicts), int32(e.NRejected),
				e.Strategy, int32(e.Status), e.Code, e.DurationMS}, nil
		}))
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		for _, a := range activity {
			b.Queue(upsertDevice, a.User, a.Device, a.First, a.Last, a.LastPull, a.LastPush, a.LastPulledAt, a.LastTimestamp,
				int32(a.SchemaVersion), int64(a.Pulls), int64(a.Pushes), int64(a.Rejected), int32(a.Conflicts), int32(a.LastStatus), a.LastCode, a.ResetConflicts)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if keep > 0 {
			// Ids come from one sequence for every process; gaps (rolled back
			// flushes) only keep fewer. Two processes flushing at the same instant
			// do not see each other's batch, so one batch more may stay until the
			// next flush.
			_, err = tx.Exec(ctx, `DELETE FROM __melon_sync_log WHERE id <= (SELECT max(id) FROM __melon_sync_log) - $1`, int64(keep))
		}
		return err
	})
}

// TrimLog keeps the newest keep entries and drops those older than before.
func (s *Store) TrimLog(ctx context.Context, keep int, before int64) (int64, error) {
	// Ids come from one sequence for every process; gaps (rolled back flushes) only
	// keep fewer entries.
	tag, err := s.pool.Exec(ctx, `DELETE FROM __melon_sync_log WHERE id <= (SELECT max(id) FROM __melon_sync_log) - $1 OR at < $2`, int64(keep), before)
	if err != nil {
		return 0, wrap("trim sync log", err)
	}
	return tag.RowsAffected(), nil
}

// Log returns entries matching q, newest first.
func (s *Store) Log(ctx context.Context, q admin.LogQuery) ([]admin.Entry, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.User != "" {
		where = append(where, `user_id = `+arg(q.User))
		if !q.AnyDevice {
			where = append(where, `device = `+arg(q.Device))
		}
	}
	if q.Kind != "" {
		where = append(where, `kind = `+arg(q.Kind))
	}
	if q.Before > 0 {
		where = append(where, `id < `+arg(q.Before))
	}
	query := `SELECT ` + logColumns + ` FROM __melon_sync_log`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY id DESC LIMIT ` + arg(max(q.Limit, 1))
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, wrap("sync log", err)
	}
	defer rows.Close()
	out := []admin.Entry{}
	for rows.Next() {
		var e admin.Entry
		var tables, conflicts, rejected string
		var sv, nc, nr, st int32
		if err := rows.Scan(&e.ID, &e.At, &e.User, &e.Device, &e.Kind, &e.Route, &sv, &e.LastPulledAt, &e.Timestamp,
			&tables, &conflicts, &rejected, &nc, &nr, &e.Strategy, &st, &e.Code, &e.DurationMS); err != nil {
			return nil, wrap("sync log", err)
		}
		e.SchemaVersion, e.NConflicts, e.NRejected, e.Status = int(sv), int(nc), int(nr), int(st)
		admin.DecodeEntryJSON(&e, tables, conflicts, rejected)
		out = append(out, e)
	}
	return out, wrap("sync log", rows.Err())
}

// LogCount counts the entries.
func (s *Store) LogCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM __melon_sync_log`).Scan(&n)
	return n, wrap("sync log", err)
}

// LogSeries returns per-minute activity since since.
func (s *Store) LogSeries(ctx context.Context, since int64) ([]admin.Bucket, error) {
	rows, err := s.pool.Query(ctx, `SELECT (at / 60000) * 60000 AS m,
		count(*) FILTER (WHERE kind = 'pull'), count(*) FILTER (WHERE kind = 'push'), count(*) FILTER (WHERE status = 409),
		coalesce(sum(n_rejected), 0), count(*) FILTER (WHERE status >= 400 AND status <> 409)
		FROM __melon_sync_log WHERE at >= $1 GROUP BY m ORDER BY m`, since)
	if err != nil {
		return nil, wrap("sync log series", err)
	}
	defer rows.Close()
	out := []admin.Bucket{}
	for rows.Next() {
		var b admin.Bucket
		var pulls, pushes, conflicts, rejected, errs int64
		if err := rows.Scan(&b.Start, &pulls, &pushes, &conflicts, &rejected, &errs); err != nil {
			return nil, wrap("sync log series", err)
		}
		b.Pulls, b.Pushes, b.Conflicts, b.Rejected, b.Errors = int(pulls), int(pushes), int(conflicts), int(rejected), int(errs)
		out = append(out, b)
	}
	return out, wrap("sync log series", rows.Err())
}

const deviceColumns = `user_id, device, first_seen, last_seen, last_pull, last_push, last_pulled_at, last_timestamp,
	schema_version, pulls, pushes, rejected, conflicts_in_row, last_status, last_code, replace_requested, replaced_at, revoked_at`

// Devices returns the devices of user.
func (s *Store) Devices(ctx context.Context, user string) ([]admin.Device, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+deviceColumns+` FROM __melon_devices WHERE user_id = $1 ORDER BY last_seen DESC, device`, user)
	if err != nil {
		return nil, wrap("devices", err)
	}
	out := []admin.Device{}
	for rows.Next() {
		var d admin.Device
		var sv, cir, ls int32
		if err := rows.Scan(&d.User, &d.Device, &d.FirstSeen, &d.LastSeen, &d.LastPull, &d.LastPush, &d.LastPulledAt, &d.LastTimestamp,
			&sv, &d.Pulls, &d.Pushes, &d.Rejected, &cir, &ls, &d.LastCode, &d.ReplaceRequested, &d.ReplacedAt, &d.RevokedAt); err != nil {
			rows.Close()
			return nil, wrap("devices", err)
		}
		d.SchemaVersion, d.ConflictsInRow, d.LastStatus = int(sv), int(cir), int(ls)
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrap("devices", err)
	}
	var all int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce((SELECT replace_requested FROM __melon_admin_users WHERE user_id = $1), 0)`, user).Scan(&all); err != nil {
		return nil, wrap("devices", err)
	}
	for i := range out {
		out[i].ReplaceRequested = max(out[i].ReplaceRequested, all)
	}
	return out, nil
}

// DevicesSeen counts devices seen since since.
func (s *Store) DevicesSeen(ctx context.Context, since int64) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM __melon_devices WHERE last_seen >= $1`, since).Scan(&n)
	return n, wrap("devices", err)
}

// likePattern is a LIKE pattern for "contains q", with q's wildcards escaped.
func likePattern(q string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(q) + "%"
}

// Users lists users whose id contains q.
func (s *Store) Users(ctx context.Context, sch *schema.Schema, q string, limit int) ([]admin.UserSummary, error) {
	limit = max(limit, 1)
	pat := likePattern(q)
	rows, err := s.pool.Query(ctx, `SELECT user_id, count(*), max(last_seen), sum(pulls)::bigint, sum(pushes)::bigint, max(conflicts_in_row),
		count(*) FILTER (WHERE revoked_at > 0) FROM __melon_devices WHERE user_id LIKE $1 GROUP BY user_id ORDER BY max(last_seen) DESC, user_id LIMIT $2`, pat, limit)
	if err != nil {
		return nil, wrap("users", err)
	}
	out := []admin.UserSummary{}
	seen := map[string]bool{}
	for rows.Next() {
		var u admin.UserSummary
		var n, rev int64
		var cir int32
		if err := rows.Scan(&u.User, &n, &u.LastSeen, &u.Pulls, &u.Pushes, &cir, &rev); err != nil {
			rows.Close()
			return nil, wrap("users", err)
		}
		u.Devices, u.ConflictsInRow, u.Revoked = int(n), int(cir), int(rev)
		seen[u.User] = true
		out = append(out, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrap("users", err)
	}
	if sch == nil || len(out) >= limit {
		return out, nil
	}
	var owners []string
	for _, t := range sch.Tables {
		rows, err := s.pool.Query(ctx, `SELECT DISTINCT __owner FROM `+quoteIdent(t.Name)+` WHERE __owner LIKE $1 ORDER BY __owner LIMIT $2`, pat, limit)
		if err != nil {
			return nil, wrap("users", err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, wrap("users", err)
		}
		for _, o := range got {
			if !seen[o] {
				seen[o] = true
				owners = append(owners, o)
			}
		}
	}
	return admin.AppendOwners(out, owners, limit), nil
}

// UserCount counts users seen syncing or owning records.
func (s *Store) UserCount(ctx context.Context, sch *schema.Schema) (int64, error) {
	parts := []string{`SELECT user_id FROM __melon_devices`}
	if sch != nil {
		for _, t := range sch.Tables {
			parts = append(parts, `SELECT __owner FROM `+quoteIdent(t.Name))
		}
	}
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM (`+strings.Join(parts, " UNION ")+`) u`).Scan(&n)
	return n, wrap("user count", err)
}

// DeviceState reads the operator's flags of (user, device), kept for a moment
// (devicecache.go).
func (s *Store) DeviceState(ctx context.Context, user, device string) (admin.State, error) {
	st, ok, gen := s.devices.get(user, device)
	if ok {
		return st, nil
	}
	at := time.Now()
	st, err := s.deviceState(ctx, user, device)
	if err == nil {
		s.devices.put(user, device, st, at, gen)
	}
	return st, err
}

func (s *Store) deviceState(ctx context.Context, user, device string) (admin.State, error) {
	var revoked, requested, replaced, all int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(d.revoked_at, 0), coalesce(d.replace_requested, 0), coalesce(d.replaced_at, 0),
		coalesce((SELECT replace_requested FROM __melon_admin_users WHERE user_id = $1), 0)
		FROM (SELECT 1) one LEFT JOIN __melon_devices d ON d.user_id = $1 AND d.device = $2`, user, device).
		Scan(&revoked, &requested, &replaced, &all)
	if err != nil {
		return admin.State{}, wrap("device state", err)
	}
	return admin.State{Revoked: revoked > 0, Replace: max(requested, all) > replaced}, nil
}

// RequestReplacement flags the device (or every device of user) for a replacement.
func (s *Store) RequestReplacement(ctx context.Context, user, device string, allDevices bool, at int64) error {
	defer s.devices.clear()
	var err error
	if allDevices {
		_, err = s.pool.Exec(ctx, `INSERT INTO __melon_admin_users (user_id, replace_requested) VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET replace_requested = excluded.replace_requested`, user, at)
	} else {
		_, err = s.pool.Exec(ctx, `INSERT INTO __melon_devices (user_id, device, replace_requested) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, device) DO UPDATE SET replace_requested = excluded.replace_requested`, user, device, at)
	}
	return wrap("request replacement", err)
}

// MarkReplaced records a replacement served at at.
func (s *Store) MarkReplaced(ctx context.Context, user, device string, at int64) error {
	defer s.devices.clear()
	_, err := s.pool.Exec(ctx, `INSERT INTO __melon_devices AS d (user_id, device, replaced_at) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device) DO UPDATE SET replaced_at = greatest(d.replaced_at, excluded.replaced_at)`, user, device, at)
	return wrap("mark replaced", err)
}

// SetRevoked revokes (at > 0) or restores (at = 0) a device.
func (s *Store) SetRevoked(ctx context.Context, user, device string, at int64) error {
	defer s.devices.clear()
	_, err := s.pool.Exec(ctx, `INSERT INTO __melon_devices (user_id, device, revoked_at) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device) DO UPDATE SET revoked_at = excluded.revoked_at`, user, device, at)
	return wrap("revoke", err)
}

// TableCounts counts live rows and tombstones per table.
func (s *Store) TableCounts(ctx context.Context, sch *schema.Schema, user string) ([]admin.TableCount, error) {
	out := []admin.TableCount{}
	for _, t := range sch.Tables {
		c := admin.TableCount{Table: t.Name}
		live := `SELECT count(*) FROM ` + quoteIdent(t.Name)
		dead := `SELECT count(*) FROM __melon_tombstones WHERE tbl = $1`
		args := []any{t.Name}
		if user != "" {
			live += ` WHERE __owner = $2`
			dead += ` AND owner = $2`
			args = append(args, user)
		}
		err := s.pool.QueryRow(ctx, `SELECT (`+live+`), (`+dead+`)`, args...).Scan(&c.Live, &c.Deleted)
		if err != nil {
			return nil, wrap("count "+t.Name, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Records returns rows of t matching q: live rows, then (with q.Deleted) tombstones,
// most recently changed first.
func (s *Store) Records(ctx context.Context, t *schema.Table, q admin.RecordQuery) ([]admin.Record, error) {
	limit := max(q.Limit, 1)
	var b strings.Builder
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	b.WriteString(`SELECT id, __owner, __version, __created_version, __device`)
	for _, c := range t.Columns {
		b.WriteString(`, ` + quoteIdent(c.Name) + `::` + sqlType(c.Type))
	}
	b.WriteString(` FROM ` + quoteIdent(t.Name) + ` WHERE true`)
	if q.ID != "" {
		b.WriteString(` AND id = ` + arg(q.ID))
	}
	if q.Owner != "" {
		b.WriteString(` AND __owner = ` + arg(q.Owner))
	}
	if q.Column != "" {
		c := t.Column(q.Column)
		if c == nil {
			return nil, fmt.Errorf("postgres: records: no column %s.%s", t.Name, q.Column)
		}
		b.WriteString(` AND ` + quoteIdent(c.Name) + `::text = ` + arg(q.Value))
	}
	b.WriteString(` ORDER BY __version DESC, id LIMIT ` + arg(limit))
	rows, err := s.pool.Query(ctx, b.String(), args...)
	if err != nil {
		return nil, wrap("records "+t.Name, err)
	}
	out := []admin.Record{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			rows.Close()
			return nil, wrap("records "+t.Name, err)
		}
		r := admin.Record{Values: map[string]any{}}
		r.ID, _ = vals[0].(string)
		r.Owner, _ = vals[1].(string)
		r.Version, _ = vals[2].(int64)
		r.CreatedVersion, _ = vals[3].(int64)
		r.Device, _ = vals[4].(string)
		for i, c := range t.Columns {
			r.Values[c.Name] = vals[5+i]
		}
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrap("records "+t.Name, err)
	}
	if !q.Deleted || q.Column != "" {
		return out, nil
	}
	args = args[:0]
	tq := `SELECT id, owner, version, created_version, device FROM __melon_tombstones WHERE tbl = ` + arg(t.Name)
	if q.ID != "" {
		tq += ` AND id = ` + arg(q.ID)
	}
	if q.Owner != "" {
		tq += ` AND owner = ` + arg(q.Owner)
	}
	tq += ` ORDER BY version DESC, id LIMIT ` + arg(limit)
	rows, err = s.pool.Query(ctx, tq, args...)
	if err != nil {
		return nil, wrap("records "+t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		r := admin.Record{Deleted: true, Values: map[string]any{}}
		if err := rows.Scan(&r.ID, &r.Owner, &r.Version, &r.CreatedVersion, &r.Device); err != nil {
			return nil, wrap("records "+t.Name, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("records "+t.Name, err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Version > out[j].Version })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// jsonText encodes v for a jsonb column ("{}" for nil maps).
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil || string(b) == "null" {
		return "{}"
	}
	return string(b)
}

// Distinct counts the live rows per value of column.
func (s *Store) Distinct(ctx context.Context, t *schema.Table, column string, limit int) ([]admin.ValueCount, error) {
	if column != "id" && t.Column(column) == nil {
		return nil, fmt.Errorf("postgres: distinct: no column %s.%s", t.Name, column)
	}
	c := quoteIdent(column)
	rows, err := s.pool.Query(ctx, `SELECT `+c+`::text AS v, count(*) FROM `+quoteIdent(t.Name)+
		` WHERE `+c+` IS NOT NULL GROUP BY v ORDER BY count(*) DESC, v LIMIT $1`, max(limit, 1))
	if err != nil {
		return nil, wrap("distinct "+t.Name, err)
	}
	defer rows.Close()
	out := []admin.ValueCount{}
	for rows.Next() {
		var v admin.ValueCount
		if err := rows.Scan(&v.Value, &v.Rows); err != nil {
			return nil, wrap("distinct "+t.Name, err)
		}
		out = append(out, v)
	}
	return out, wrap("distinct "+t.Name, rows.Err())
}
