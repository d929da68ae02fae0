package http

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/admin"
	"github.com/melonsync/melonsync/schema"
)

// AdminOptions configures the admin API (/admin/api/…) and the dashboard (/admin/).
type AdminOptions struct {
	// Token is the admin credential (sent as "Authorization: Bearer TOKEN"). The
	// admin routes answer 404 while it is empty.
	Token string
	// Store answers the admin queries and keeps the operator's actions.
	Store admin.Store
	// Log is the sync log writer, for its figures (optional).
	Log *admin.Log
	// Dev allows minting user tokens (POST /admin/api/tokens).
	Dev bool
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// NoDevice stands for "requests without X-Melon-Device" in admin paths; no device id
// can be "~".
const NoDevice = "~"

const (
	adminDefaultLimit = 50
	adminMaxLimit     = 500
)

// adminHandler serves /admin/: the dashboard's files and, behind the admin token,
// the API.
func (h *Handler) adminHandler() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern, method string, fn http.HandlerFunc) {
		mux.HandleFunc(pattern, h.only(method, fn))
	}
	api("/admin/api/overview", "GET", h.adminOverview)
	api("/admin/api/users", "GET", h.adminUsers)
	api("/admin/api/users/{user}", "GET", h.adminUser)
	api("/admin/api/users/{user}/replace", "POST", h.adminReplaceUser)
	api("/admin/api/users/{user}/devices/{device}/replace", "POST", h.adminReplaceDevice)
	api("/admin/api/users/{user}/devices/{device}/revoke", "POST", h.adminRevoke(true))
	api("/admin/api/users/{user}/devices/{device}/restore", "POST", h.adminRevoke(false))
	api("/admin/api/log", "GET", h.adminLog)
	api("/admin/api/tables/{table}/records", "GET", h.adminRecords)
	api("/admin/api/tokens", "POST", h.adminMint)
	api("/admin/api/groups", "GET", h.adminGroups)
	mux.HandleFunc("/admin/api/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, melonsync.Errorf(melonsync.ENotFound, "no admin route for %s %s", r.Method, r.URL.Path))
	})
	mux.Handle("/admin/", dashboardHandler())
	var want [32]byte
	if a := h.opts.Admin; a != nil {
		want = sha256.Sum256([]byte(a.Token))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := h.opts.Admin
		if a == nil || a.Token == "" || a.Store == nil {
			h.fail(w, r, melonsync.Errorf(melonsync.ENotFound, "the admin dashboard is off; start the server with --admin-token (or MELONSYNC_ADMIN_TOKEN) to turn it on"))
			return
		}
		if strings.HasPrefix(r.URL.Path, "/admin/api/") {
			w.Header().Set("Cache-Control", "no-store")
			if err := checkAdminToken(r.Header.Get("Authorization"), want); err != nil {
				h.fail(w, r, err)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// checkAdminToken compares the bearer token with the admin token in constant time
// (hashes of both, so that not even the length leaks). A user's JWT never matches.
func checkAdminToken(header string, want [32]byte) error {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if header == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return melonsync.Errorf(melonsync.EUnauthorized, "the admin API needs the admin token (Authorization: Bearer <admin token>)")
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return melonsync.Errorf(melonsync.EUnauthorized, "the admin token is not accepted")
	}
	return nil
}

func (h *Handler) adminNow() time.Time {
	if a := h.opts.Admin; a != nil && a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// overview is the answer of GET /admin/api/overview.
type overview struct {
	Schema     schemaView         `json:"schema"`
	Records    []admin.TableCount `json:"records"`
	Users      int64              `json:"users"`
	Devices24h int64              `json:"devices24h"`
	LastHour   admin.Bucket       `json:"lastHour"`
	Series     []admin.Bucket     `json:"series"`
	SyncLog    syncLogView        `json:"syncLog"`
	Dev        bool               `json:"dev"`
	Now        int64              `json:"now"`
	// Access says whether the schema has access rules (the groups page).
	Access bool `json:"access"`
}

type schemaView struct {
	Version int         `json:"version"`
	Tables  []tableView `json:"tables"`
}

type tableView struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	// Rule is "owner", "group" or "public"; Group the kind of group of a group table.
	Rule  string `json:"rule"`
	Group string `json:"group,omitempty"`
}

func ruleName(t *schema.Table) string {
	switch t.Rule.Kind {
	case schema.GroupRule:
		return "group"
	case schema.Public:
		return "public"
	}
	return "owner"
}

type syncLogView struct {
	On         bool  `json:"on"`
	Entries    int64 `json:"entries"`
	MaxEntries int   `json:"maxEntries"`
	MaxAgeMS   int64 `json:"maxAgeMs"`
	Pending    int   `json:"pending"`
	Dropped    int64 `json:"dropped"`
}

func describeSchema(s *schema.Schema) schemaView {
	v := schemaView{Version: s.Version, Tables: []tableView{}}
	for _, t := range s.Tables {
		tv := tableView{Name: t.Name, Columns: []string{}, Rule: ruleName(t)}
		if t.Rule.Kind == schema.GroupRule && t.Rule.Group != nil {
			tv.Group = t.Rule.Group.Name
		}
		for _, c := range t.Columns {
			tv.Columns = append(tv.Columns, c.Name)
		}
		v.Tables = append(v.Tables, tv)
	}
	return v
}

func (h *Handler) adminOverview(w http.ResponseWriter, r *http.Request) {
	a, ctx, sch := h.opts.Admin, r.Context(), h.svc.Schema()
	now := h.adminNow()
	var out overview
	var err error
	out.Schema, out.Dev, out.Now = describeSchema(sch), a.Dev, now.UnixMilli()
	out.Access = sch.Access != nil && len(sch.Access.Groups) > 0
	if out.Records, err = a.Store.TableCounts(ctx, sch, ""); err != nil {
		h.fail(w, r, err)
		return
	}
	if out.Users, err = a.Store.UserCount(ctx, sch); err != nil {
		h.fail(w, r, err)
		return
	}
	if out.Devices24h, err = a.Store.DevicesSeen(ctx, now.Add(-24*time.Hour).UnixMilli()); err != nil {
		h.fail(w, r, err)
		return
	}
	out.Series, err = h.lastHour(r, now)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	for _, b := range out.Series {
		out.LastHour.Pulls += b.Pulls
		out.LastHour.Pushes += b.Pushes
		out.LastHour.Conflicts += b.Conflicts
		out.LastHour.Rejected += b.Rejected
		out.LastHour.Errors += b.Errors
	}
	if len(out.Series) > 0 {
		out.LastHour.Start = out.Series[0].Start
	}
	if out.SyncLog.Entries, err = a.Store.LogCount(ctx); err != nil {
		h.fail(w, r, err)
		return
	}
	if l := a.Log; l != nil {
		o := l.Options()
		out.SyncLog.On, out.SyncLog.MaxEntries, out.SyncLog.Pending, out.SyncLog.Dropped = true, o.MaxEntries, l.Pending(), l.Dropped()
		if o.MaxAge > 0 {
			out.SyncLog.MaxAgeMS = o.MaxAge.Milliseconds()
		}
	}
	writeJSON(w, r, 200, out)
}

// lastHour returns 60 one-minute buckets ending with the current minute, zeros
// where nothing happened.
func (h *Handler) lastHour(r *http.Request, now time.Time) ([]admin.Bucket, error) {
	cur := now.UnixMilli() / 60_000 * 60_000
	first := cur - 59*60_000
	got, err := h.opts.Admin.Store.LogSeries(r.Context(), first)
	if err != nil {
		return nil, err
	}
	out := make([]admin.Bucket, 60)
	for i := range out {
		out[i].Start = first + int64(i)*60_000
	}
	for _, b := range got {
		if i := (b.Start - first) / 60_000; i >= 0 && i < 60 {
			out[i] = b
		}
	}
	return out, nil
}

// intParam reads a non-negative integer query parameter (def when absent).
func intParam(r *http.Request, name string, def, maxv int64) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, melonsync.Errorf(melonsync.EInvalid, "%s must be a non-negative integer", name)
	}
	if maxv > 0 && n > maxv {
		return 0, melonsync.Errorf(melonsync.EInvalid, "%s must be at most %d", name, maxv)
	}
	return n, nil
}

func limitParam(r *http.Request) (int, error) {
	n, err := intParam(r, "limit", adminDefaultLimit, adminMaxLimit)
	if n == 0 {
		n = adminDefaultLimit
	}
	return int(n), err
}

func (h *Handler) adminUsers(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	users, err := h.opts.Admin.Store.Users(r.Context(), h.svc.Schema(), r.URL.Query().Get("q"), limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, r, 200, map[string]any{"users": users})
}

// deviceView is a device as the user page shows it.
type deviceView struct {
	admin.Device
	ReplacePending bool         `json:"replacePending"`
	Signs          []admin.Sign `json:"signs"`
}

func (h *Handler) adminUser(w http.ResponseWriter, r *http.Request) {
	a, ctx, user := h.opts.Admin, r.Context(), r.PathValue("user")
	devs, err := a.Store.Devices(ctx, user)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	counts, err := a.Store.TableCounts(ctx, h.svc.Schema(), user)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	limit, err := limitParam(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	log, err := a.Store.Log(ctx, admin.LogQuery{User: user, AnyDevice: true, Limit: limit})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	known := len(devs) > 0 || len(log) > 0
	for _, c := range counts {
		known = known || c.Live > 0 || c.Deleted > 0
	}
	if !known {
		h.fail(w, r, melonsync.Errorf(melonsync.ENotFound, "no user %q: no device of theirs synced and they own no records", user))
		return
	}
	now := h.adminNow()
	views := make([]deviceView, 0, len(devs))
	for _, d := range devs {
		signs := admin.Signs(d, h.svc.Schema().Version, now)
		if signs == nil {
			signs = []admin.Sign{}
		}
		views = append(views, deviceView{Device: d, ReplacePending: d.ReplaceRequested > d.ReplacedAt, Signs: signs})
	}
	writeJSON(w, r, 200, map[string]any{"user": user, "devices": views, "records": counts, "log": log})
}

// deviceParam reads {device}: NoDevice stands for requests without a device header.
func deviceParam(r *http.Request) (string, error) {
	d := r.PathValue("device")
	if d == NoDevice {
		return "", nil
	}
	if !melonsync.ValidID(d) {
		return "", melonsync.Errorf(melonsync.EInvalid, "device must match ^[A-Za-z0-9_.-]{1,64}$ (or be %q for requests without X-Melon-Device)", NoDevice)
	}
	return d, nil
}

func (h *Handler) adminReplaceUser(w http.ResponseWriter, r *http.Request) {
	user, at := r.PathValue("user"), h.adminNow().UnixMilli()
	if err := h.opts.Admin.Store.RequestReplacement(r.Context(), user, "", true, at); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, r, 200, map[string]any{"ok": true, "user": user, "requestedAt": at})
}

func (h *Handler) adminReplaceDevice(w http.ResponseWriter, r *http.Request) {
	user, at := r.PathValue("user"), h.adminNow().UnixMilli()
	device, err := deviceParam(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.opts.Admin.Store.RequestReplacement(r.Context(), user, device, false, at); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, r, 200, map[string]any{"ok": true, "user": user, "device": device, "requestedAt": at})
}

func (h *Handler) adminRevoke(revoke bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user := r.PathValue("user")
		device, err := deviceParam(r)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		at := int64(0)
		if revoke {
			at = h.adminNow().UnixMilli()
		}
		if err := h.opts.Admin.Store.SetRevoked(r.Context(), user, device, at); err != nil {
			h.fail(w, r, err)
			return
		}
		writeJSON(w, r, 200, map[string]any{"ok": true, "user": user, "device": device, "revoked": revoke, "revokedAt": at})
	}
}

func (h *Handler) adminLog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lq := admin.LogQuery{User: q.Get("user"), Kind: q.Get("kind"), AnyDevice: !q.Has("device")}
	if lq.Kind != "" && lq.Kind != admin.KindPull && lq.Kind != admin.KindPush {
		h.fail(w, r, melonsync.Errorf(melonsync.EInvalid, "kind must be pull or push"))
		return
	}
	if !lq.AnyDevice {
		if lq.User == "" {
			h.fail(w, r, melonsync.Errorf(melonsync.EInvalid, "device needs user"))
			return
		}
		if lq.Device = q.Get("device"); lq.Device == NoDevice {
			lq.Device = ""
		}
	}
	before, err := intParam(r, "before", 0, 0)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	lq.Before = before
	if lq.Limit, err = limitParam(r); err != nil {
		h.fail(w, r, err)
		return
	}
	entries, err := h.opts.Admin.Store.Log(r.Context(), lq)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := map[string]any{"entries": entries}
	if len(entries) == lq.Limit {
		out["next"] = entries[len(entries)-1].ID
	}
	writeJSON(w, r, 200, out)
}

func (h *Handler) adminRecords(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("table")
	t := h.svc.Schema().Table(name)
	if t == nil {
		h.fail(w, r, melonsync.Errorf(melonsync.ENotFound, "no table %q in the schema", name))
		return
	}
	q := r.URL.Query()
	rq := admin.RecordQuery{ID: q.Get("id"), Owner: q.Get("owner"), Column: q.Get("column"), Value: q.Get("value")}
	rq.Deleted, _ = strconv.ParseBool(q.Get("deleted"))
	if rq.Column != "" && t.Column(rq.Column) == nil {
		h.fail(w, r, melonsync.Errorf(melonsync.EInvalid, "table %s has no column %q", t.Name, rq.Column))
		return
	}
	if (rq.Column == "") != !q.Has("value") {
		h.fail(w, r, melonsync.Errorf(melonsync.EInvalid, "column and value go together"))
		return
	}
	if g := q.Get("group"); g != "" {
		if t.Rule.Kind != schema.GroupRule {
			h.fail(w, r, melonsync.Errorf(melonsync.EInvalid, "table %s has no groups under the access rules", t.Name))
			return
		}
		if t.Rule.By == "id" {
			rq.ID = g
		} else if rq.Column != "" {
			h.fail(w, r, melonsync.Errorf(melonsync.EInvalid, "group and column cannot be given together"))
			return
		} else {
			rq.Column, rq.Value = t.Rule.By, g
		}
	}
	var err error
	if rq.Limit, err = limitParam(r); err != nil {
		h.fail(w, r, err)
		return
	}
	recs, err := h.opts.Admin.Store.Records(r.Context(), t, rq)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	for i := range recs {
		recs[i].Group = groupOf(t, recs[i])
	}
	cols := []string{}
	for _, c := range t.Columns {
		cols = append(cols, c.Name)
	}
	writeJSON(w, r, 200, map[string]any{"table": t.Name, "columns": cols, "records": recs})
}

func (h *Handler) adminMint(w http.ResponseWriter, r *http.Request) {
	if !h.opts.Admin.Dev {
		h.fail(w, r, melonsync.Errorf(melonsync.EForbidden, "minting user tokens needs a server started with --dev"))
		return
	}
	var req struct {
		User string `json:"user"`
		TTL  string `json:"ttl"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		h.fail(w, r, melonsync.Errorf(melonsync.EInvalid, `the body must be {"user": "ID", "ttl": "24h"}`))
		return
	}
	ttl := 24 * time.Hour
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 || ttl > 366*24*time.Hour {
			h.fail(w, r, melonsync.Errorf(melonsync.EInvalid, "ttl must be a Go duration between 1s and 8784h, such as 24h"))
			return
		}
	}
	if req.User == "" || len(req.User) > 256 {
		h.fail(w, r, melonsync.Errorf(melonsync.EInvalid, "user must be 1 to 256 characters"))
		return
	}
	tok, err := h.opts.Auth.Mint(req.User, ttl)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, r, 200, map[string]any{"token": tok, "user": req.User, "expiresAt": h.adminNow().Add(ttl).UnixMilli()})
}

// groupOf returns a record's group id under the access rules ("" when none).
func groupOf(t *schema.Table, rec admin.Record) string {
	if t.Rule.Kind != schema.GroupRule {
		return ""
	}
	if t.Rule.By == "id" {
		return rec.ID
	}
	g, _ := rec.Values[t.Rule.By].(string)
	return g
}

// groupKindView is one kind of group of the access rules.
type groupKindView struct {
	Name        string             `json:"name"`
	Members     string             `json:"members"`
	GroupColumn string             `json:"groupColumn"`
	UserColumn  string             `json:"userColumn"`
	Tables      []groupTableView   `json:"tables"`
	Groups      []admin.ValueCount `json:"groups"`
}

type groupTableView struct {
	Table    string `json:"table"`
	By       string `json:"by"`
	ReadOnly bool   `json:"readOnly"`
}

// adminGroups serves GET /admin/api/groups (every kind with its groups, biggest
// first) and GET /admin/api/groups?kind=K&id=G (one group: members and rows).
func (h *Handler) adminGroups(w http.ResponseWriter, r *http.Request) {
	sch := h.svc.Schema()
	acc := sch.Access
	if acc == nil || len(acc.Groups) == 0 {
		if r.URL.Query().Get("kind") != "" {
			h.fail(w, r, melonsync.Errorf(melonsync.ENotFound, "the schema has no access rules, so no groups"))
			return
		}
		writeJSON(w, r, 200, map[string]any{"kinds": []groupKindView{}})
		return
	}
	if kind := r.URL.Query().Get("kind"); kind != "" {
		h.adminGroup(w, r, kind, r.URL.Query().Get("id"))
		return
	}
	limit, err := limitParam(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	kinds := []groupKindView{}
	for _, name := range acc.GroupNames() {
		g := acc.Groups[name]
		v := groupKindView{Name: name, Members: g.Members.Name, GroupColumn: g.GroupCol, UserColumn: g.UserCol, Tables: []groupTableView{}}
		for _, t := range sch.Tables {
			if t.Rule.Kind == schema.GroupRule && t.Rule.Group == g {
				v.Tables = append(v.Tables, groupTableView{t.Name, t.Rule.By, t.Rule.ReadOnly})
			}
		}
		if v.Groups, err = h.opts.Admin.Store.Distinct(r.Context(), g.Members, g.GroupCol, limit); err != nil {
			h.fail(w, r, err)
			return
		}
		kinds = append(kinds, v)
	}
	writeJSON(w, r, 200, map[string]any{"kinds": kinds})
}

// groupRowsShown bounds the rows counted per table on a group's page.
const groupRowsShown = 1000

func (h *Handler) adminGroup(w http.ResponseWriter, r *http.Request, kind, id string) {
	sch, st, ctx := h.svc.Schema(), h.opts.Admin.Store, r.Context()
	g := sch.Access.Groups[kind]
	if g == nil {
		h.fail(w, r, melonsync.Errorf(melonsync.ENotFound, "no kind of group %q in the access rules", kind))
		return
	}
	if id == "" {
		h.fail(w, r, melonsync.Errorf(melonsync.EInvalid, "id (the group's id) is required with kind"))
		return
	}
	rows, err := st.Records(ctx, g.Members, admin.RecordQuery{Column: g.GroupCol, Value: id, Limit: adminMaxLimit})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	type member struct {
		User    string `json:"user"`
		ID      string `json:"id"`
		Version int64  `json:"version"`
	}
	members := []member{}
	for _, m := range rows {
		u, _ := m.Values[g.UserCol].(string)
		members = append(members, member{u, m.ID, m.Version})
	}
	type tableRows struct {
		Table string `json:"table"`
		Rows  int    `json:"rows"`
		More  bool   `json:"more"`
	}
	tables := []tableRows{}
	for _, t := range sch.Tables {
		if t.Rule.Kind != schema.GroupRule || t.Rule.Group != g {
			continue
		}
		q := admin.RecordQuery{Column: t.Rule.By, Value: id, Limit: groupRowsShown + 1}
		if t.Rule.By == "id" {
			q = admin.RecordQuery{ID: id, Limit: 1}
		}
		recs, err := st.Records(ctx, t, q)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		tables = append(tables, tableRows{t.Name, min(len(recs), groupRowsShown), len(recs) > groupRowsShown})
	}
	writeJSON(w, r, 200, map[string]any{"kind": kind, "group": id, "members": members, "tables": tables})
}
