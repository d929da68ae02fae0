package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/melonsync/melonsync/admin"
	"github.com/melonsync/melonsync/internal/sqlitedb"
	"github.com/melonsync/melonsync/schema"
)

var _ admin.Store = (*Store)(nil)

// adminTables are the sync log, the device summaries and the operator's per-user
// flags: bookkeeping of their own, never read or written by a pull or a push.
var adminTables = []string{
	`CREATE TABLE IF NOT EXISTS "__melon_sync_log" (
		"id" INTEGER PRIMARY KEY AUTOINCREMENT,
		"at" INTEGER NOT NULL,
		"user_id" TEXT NOT NULL,
		"device" TEXT NOT NULL,
		"kind" TEXT NOT NULL,
		"route" TEXT NOT NULL,
		"schema_version" INTEGER NOT NULL,
		"last_pulled_at" INTEGER NOT NULL,
		"timestamp" INTEGER NOT NULL,
		"tables" TEXT NOT NULL,
		"conflicts" TEXT NOT NULL,
		"rejected" TEXT NOT NULL,
		"n_records" INTEGER NOT NULL,
		"n_conflicts" INTEGER NOT NULL,
		"n_rejected" INTEGER NOT NULL,
		"strategy" TEXT NOT NULL,
		"status" INTEGER NOT NULL,
		"code" TEXT NOT NULL,
		"duration_ms" REAL NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS "__melon_sync_log_user" ON "__melon_sync_log" ("user_id", "device", "id")`,
	`CREATE INDEX IF NOT EXISTS "__melon_sync_log_at" ON "__melon_sync_log" ("at")`,
	`CREATE TABLE IF NOT EXISTS "__melon_devices" (
		"user_id" TEXT NOT NULL,
		"device" TEXT NOT NULL,
		"first_seen" INTEGER NOT NULL DEFAULT 0,
		"last_seen" INTEGER NOT NULL DEFAULT 0,
		"last_pull" INTEGER NOT NULL DEFAULT 0,
		"last_push" INTEGER NOT NULL DEFAULT 0,
		"last_pulled_at" INTEGER NOT NULL DEFAULT 0,
		"last_timestamp" INTEGER NOT NULL DEFAULT 0,
		"schema_version" INTEGER NOT NULL DEFAULT 0,
		"pulls" INTEGER NOT NULL DEFAULT 0,
		"pushes" INTEGER NOT NULL DEFAULT 0,
		"rejected" INTEGER NOT NULL DEFAULT 0,
		"conflicts_in_row" INTEGER NOT NULL DEFAULT 0,
		"last_status" INTEGER NOT NULL DEFAULT 0,
		"last_code" TEXT NOT NULL DEFAULT '',
		"replace_requested" INTEGER NOT NULL DEFAULT 0,
		"replaced_at" INTEGER NOT NULL DEFAULT 0,
		"revoked_at" INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY ("user_id", "device"))`,
	`CREATE INDEX IF NOT EXISTS "__melon_devices_seen" ON "__melon_devices" ("last_seen")`,
	`CREATE TABLE IF NOT EXISTS "__melon_admin_users" (
		"user_id" TEXT PRIMARY KEY NOT NULL,
		"replace_requested" INTEGER NOT NULL DEFAULT 0)`,
}

const logColumns = `"id", "at", "user_id", "device", "kind", "route", "schema_version", "last_pulled_at", "timestamp", "tables", "conflicts", "rejected", "n_conflicts", "n_rejected", "strategy", "status", "code", "duration_ms"`

const upsertDevice = `INSERT INTO "__melon_devices" AS d ("user_id", "device", "first_seen", "last_seen", "last_pull", "last_push",
	"last_pulled_at", "last_timestamp", "schema_version", "pulls", "pushes", "rejected", "conflicts_in_row", "last_status", "last_code")
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
ON CONFLICT ("user_id", "device") DO UPDATE SET
	"first_seen" = CASE WHEN d."first_seen" = 0 THEN excluded."first_seen" ELSE min(d."first_seen", excluded."first_seen") END,
	"last_seen" = max(d."last_seen", excluded."last_seen"),
	"last_pull" = max(d."last_pull", excluded."last_pull"),
	"last_push" = max(d."last_push", excluded."last_push"),
	"last_pulled_at" = CASE WHEN excluded."last_pull" > d."last_pull" THEN excluded."last_pulled_at" ELSE d."last_pulled_at" END,
	"last_timestamp" = CASE WHEN excluded."last_pull" > d."last_pull" THEN excluded."last_timestamp" ELSE d."last_timestamp" END,
	"schema_version" = CASE WHEN excluded."last_pull" > d."last_pull" THEN excluded."schema_version" ELSE d."schema_version" END,
	"pulls" = d."pulls" + excluded."pulls",
	"pushes" = d."pushes" + excluded."pushes",
	"rejected" = d."rejected" + excluded."rejected",
	"conflicts_in_row" = CASE WHEN ?16 THEN excluded."conflicts_in_row" ELSE d."conflicts_in_row" + excluded."conflicts_in_row" END,
	"last_status" = CASE WHEN excluded."last_seen" >= d."last_seen" THEN excluded."last_status" ELSE d."last_status" END,
	"last_code" = CASE WHEN excluded."last_seen" >= d."last_seen" THEN excluded."last_code" ELSE d."last_code" END`

// AppendLog writes entries and device activity in one transaction.
func (s *Store) AppendLog(ctx context.Context, entries []admin.Entry, activity []admin.Activity, keep int) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: sync log: %w", err)
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, `INSERT INTO "__melon_sync_log" (`+strings.TrimPrefix(logColumns, `"id", `)+`, "n_records") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("sqlite: sync log: %w", err)
	}
	defer ins.Close()
	for i := range entries {
		e := &entries[i]
		_, err := ins.ExecContext(ctx, e.At, e.User, e.Device, e.Kind, e.Route, e.SchemaVersion, e.LastPulledAt, e.Timestamp,
			jsonText(e.Tables), jsonText(e.Conflicts), jsonText(e.Rejected), e.NConflicts, e.NRejected, e.Strategy, e.Status, e.Code, e.DurationMS, e.Records())
		if err != nil {
			return fmt.Errorf("sqlite: sync log: %w", err)
		}
	}
	up, err := tx.PrepareContext(ctx, upsertDevice)
	if err != nil {
		return fmt.Errorf("sqlite: devices: %w", err)
	}
	defer up.Close()
	for _, a := range activity {
		_, err := up.ExecContext(ctx, a.User, a.Device, a.First, a.Last, a.LastPull, a.LastPush, a.LastPulledAt, a.LastTimestamp,
			a.SchemaVersion, a.Pulls, a.Pushes, a.Rejected, a.Conflicts, a.LastStatus, a.LastCode, a.ResetConflicts)
		if err != nil {
			return fmt.Errorf("sqlite: devices: %w", err)
		}
	}
	if keep > 0 {
		if _, err := tx.ExecContext(ctx, trimByCount, keep); err != nil {
			return fmt.Errorf("sqlite: trim sync log: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: sync log: %w", err)
	}
	return nil
}

// trimByCount keeps the newest entries: ids grow by one per entry (AUTOINCREMENT),
// so no count is needed; a gap only keeps fewer.
const trimByCount = `DELETE FROM "__melon_sync_log" WHERE "id" <= (SELECT max("id") FROM "__melon_sync_log") - ?`

// TrimLog keeps the newest keep entries and drops those older than before.
func (s *Store) TrimLog(ctx context.Context, keep int, before int64) (int64, error) {
	// Ids grow by one per entry (AUTOINCREMENT), so this is the count bound without
	// counting; a gap only keeps fewer.
	res, err := s.writer.ExecContext(ctx, `DELETE FROM "__melon_sync_log" WHERE "id" <= (SELECT max("id") FROM "__melon_sync_log") - ? OR "at" < ?`, keep, before)
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim sync log: %w", err)
	}
	return res.RowsAffected()
}

// Log returns entries matching q, newest first.
func (s *Store) Log(ctx context.Context, q admin.LogQuery) ([]admin.Entry, error) {
	var where []string
	var args []any
	if q.User != "" {
		where, args = append(where, `"user_id" = ?`), append(args, q.User)
		if !q.AnyDevice {
			where, args = append(where, `"device" = ?`), append(args, q.Device)
		}
	}
	if q.Kind != "" {
		where, args = append(where, `"kind" = ?`), append(args, q.Kind)
	}
	if q.Before > 0 {
		where, args = append(where, `"id" < ?`), append(args, q.Before)
	}
	query := `SELECT ` + logColumns + ` FROM "__melon_sync_log"`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY "id" DESC LIMIT ?`
	args = append(args, max(q.Limit, 1))
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: sync log: %w", err)
	}
	defer rows.Close()
	out := []admin.Entry{}
	for rows.Next() {
		var e admin.Entry
		var tables, conflicts, rejected string
		if err := rows.Scan(&e.ID, &e.At, &e.User, &e.Device, &e.Kind, &e.Route, &e.SchemaVersion, &e.LastPulledAt, &e.Timestamp,
			&tables, &conflicts, &rejected, &e.NConflicts, &e.NRejected, &e.Strategy, &e.Status, &e.Code, &e.DurationMS); err != nil {
			return nil, fmt.Errorf("sqlite: sync log: %w", err)
		}
		admin.DecodeEntryJSON(&e, tables, conflicts, rejected)
		out = append(out, e)
	}
	return out, rows.Err()
}

// LogCount counts the entries.
func (s *Store) LogCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.reader.QueryRowContext(ctx, `SELECT count(*) FROM "__melon_sync_log"`).Scan(&n)
	return n, err
}

// LogSeries returns per-minute activity since since.
func (s *Store) LogSeries(ctx context.Context, since int64) ([]admin.Bucket, error) {
	rows, err := s.reader.QueryContext(ctx, `SELECT ("at" / 60000) * 60000 AS "m",
		sum("kind" = 'pull'), sum("kind" = 'push'), sum("status" = 409), sum("n_rejected"), sum("status" >= 400 AND "status" <> 409)
		FROM "__melon_sync_log" WHERE "at" >= ? GROUP BY "m" ORDER BY "m"`, since)
	if err != nil {
		return nil, fmt.Errorf("sqlite: sync log series: %w", err)
	}
	defer rows.Close()
	out := []admin.Bucket{}
	for rows.Next() {
		var b admin.Bucket
		if err := rows.Scan(&b.Start, &b.Pulls, &b.Pushes, &b.Conflicts, &b.Rejected, &b.Errors); err != nil {
			return nil, fmt.Errorf("sqlite: sync log series: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

const deviceColumns = `"user_id", "device", "first_seen", "last_seen", "last_pull", "last_push", "last_pulled_at", "last_timestamp",
	"schema_version", "pulls", "pushes", "rejected", "conflicts_in_row", "last_status", "last_code", "replace_requested", "replaced_at", "revoked_at"`

// Devices returns the devices of user.
func (s *Store) Devices(ctx context.Context, user string) ([]admin.Device, error) {
	rows, err := s.reader.QueryContext(ctx, `SELECT `+deviceColumns+` FROM "__melon_devices" WHERE "user_id" = ? ORDER BY "last_seen" DESC, "device"`, user)
	if err != nil {
		return nil, fmt.Errorf("sqlite: devices: %w", err)
	}
	defer rows.Close()
	out := []admin.Device{}
	for rows.Next() {
		var d admin.Device
		if err := rows.Scan(&d.User, &d.Device, &d.FirstSeen, &d.LastSeen, &d.LastPull, &d.LastPush, &d.LastPulledAt, &d.LastTimestamp,
			&d.SchemaVersion, &d.Pulls, &d.Pushes, &d.Rejected, &d.ConflictsInRow, &d.LastStatus, &d.LastCode, &d.ReplaceRequested, &d.ReplacedAt, &d.RevokedAt); err != nil {
			return nil, fmt.Errorf("sqlite: devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var all int64
	err = s.reader.QueryRowContext(ctx, `SELECT coalesce((SELECT "replace_requested" FROM "__melon_admin_users" WHERE "user_id" = ?), 0)`, user).Scan(&all)
	if err != nil {
		return nil, fmt.Errorf("sqlite: devices: %w", err)
	}
	for i := range out {
		out[i].ReplaceRequested = max(out[i].ReplaceRequested, all)
	}
	return out, nil
}

// DevicesSeen counts devices seen since since.
func (s *Store) DevicesSeen(ctx context.Context, since int64) (int64, error) {
	var n int64
	err := s.reader.QueryRowContext(ctx, `SELECT count(*) FROM "__melon_devices" WHERE "last_seen" >= ?`, since).Scan(&n)
	return n, err
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
	rows, err := s.reader.QueryContext(ctx, `SELECT "user_id", count(*), max("last_seen"), sum("pulls"), sum("pushes"), max("conflicts_in_row"),
		sum("revoked_at" > 0) FROM "__melon_devices" WHERE "user_id" LIKE ? ESCAPE '\' GROUP BY "user_id" ORDER BY max("last_seen") DESC, "user_id" LIMIT ?`, pat, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: users: %w", err)
	}
	out := []admin.UserSummary{}
	seen := map[string]bool{}
	for rows.Next() {
		var u admin.UserSummary
		if err := rows.Scan(&u.User, &u.Devices, &u.LastSeen, &u.Pulls, &u.Pushes, &u.ConflictsInRow, &u.Revoked); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: users: %w", err)
		}
		seen[u.User] = true
		out = append(out, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if sch == nil || len(out) >= limit {
		return out, nil
	}
	var owners []string
	for _, t := range sch.Tables {
		if err := func() error {
			rows, err := s.reader.QueryContext(ctx, `SELECT DISTINCT "__owner" FROM `+quote(t.Name)+` WHERE "__owner" LIKE ? ESCAPE '\' ORDER BY "__owner" LIMIT ?`, pat, limit)
			if err != nil {
				return fmt.Errorf("sqlite: users: %w", err)
			}
			defer rows.Close()
			for rows.Next() {
				var o string
				if err := rows.Scan(&o); err != nil {
					return err
				}
				if !seen[o] {
					seen[o] = true
					owners = append(owners, o)
				}
			}
			return rows.Err()
		}(); err != nil {
			return nil, err
		}
	}
	return admin.AppendOwners(out, owners, limit), nil
}

// UserCount counts users seen syncing or owning records.
func (s *Store) UserCount(ctx context.Context, sch *schema.Schema) (int64, error) {
	parts := []string{`SELECT "user_id" FROM "__melon_devices"`}
	if sch != nil {
		for _, t := range sch.Tables {
			parts = append(parts, `SELECT "__owner" FROM `+quote(t.Name))
		}
	}
	var n int64
	err := s.reader.QueryRowContext(ctx, `SELECT count(*) FROM (`+strings.Join(parts, " UNION ")+`)`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlite: user count: %w", err)
	}
	return n, nil
}

// DeviceState reads the operator's flags of (user, device).
func (s *Store) DeviceState(ctx context.Context, user, device string) (admin.State, error) {
	var revoked, requested, replaced, all int64
	err := s.reader.QueryRowContext(ctx, `SELECT
		coalesce((SELECT "revoked_at" FROM "__melon_devices" WHERE "user_id" = ?1 AND "device" = ?2), 0),
		coalesce((SELECT "replace_requested" FROM "__melon_devices" WHERE "user_id" = ?1 AND "device" = ?2), 0),
		coalesce((SELECT "replaced_at" FROM "__melon_devices" WHERE "user_id" = ?1 AND "device" = ?2), 0),
		coalesce((SELECT "replace_requested" FROM "__melon_admin_users" WHERE "user_id" = ?1), 0)`, user, device).
		Scan(&revoked, &requested, &replaced, &all)
	if err != nil {
		return admin.State{}, fmt.Errorf("sqlite: device state: %w", err)
	}
	return admin.State{Revoked: revoked > 0, Replace: max(requested, all) > replaced}, nil
}

// RequestReplacement flags the device (or every device of user) for a replacement.
func (s *Store) RequestReplacement(ctx context.Context, user, device string, allDevices bool, at int64) error {
	var err error
	if allDevices {
		_, err = s.writer.ExecContext(ctx, `INSERT INTO "__melon_admin_users" ("user_id", "replace_requested") VALUES (?, ?)
			ON CONFLICT ("user_id") DO UPDATE SET "replace_requested" = excluded."replace_requested"`, user, at)
	} else {
		_, err = s.writer.ExecContext(ctx, `INSERT INTO "__melon_devices" ("user_id", "device", "replace_requested") VALUES (?, ?, ?)
			ON CONFLICT ("user_id", "device") DO UPDATE SET "replace_requested" = excluded."replace_requested"`, user, device, at)
	}
	if err != nil {
		return fmt.Errorf("sqlite: request replacement: %w", err)
	}
	return nil
}

// MarkReplaced records a replacement served at at.
func (s *Store) MarkReplaced(ctx context.Context, user, device string, at int64) error {
	_, err := s.writer.ExecContext(ctx, `INSERT INTO "__melon_devices" AS d ("user_id", "device", "replaced_at") VALUES (?, ?, ?)
		ON CONFLICT ("user_id", "device") DO UPDATE SET "replaced_at" = max(d."replaced_at", excluded."replaced_at")`, user, device, at)
	if err != nil {
		return fmt.Errorf("sqlite: mark replaced: %w", err)
	}
	return nil
}

// SetRevoked revokes (at > 0) or restores (at = 0) a device.
func (s *Store) SetRevoked(ctx context.Context, user, device string, at int64) error {
	_, err := s.writer.ExecContext(ctx, `INSERT INTO "__melon_devices" ("user_id", "device", "revoked_at") VALUES (?, ?, ?)
		ON CONFLICT ("user_id", "device") DO UPDATE SET "revoked_at" = excluded."revoked_at"`, user, device, at)
	if err != nil {
		return fmt.Errorf("sqlite: revoke: %w", err)
	}
	return nil
}

// TableCounts counts live and deleted rows per table.
func (s *Store) TableCounts(ctx context.Context, sch *schema.Schema, user string) ([]admin.TableCount, error) {
	out := []admin.TableCount{}
	for _, t := range sch.Tables {
		c := admin.TableCount{Table: t.Name}
		q := `SELECT coalesce(sum("__deleted" = 0), 0), coalesce(sum("__deleted" = 1), 0) FROM ` + quote(t.Name)
		var args []any
		if user != "" {
			q += ` WHERE "__owner" = ?`
			args = append(args, user)
		}
		if err := s.reader.QueryRowContext(ctx, q, args...).Scan(&c.Live, &c.Deleted); err != nil {
			return nil, fmt.Errorf("sqlite: count %s: %w", t.Name, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Records returns rows of t matching q.
func (s *Store) Records(ctx context.Context, t *schema.Table, q admin.RecordQuery) ([]admin.Record, error) {
	var b strings.Builder
	b.WriteString(`SELECT "id", "__owner", "__version", "__created_version", "__device", "__deleted"`)
	for _, c := range t.Columns {
		b.WriteString(", " + quote(c.Name))
	}
	b.WriteString(` FROM ` + quote(t.Name) + ` WHERE 1 = 1`)
	var args []any
	if q.ID != "" {
		b.WriteString(` AND "id" = ?`)
		args = append(args, q.ID)
	}
	if q.Owner != "" {
		b.WriteString(` AND "__owner" = ?`)
		args = append(args, q.Owner)
	}
	if q.Column != "" {
		c := t.Column(q.Column)
		if c == nil {
			return nil, fmt.Errorf("sqlite: records: no column %s.%s", t.Name, q.Column)
		}
		b.WriteString(` AND CAST(` + quote(c.Name) + ` AS TEXT) = ?`)
		args = append(args, q.Value)
	}
	if !q.Deleted {
		b.WriteString(` AND "__deleted" = 0`)
	}
	b.WriteString(` ORDER BY "__version" DESC, "id" LIMIT ?`)
	args = append(args, max(q.Limit, 1))
	rows, err := s.reader.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: records %s: %w", t.Name, err)
	}
	defer rows.Close()
	raw := make([]any, 6+len(t.Columns))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	out := []admin.Record{}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("sqlite: records %s: %w", t.Name, err)
		}
		r := admin.Record{ID: sqlitedb.Text(raw[0]), Owner: sqlitedb.Text(raw[1]), Version: sqlitedb.Int(raw[2]), CreatedVersion: sqlitedb.Int(raw[3]),
			Device: sqlitedb.Text(raw[4]), Deleted: sqlitedb.Int(raw[5]) != 0, Values: map[string]any{}}
		if !r.Deleted {
			for i, c := range t.Columns {
				r.Values[c.Name] = sqlitedb.Value(c.Type, raw[6+i])
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// jsonText encodes v for a TEXT column ("{}" for nil maps).
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
		return nil, fmt.Errorf("sqlite: distinct: no column %s.%s", t.Name, column)
	}
	rows, err := s.reader.QueryContext(ctx, `SELECT CAST(`+quote(column)+` AS TEXT) AS "v", count(*) FROM `+quote(t.Name)+
		` WHERE "__deleted" = 0 AND `+quote(column)+` IS NOT NULL GROUP BY "v" ORDER BY count(*) DESC, "v" LIMIT ?`, max(limit, 1))
	if err != nil {
		return nil, fmt.Errorf("sqlite: distinct %s.%s: %w", t.Name, column, err)
	}
	defer rows.Close()
	out := []admin.ValueCount{}
	for rows.Next() {
		var v admin.ValueCount
		if err := rows.Scan(&v.Value, &v.Rows); err != nil {
			return nil, fmt.Errorf("sqlite: distinct %s.%s: %w", t.Name, column, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
