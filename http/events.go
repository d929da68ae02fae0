package http

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/server"
)

// heartbeat is how often an idle event stream sends a comment, so proxies keep it.
var heartbeat = 25 * time.Second

// closer ends long-lived responses (event streams) when the server shuts down.
type closer struct {
	once sync.Once
	ch   chan struct{}
}

// Close ends every event stream; call it when the server shuts down
// (http.Server.RegisterOnShutdown).
func (h *Handler) Close() {
	h.closing.once.Do(func() { close(h.closing.ch) })
}

// eventsTicket serves POST /api/sync/events/ticket: with the normal Authorization
// (and X-Melon-Device) headers it answers {"ticket": "…", "expiresAt": ms}, a
// short-lived ticket that opens GET /api/sync/events?ticket=… — what a browser's
// EventSource, which cannot send headers, uses instead of a token in the URL.
func (h *Handler) eventsTicket(w http.ResponseWriter, r *http.Request) {
	id, c, err := h.identify(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	t, exp, err := h.opts.Auth.MintTicket(id, c.Device)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, r, 200, map[string]any{"ticket": t, "expiresAt": exp.UnixMilli()})
}

// streamCaller authenticates an event-stream request: a ticket in the URL, else the
// Authorization header. It returns the caller and when the stream must end (the
// token's expiry).
func (h *Handler) streamCaller(r *http.Request) (server.Caller, time.Time, error) {
	q := r.URL.Query()
	if q.Has("access_token") {
		return server.Caller{}, time.Time{}, melonsync.Errorf(melonsync.EUnauthorized,
			"a token in the URL (access_token) is not accepted; send the Authorization header, or get a ticket from POST /api/sync/events/ticket and open /api/sync/events?ticket=…")
	}
	if q.Has("ticket") {
		id, device, err := h.opts.Auth.VerifyTicket(q.Get("ticket"))
		if err != nil {
			return server.Caller{}, time.Time{}, err
		}
		c := server.Caller{User: id.User, Device: device}
		return c, id.Expires, h.gate(r, c)
	}
	id, c, err := h.identify(r)
	return c, id.Expires, err
}

// events serves GET /api/sync/events: a Server-Sent Events stream that says when the
// caller's data changed, so that a client syncs at once instead of polling.
//
//	event: ready     data: {"timestamp": n}   (on connect: the current version)
//	event: changes   data: {"timestamp": n}   (after a commit that touched the user's data)
//	event: expired   data: {}                 (the token expired; the stream ends)
//
// Each version is sent once, newer than the last one sent; changes pushed by the
// caller's own device (X-Melon-Device, or the ticket's) are not sent. Authenticated
// with the Authorization header or ?ticket= (see eventsTicket).
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	c, end, err := h.streamCaller(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	leave, err := h.gates.streams.enter(r.Context(), c.User)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer leave()
	feed := h.svc.Feed()
	ch, cancel := feed.Subscribe(c.User, c.Device)
	defer cancel()
	clock, err := h.svc.Clock(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	feed.Skip(c.User, ch, clock) // "ready" covers everything up to clock
	h.opts.Metrics.streams(1)
	defer h.opts.Metrics.streams(-1)
	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(200)
	send := func(format string, args ...any) bool {
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send("retry: 3000\nevent: ready\ndata: {\"timestamp\":%d}\n\n", clock) {
		return
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	expired := time.NewTimer(max(time.Until(end), time.Second))
	defer expired.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.closing.ch:
			return
		case <-expired.C:
			send("event: expired\ndata: {}\n\n")
			return
		case v := <-ch:
			if !send("event: changes\ndata: {\"timestamp\":%d}\n\n", v) {
				return
			}
		case <-tick.C:
			if !send(": ping\n\n") {
				return
			}
		}
	}
}
