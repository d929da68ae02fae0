package http

import (
	"fmt"
	"net/http"
	"sync"
	"time"
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

// events serves GET /api/sync/events: a Server-Sent Events stream that says when the
// caller's data changed, so that a client syncs at once instead of polling.
//
//	event: ready     data: {"timestamp": n}   (on connect: the current version)
//	event: changes   data: {"timestamp": n}   (after a commit that touched the user's data)
//
// Browsers' EventSource cannot send headers, so the token may also come as the
// access_token query parameter.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") == "" {
		if tok := r.URL.Query().Get("access_token"); tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	c, err := h.caller(r)
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
	ch, cancel := h.svc.Feed().Subscribe(c.User)
	defer cancel()
	clock, err := h.svc.Clock(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
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
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.closing.ch:
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
