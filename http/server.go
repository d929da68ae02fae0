// Package http is the server's HTTP side: the sync protocol's handlers (routes, auth,
// error mapping, gzip, body limits, live updates, metrics). The Go client's side of
// the same protocol is package transport.
package http

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/admin"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
)

// DefaultMaxBodyBytes is the default limit of a request body (after decompression).
const DefaultMaxBodyBytes = 32 << 20

// Options configures a Handler.
type Options struct {
	// Auth verifies bearer tokens. Required.
	Auth *Auth
	// MaxBodyBytes limits request bodies, decompressed (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// Logger receives one line per request and internal errors (default: discard).
	Logger *slog.Logger
	// Metrics, when set, counts requests and records.
	Metrics *Metrics
	// CORSOrigins are the browser origins allowed to call the sync routes ("*": any);
	// empty turns CORS off. See ParseCORSOrigins.
	CORSOrigins []string
	// SyncLog, when set, receives one entry per pull and push.
	SyncLog *admin.Log
	// Devices, when set, refuses revoked devices and serves forced replacements.
	Devices DeviceGate
	// Admin, when set with a token, serves the admin API and dashboard under /admin/.
	Admin *AdminOptions
	// Limits bounds concurrent pulls, pushes, event streams and large bodies, per
	// user and in all (zero fields: DefaultLimits).
	Limits Limits
	// SpoolDir is where pull answers larger than SpoolMemory wait while they are
	// sent (default: the system's temporary directory).
	SpoolDir string
	// SpoolMemory is how many bytes of one pull answer are kept in memory before
	// the rest goes to a file in SpoolDir (default DefaultSpoolMemory).
	SpoolMemory int
	// SendStall is how long sending a pull answer may make no progress before the
	// connection is cut (default DefaultSendStall).
	SendStall time.Duration
	// StreamPulls streams pulls to the client from inside the store's read
	// transaction instead of spooling them first: the first byte comes sooner, but
	// a client that does not read holds a store connection until the server's write
	// timeout. For measurements and trusted networks only.
	StreamPulls bool
}

// Handler serves the sync protocol for one Service.
type Handler struct {
	svc  *server.Service
	opts Options
	mux  *http.ServeMux
	log  *slog.Logger

	closing closer
	gates   *gates
	storage storageHealth
}

// NewHandler returns the HTTP handler of svc: POST /api/sync/pull, POST
// /api/sync/push, GET and POST /sync, GET /api/sync/events (live updates), POST
// /api/sync/events/ticket (a ticket that opens the event stream) and GET /healthz.
func NewHandler(svc *server.Service, opts Options) *Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.SpoolMemory <= 0 {
		opts.SpoolMemory = DefaultSpoolMemory
	}
	if opts.SendStall <= 0 {
		opts.SendStall = DefaultSendStall
	}
	h := &Handler{svc: svc, opts: opts, mux: http.NewServeMux(), log: opts.Logger, closing: closer{ch: make(chan struct{})},
		gates: newGates(opts.Limits)}
	h.mux.HandleFunc("/api/sync/pull", h.byMethod(map[string]http.HandlerFunc{"POST": h.pullPost, "GET": h.pullGet}))
	h.mux.HandleFunc("/api/sync/push", h.only("POST", h.pushPost))
	h.mux.HandleFunc("/sync", h.syncDocs)
	h.mux.HandleFunc("/api/sync/events", h.only("GET", h.events))
	h.mux.HandleFunc("/api/sync/events/ticket", h.only("POST", h.eventsTicket))
	h.mux.HandleFunc("/healthz", h.only("GET", h.healthz))
	admin := h.adminHandler()
	h.mux.Handle("/admin/", admin)
	h.mux.Handle("/admin", http.RedirectHandler("/admin/", http.StatusMovedPermanently))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, melonsync.Errorf(melonsync.ENotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: 200}
	r, sr := withSyncRequest(r, start)
	defer func() {
		p := recover()
		if p == http.ErrAbortHandler {
			// A streamed answer failed after its headers were sent: count it as the
			// server error it is, and panic on so that net/http breaks the connection
			// and the client sees a cut body, never a clean (truncated) 200.
			d := time.Since(start)
			h.opts.Metrics.observe(route(r.URL.Path), http.StatusInternalServerError, d)
			h.log.Error("request aborted", "method", r.Method, "path", r.URL.Path, "status", sw.status, "bytes", sw.n, "ms", d.Milliseconds())
			panic(p)
		}
		if p != nil {
			h.log.Error("panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p))
			if !sw.wrote {
				h.fail(sw, r, fmt.Errorf("panic: %v", p))
			}
		}
		d := time.Since(start)
		h.finish(sr, sw.status, d)
		h.opts.Metrics.observe(route(r.URL.Path), sw.status, d)
		h.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "bytes", sw.n, "ms", d.Milliseconds())
	}()
	if h.cors(sw, r) {
		return
	}
	h.mux.ServeHTTP(sw, r)
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	n      int64
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	n, err := s.ResponseWriter.Write(b)
	s.n += int64(n)
	return n, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (h *Handler) only(method string, fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			h.fail(w, r, melonsync.Errorf(melonsync.EMethodNotAllowed, "%s is not allowed on %s; use %s", r.Method, r.URL.Path, method))
			return
		}
		fn(w, r)
	}
}

// byMethod routes a path's requests by method; other methods get 405.
func (h *Handler) byMethod(handlers map[string]http.HandlerFunc) http.HandlerFunc {
	allowed := make([]string, 0, len(handlers))
	for m := range handlers {
		allowed = append(allowed, m)
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		if fn := handlers[r.Method]; fn != nil {
			fn(w, r)
			return
		}
		w.Header().Set("Allow", allow)
		h.fail(w, r, melonsync.Errorf(melonsync.EMethodNotAllowed, "%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allowed, " or ")))
	}
}

// StatusFor maps an error code to its HTTP status.
func StatusFor(code string) int {
	switch code {
	case melonsync.EInvalid:
		return http.StatusBadRequest
	case melonsync.EUnauthorized, melonsync.EDeviceRevoked:
		return http.StatusUnauthorized
	case melonsync.EForbidden:
		return http.StatusForbidden
	case melonsync.ENotFound:
		return http.StatusNotFound
	case melonsync.EMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case melonsync.EConflict:
		return http.StatusConflict
	case melonsync.ETooLarge:
		return http.StatusRequestEntityTooLarge
	case melonsync.ETooMany:
		return http.StatusTooManyRequests
	case melonsync.EUnavailable:
		return http.StatusServiceUnavailable
	case melonsync.EStorageFull:
		return http.StatusInsufficientStorage
	default:
		return http.StatusInternalServerError
	}
}

// fail writes err as {"error": {...}}. Internal errors are logged here, once, and
// shown only as "internal error".
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *melonsync.Error
	if !errors.As(err, &e) {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return // the client went away
		}
		code := melonsync.EInternal
		msg := "internal error"
		var details map[string]any
		if where := storageFull(err); where != "" {
			code, msg = melonsync.EStorageFull, fullMessage(where)
			details = map[string]any{"retryAfter": fullRetry}
			h.storage.failed(where)
		} else if isUnavailable(err) {
			code, msg = melonsync.EUnavailable, "the database is not reachable; try again later"
		}
		h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err.Error())
		e = &melonsync.Error{Code: code, Message: msg, Details: details}
	}
	if code := e.Code; code == melonsync.EUnauthorized || code == melonsync.EDeviceRevoked {
		w.Header().Set("WWW-Authenticate", `Bearer realm="melonsync"`)
	}
	if e.Code == melonsync.EStorageFull {
		w.Header().Set("Retry-After", strconv.Itoa(fullRetry))
	}
	if e.Code == melonsync.EUnavailable || e.Code == melonsync.ETooMany {
		retry := "1"
		if n, ok := e.Details["retryAfter"].(int); ok && n > 0 {
			retry = strconv.Itoa(n)
		}
		w.Header().Set("Retry-After", retry)
		// Close the connection: a client opening many connections must not keep
		// their descriptors, and a refused body need not be read.
		w.Header().Set("Connection", "close")
	}
	failed(r, e.Code)
	if e.Code == melonsync.EConflict && e.Details["reason"] == server.ReasonSchemaAhead {
		w.Header().Set("Retry-After", strconv.Itoa(server.SchemaAheadRetry))
	}
	details := e.Details
	if details == nil {
		details = map[string]any{}
	}
	body := struct {
		Error wireError `json:"error"`
	}{wireError{e.Code, e.Message, details}}
	writeJSON(w, r, StatusFor(e.Code), body)
}

// wireError is an error as sent: "details" is always present, {} when empty.
type wireError struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

func isUnavailable(err error) bool {
	if errors.Is(err, melonsync.ErrUnavailable) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

func (h *Handler) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := h.svc.Store().Ping(ctx); err != nil {
		h.log.Error("health check failed", "err", err.Error())
		h.fail(w, r, melonsync.Errorf(melonsync.EUnavailable, "the store does not answer"))
		return
	}
	if full := h.storage.check(ctx, h.probes()); len(full) > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(fullRetry))
		writeJSON(w, r, http.StatusServiceUnavailable, map[string]any{"ok": false, "status": "degraded", "storage": "full", "full": full})
		return
	}
	writeJSON(w, r, 200, map[string]any{"ok": true, "status": "ok"})
}

// caller authenticates r and reads the protocol headers.
func (h *Handler) caller(r *http.Request) (server.Caller, error) {
	_, c, err := h.identify(r)
	return c, err
}

// identify is caller that also returns the token's identity.
func (h *Handler) identify(r *http.Request) (Identity, server.Caller, error) {
	id, err := h.opts.Auth.Authenticate(r.Header.Get("Authorization"))
	if err != nil {
		return id, server.Caller{}, err
	}
	if strings.IndexByte(id.User, 0) >= 0 {
		// No store can keep it as it is (PostgreSQL's text refuses U+0000).
		return id, server.Caller{}, melonsync.Errorf(melonsync.EUnauthorized, "the token's user id holds U+0000, which no user id may")
	}
	c := server.Caller{User: id.User, Device: r.Header.Get(melonsync.HeaderDevice)}
	if c.Device != "" && !melonsync.ValidID(c.Device) {
		return id, c, melonsync.Errorf(melonsync.EInvalid, "%s must match ^[A-Za-z0-9_.-]{1,64}$", melonsync.HeaderDevice)
	}
	c.CreatedAsUpdated, _ = strconv.ParseBool(r.Header.Get(melonsync.HeaderCreatedAsUpdated))
	return id, c, h.gate(r, c)
}

// readBody reads the whole body (gunzipping it when Content-Encoding says gzip) up to
// the limit. A body over the limit is drained (up to a bound) before the 413 is sent,
// so that the client reads the answer instead of a reset connection. A body larger
// than Limits.LargeBody takes a large-body slot first (503 when none frees up within
// the wait); the returned func gives it back once the body is no longer needed.
func (h *Handler) readBody(r *http.Request) ([]byte, func(), error) {
	none := func() {}
	limit := h.opts.MaxBodyBytes
	if r.ContentLength > limit*4 {
		return nil, none, tooLarge(limit)
	}
	var src io.Reader = r.Body
	switch strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))) {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, none, melonsync.Errorf(melonsync.EInvalid, "body is not valid gzip")
		}
		defer zr.Close()
		src = zr
	default:
		return nil, none, melonsync.Errorf(melonsync.EInvalid, "unsupported Content-Encoding %q (use gzip or none)", r.Header.Get("Content-Encoding"))
	}
	var buf bytes.Buffer
	release := none
	small := h.gates.largeSize
	if h.gates.large == nil || small >= limit {
		small = limit
	}
	n, err := io.Copy(&buf, io.LimitReader(src, small+1))
	if err == nil && n > small && small < limit {
		// A large body: read the rest only with a slot, so that at most a few large
		// bodies are held and decoded at once.
		if err := take(r.Context(), h.gates.large, h.gates.wait, "large requests"); err != nil {
			return nil, none, err
		}
		release = sync.OnceFunc(func() { <-h.gates.large })
		var m int64
		m, err = io.Copy(&buf, io.LimitReader(src, limit+1-n))
		n += m
	}
	if err != nil {
		release()
		if errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, none, melonsync.Errorf(melonsync.EInvalid, "body is not valid gzip or was cut short")
		}
		return nil, none, melonsync.Errorf(melonsync.EInvalid, "could not read the body: %v", err)
	}
	if n > limit {
		release()
		io.Copy(io.Discard, io.LimitReader(r.Body, limit*4))
		return nil, none, tooLarge(limit)
	}
	return buf.Bytes(), release, nil
}

func tooLarge(limit int64) error {
	return &melonsync.Error{Code: melonsync.ETooLarge, Message: fmt.Sprintf("body is larger than the limit of %d bytes", limit),
		Details: map[string]any{"limit": limit}}
}

func (h *Handler) pullPost(w http.ResponseWriter, r *http.Request) {
	c, err := h.caller(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	body, done, err := h.readBody(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p, err := server.DecodePull(body)
	done()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if r.URL.RawQuery != "" {
		q, err := pullQuery(r.URL.Query())
		if err == nil {
			err = mergeQuery(&p, q)
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
	}
	h.pull(w, r, c, p)
}

// pull answers a pull within the caller's and the server's bounds on pulls at once.
func (h *Handler) pull(w http.ResponseWriter, r *http.Request, c server.Caller, p server.PullParams) {
	leave, err := h.gates.pulls.user(c.User)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer leave()
	release, err := h.gates.pulls.global(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer release()
	h.pullStarted(r, &p)
	if h.opts.StreamPulls {
		h.streamPull(w, r, c, p)
		return
	}
	// The store is read on a goroutine of its own into the spool, which is sent as
	// it grows (spool.go says when sending starts).
	ctx, cancel := context.WithCancel(r.Context())
	sp := newPullSpool(h.opts.SpoolMemory, h.opts.SpoolDir)
	ans := &spooledAnswer{sp: sp, gzipOK: acceptsGzip(r)}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer func() {
			// A panic of the read is the handler's, as if it ran on its goroutine.
			if v := recover(); v != nil {
				release()
				sp.finish(&readPanic{v})
			}
		}()
		err := h.svc.Pull(ctx, c, p, ans)
		if err == nil {
			err = ans.Close()
		}
		// The store is read: the global slot goes to the next pull while this
		// answer is sent, however slowly the client reads (its user's slot stays
		// taken).
		release()
		if err == nil {
			h.pullDone(r, c, &p)
			if sp.spilled() {
				h.storage.ok(fullSpool) // this answer went to a file: the spool has room again
			}
		}
		sp.finish(err)
	}()
	defer func() {
		cancel()
		<-read
		sp.Close()
	}()
	whole, err := sp.ready()
	if err != nil {
		var rp *readPanic
		if errors.As(err, &rp) {
			panic(rp.v) // nothing sent yet: ServeHTTP answers 500
		}
		h.fail(w, r, err)
		return
	}
	err = ans.send(w, h.opts.SendStall, whole)
	var re *readErr
	if errors.As(err, &re) {
		if r.Context().Err() != nil {
			return // the client went away: nothing is wrong with the server
		}
		// Headers are gone: cut the stream so the client sees a broken body.
		if where := storageFull(re.err); where != "" {
			h.storage.failed(where)
		}
		h.log.Error("pull failed mid-answer", "err", re.err.Error())
		panic(http.ErrAbortHandler)
	}
	if err != nil && r.Context().Err() == nil {
		h.log.Warn("pull: sending the answer failed", "err", err.Error())
	}
}

// readPanic is the value of a panic of a pull's read, carried to the handler.
type readPanic struct{ v any }

func (p *readPanic) Error() string { return fmt.Sprintf("panic: %v", p.v) }

// streamPull streams the answer from inside the store's read transaction
// (Options.StreamPulls).
func (h *Handler) streamPull(w http.ResponseWriter, r *http.Request, c server.Caller, p server.PullParams) {
	out := newResponse(w, r)
	if err := h.svc.Pull(r.Context(), c, p, out); err != nil {
		if r.Context().Err() != nil {
			return // the client went away: nothing is wrong with the server
		}
		if out.started {
			// Headers are gone: cut the stream so the client sees a broken body.
			h.log.Error("pull failed mid-stream", "err", err.Error())
			panic(http.ErrAbortHandler)
		}
		h.fail(w, r, err)
		return
	}
	h.pullDone(r, c, &p)
	if err := out.Close(); err != nil {
		h.log.Warn("pull: writing the answer failed", "err", err.Error())
	}
}

func (h *Handler) pushPost(w http.ResponseWriter, r *http.Request) {
	c, err := h.caller(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.decodeAndPush(w, r, c, server.DecodePushFrom, nil)
}

// decodeAndPush admits a push of c through its user's gate, decodes the body with
// decode, lets set adjust what was decoded (when not nil) and runs the push.
func (h *Handler) decodeAndPush(w http.ResponseWriter, r *http.Request, c server.Caller,
	decode func(*schema.Schema, io.Reader, func() ([]byte, error)) (*server.PushParams, error), set func(*server.PushParams)) {
	leave, err := h.gates.pushes.enter(r.Context(), c.User)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer leave()
	sch := h.svc.Schema()
	p, done, err := h.decodePush(r, func(b io.Reader, whole func() ([]byte, error)) (*server.PushParams, error) {
		return decode(sch, b, whole)
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer done()
	if set != nil {
		set(p)
	}
	h.push(w, r, c, p)
}

func (h *Handler) push(w http.ResponseWriter, r *http.Request, c server.Caller, p *server.PushParams) {
	resp, err := h.svc.Push(r.Context(), c, p)
	h.pushDone(r, p, resp, err)
	if err != nil {
		if me := new(melonsync.Error); errors.As(err, &me) && me.Code == melonsync.EConflict {
			n := 0
			for _, ids := range me.Details["conflicts"].(map[string][]string) {
				n += len(ids)
			}
			h.opts.Metrics.count("conflict", n)
		}
		h.fail(w, r, err)
		return
	}
	if wrote(p, resp) {
		h.storage.ok(fullStore) // a write went through: the store has room again
	}
	if m := h.opts.Metrics; m != nil {
		for _, tp := range p.Tables {
			m.count("created", len(tp.Created))
			m.count("updated", len(tp.Updated))
			m.count("deleted", len(tp.Deleted))
		}
		for _, ids := range resp.RejectedIDs {
			m.count("rejected", len(ids))
		}
	}
	writeJSON(w, r, 200, resp)
}

// syncDocs serves the form of WatermelonDB's docs: GET /sync?last_pulled_at=…
// &schema_version=…&migration=… and POST /sync?last_pulled_at=… with Changes.
func (h *Handler) syncDocs(w http.ResponseWriter, r *http.Request) {
	if r.Method != "GET" && r.Method != "POST" {
		w.Header().Set("Allow", "GET, POST")
		h.fail(w, r, melonsync.Errorf(melonsync.EMethodNotAllowed, "%s is not allowed on /sync; use GET or POST", r.Method))
		return
	}
	c, err := h.caller(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	q, err := pullQuery(r.URL.Query())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if r.Method == "GET" {
		h.pull(w, r, c, q.PullParams)
		return
	}
	if !q.hasSince {
		h.fail(w, r, melonsync.Errorf(melonsync.EInvalid, "last_pulled_at is required to push"))
		return
	}
	h.decodeAndPush(w, r, c, server.DecodeChangesFrom, func(p *server.PushParams) { p.LastPulledAt = q.LastPulledAt })
}

// pullGet serves GET /api/sync/pull?since=…: the sync guide's "incremental sync"
// example fetches the pull endpoint with the timestamp in the URL.
func (h *Handler) pullGet(w http.ResponseWriter, r *http.Request) {
	c, err := h.caller(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	q, err := pullQuery(r.URL.Query())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.pull(w, r, c, q.PullParams)
}

// queryParams is a pull read from a URL's query.
type queryParams struct {
	server.PullParams
	hasSince bool // lastPulledAt was given, not empty/null/undefined
}

// pullQuery reads a pull's parameters from a URL query. Each has the names the
// protocol's forms use: last_pulled_at, lastPulledAt or since; schema_version or
// schemaVersion; migration (URL-encoded JSON). Empty, "null" and "undefined" mean
// not given (what a JavaScript template string makes of null). Giving one parameter
// twice with different values is an error.
func pullQuery(q url.Values) (queryParams, error) {
	var out queryParams
	// sent is the name under which the caller sent the last parameter one read:
	// messages name the parameter as the caller wrote it (?since=…, not
	// last_pulled_at).
	sent := ""
	one := func(names ...string) (string, error) {
		v, from := "", ""
		sent = names[0]
		for _, n := range names {
			for _, x := range q[n] {
				if x == "" || x == "null" || x == "undefined" {
					continue
				}
				if from != "" && x != v {
					if from != n {
						return "", melonsync.Errorf(melonsync.EInvalid, "%s and %s are the same parameter, given with different values (%q, %q)", from, n, v, x)
					}
					return "", melonsync.Errorf(melonsync.EInvalid, "%s is given twice with different values (%q, %q)", n, v, x)
				}
				v, from = x, n
				sent = n
			}
		}
		return v, nil
	}
	since, err := one("last_pulled_at", "lastPulledAt", "since")
	if err != nil {
		return out, err
	}
	if since != "" {
		n, _, err := server.ParseTimestamp(since)
		if err != nil {
			return out, melonsync.Errorf(melonsync.EInvalid, "%s must be empty, null or a non-negative integer", sent)
		}
		out.LastPulledAt, out.hasSince = n, true
	}
	sv, err := one("schema_version", "schemaVersion")
	if err != nil {
		return out, err
	}
	if sv != "" {
		n, err := strconv.Atoi(sv)
		if err != nil || n < 1 {
			return out, melonsync.Errorf(melonsync.EInvalid, "%s must be a positive integer", sent)
		}
		out.SchemaVersion = n
	}
	ps, err := one("page_size", "pageSize")
	if err != nil {
		return out, err
	}
	if ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > server.MaxPageSize {
			return out, melonsync.Errorf(melonsync.EInvalid, "%s must be an integer from 1 to %d", sent, server.MaxPageSize)
		}
		out.PageSize = n
	}
	m, err := one("migration")
	if err != nil {
		return out, err
	}
	if m != "" {
		mig, err := server.DecodeMigration([]byte(m))
		if err != nil {
			return out, err
		}
		out.Migration = mig
	}
	return out, nil
}

// mergeQuery fills what a pull body left out from the URL's query (POST
// /api/sync/pull?since=…); a value given in both places must agree.
func mergeQuery(p *server.PullParams, q queryParams) error {
	if q.hasSince {
		switch {
		case p.LastPulledAt == 0:
			p.LastPulledAt = q.LastPulledAt
		case p.LastPulledAt != q.LastPulledAt:
			return melonsync.Errorf(melonsync.EInvalid, "lastPulledAt is %d in the body and %d in the URL", p.LastPulledAt, q.LastPulledAt)
		}
	}
	if q.SchemaVersion != 0 {
		switch {
		case p.SchemaVersion == 0:
			p.SchemaVersion = q.SchemaVersion
		case p.SchemaVersion != q.SchemaVersion:
			return melonsync.Errorf(melonsync.EInvalid, "schemaVersion is %d in the body and %d in the URL", p.SchemaVersion, q.SchemaVersion)
		}
	}
	if q.Migration != nil && p.Migration == nil {
		p.Migration = q.Migration
	}
	if q.PageSize != 0 {
		switch {
		case p.PageSize == 0:
			p.PageSize = q.PageSize
		case p.PageSize != q.PageSize:
			return melonsync.Errorf(melonsync.EInvalid, "pageSize is %d in the body and %d in the URL", p.PageSize, q.PageSize)
		}
	}
	return nil
}
