package http

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/admin"
	"github.com/melonsync/melonsync/server"
)

// DeviceGate keeps the operator's flags of devices: revoked devices are refused, and
// a device flagged for a replacement gets one on its next pull. admin.Store is one.
type DeviceGate interface {
	DeviceState(ctx context.Context, user, device string) (admin.State, error)
	MarkReplaced(ctx context.Context, user, device string, at int64) error
}

// syncRequest is what a pull or push request gathers on its way, for the sync log
// and the device gate. It rides in the request's context.
type syncRequest struct {
	entry   admin.Entry
	start   time.Time
	replace bool // the device's flags asked for a replacement answer
}

type syncRequestKey struct{}

// syncKind says whether r is a pull or a push ("" for other routes).
func syncKind(r *http.Request) string {
	switch r.URL.Path {
	case "/api/sync/pull":
		return admin.KindPull
	case "/api/sync/push":
		return admin.KindPush
	case "/sync":
		switch r.Method {
		case "GET":
			return admin.KindPull
		case "POST":
			return admin.KindPush
		}
	}
	return ""
}

// withSyncRequest attaches a syncRequest to a pull or push request.
func withSyncRequest(r *http.Request, start time.Time) (*http.Request, *syncRequest) {
	kind := syncKind(r)
	if kind == "" {
		return r, nil
	}
	sr := &syncRequest{start: start, entry: admin.Entry{At: start.UnixMilli(), Kind: kind, Route: r.Method + " " + r.URL.Path}}
	return r.WithContext(context.WithValue(r.Context(), syncRequestKey{}, sr)), sr
}

func syncRequestOf(r *http.Request) *syncRequest {
	sr, _ := r.Context().Value(syncRequestKey{}).(*syncRequest)
	return sr
}

// gate applies the device's flags to an authenticated request: a revoked device is
// refused with device_revoked (401); a pending replacement is noted for the pull.
func (h *Handler) gate(r *http.Request, c server.Caller) error {
	if sr := syncRequestOf(r); sr != nil {
		sr.entry.User, sr.entry.Device = c.User, c.Device
	}
	if h.opts.Devices == nil {
		return nil
	}
	st, err := h.opts.Devices.DeviceState(r.Context(), c.User, c.Device)
	if err != nil {
		return err
	}
	if st.Revoked {
		return &melonsync.Error{Code: melonsync.EDeviceRevoked,
			Message: "this device was revoked by the server's operator; sign in again on a device that is allowed to sync",
			Details: map[string]any{"device": c.Device}}
	}
	if sr := syncRequestOf(r); sr != nil {
		sr.replace = st.Replace
	}
	return nil
}

// pullStarted notes a pull's parameters and applies a pending replacement.
func (h *Handler) pullStarted(r *http.Request, p *server.PullParams) {
	sr := syncRequestOf(r)
	if sr == nil {
		return
	}
	e := &sr.entry
	e.LastPulledAt, e.SchemaVersion = p.LastPulledAt, p.SchemaVersion
	if e.SchemaVersion <= 0 || e.SchemaVersion > h.svc.Schema().Version {
		e.SchemaVersion = h.svc.Schema().Version
	}
	if p.Migration != nil {
		e.Strategy = "migration"
	}
	if sr.replace {
		p.Replacement = true
	}
	p.Stats = &server.PullStats{}
}

// pullDone notes what a successful pull answered, and that a forced replacement was
// served.
func (h *Handler) pullDone(r *http.Request, c server.Caller, p *server.PullParams) {
	sr := syncRequestOf(r)
	if sr == nil || p.Stats == nil {
		return
	}
	e := &sr.entry
	e.Timestamp = p.Stats.Timestamp
	if p.Stats.Strategy != "" {
		e.Strategy = p.Stats.Strategy
	}
	e.Tables = tableCounts(p.Stats.Tables)
	if sr.replace && h.opts.Devices != nil {
		ctx := context.WithoutCancel(r.Context())
		if err := h.opts.Devices.MarkReplaced(ctx, c.User, c.Device, e.At); err != nil {
			h.log.Warn("could not record a served replacement; the next pull is one again", "user", c.User, "device", c.Device, "err", err.Error())
		}
	}
}

// pushDone notes a push's parameters and outcome.
func (h *Handler) pushDone(r *http.Request, p *server.PushParams, resp *melonsync.PushResponse, err error) {
	sr := syncRequestOf(r)
	if sr == nil {
		return
	}
	e := &sr.entry
	e.LastPulledAt = p.LastPulledAt
	e.Tables = map[string]admin.Counts{}
	for _, tp := range p.Tables {
		if n := len(tp.Created) + len(tp.Updated) + len(tp.Deleted); n > 0 {
			e.Tables[tp.Table.Name] = admin.Counts{Created: len(tp.Created), Updated: len(tp.Updated), Deleted: len(tp.Deleted)}
		}
	}
	if resp != nil {
		e.Timestamp = resp.Timestamp
		e.Rejected, e.NRejected = resp.RejectedIDs, countIDs(resp.RejectedIDs)
	}
	var me *melonsync.Error
	if errors.As(err, &me) && me.Code == melonsync.EConflict {
		if ids, ok := me.Details["conflicts"].(map[string][]string); ok {
			e.Conflicts, e.NConflicts = ids, countIDs(ids)
		}
	}
}

// failed notes the error code a sync request was answered with.
func failed(r *http.Request, code string) {
	if sr := syncRequestOf(r); sr != nil {
		sr.entry.Code = code
	}
}

// finish sends the request's entry to the sync log (only requests whose user is
// known: an unauthenticated request says nothing about any user).
func (h *Handler) finish(sr *syncRequest, status int, d time.Duration) {
	if sr == nil || h.opts.SyncLog == nil || sr.entry.User == "" {
		return
	}
	sr.entry.Status = status
	sr.entry.DurationMS = float64(d.Microseconds()) / 1000
	h.opts.SyncLog.Record(sr.entry)
}

func tableCounts(m map[string]server.TableCounts) map[string]admin.Counts {
	out := make(map[string]admin.Counts, len(m))
	for t, c := range m {
		out[t] = admin.Counts{Created: c.Created, Updated: c.Updated, Deleted: c.Deleted}
	}
	return out
}

func countIDs(m map[string][]string) int {
	n := 0
	for _, ids := range m {
		n += len(ids)
	}
	return n
}
