package http

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/melonsync/melonsync"
)

// CORS answers for browsers on other origins (SPEC §7).
//
// For an allowed origin, every answer of a sync route (errors and the event stream
// included) carries Access-Control-Allow-Origin (the origin itself) and
// Access-Control-Expose-Headers; a preflight (OPTIONS with
// Access-Control-Request-Method) of a sync route answers 204 with the methods, the
// headers and Access-Control-Max-Age. Other origins get no CORS headers (a preflight
// from one answers 403). While CORS is on, every answer says Vary: Origin.
const (
	corsAllowHeaders  = "Authorization, Content-Type, Content-Encoding, X-Melon-Device, X-Melon-Send-Created-As-Updated"
	corsAllowMethods  = "GET, POST, OPTIONS"
	corsExposeHeaders = "Retry-After, WWW-Authenticate"
	corsMaxAge        = "7200" // Chromium caps it at 2 h
)

// ParseCORSOrigins reads a --cors-origins value: a comma-separated list of origins
// ("https://app.example.com", "http://localhost:5173") or "*" for any origin. An empty
// value turns CORS off (nil).
func ParseCORSOrigins(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		o := strings.TrimSpace(part)
		if o == "" {
			continue
		}
		if o == "*" {
			out = append(out, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("cors origin %q is not an origin (scheme://host[:port], e.g. https://app.example.com)", o)
		}
		out = append(out, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	return out, nil
}

// corsRoutes are the routes a browser app calls.
var corsRoutes = []string{"/api/sync/pull", "/api/sync/push", "/api/sync/events", "/api/sync/events/ticket", "/sync", "/healthz"}

func corsRoute(path string) bool { return slices.Contains(corsRoutes, path) }

// cors sets the CORS headers of r's answer; it returns true when it answered r (a
// preflight).
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	if len(h.opts.CORSOrigins) == 0 {
		return false
	}
	hdr := w.Header()
	hdr.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" || !corsRoute(r.URL.Path) {
		return false
	}
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if !h.corsAllowed(origin) {
		if preflight {
			h.fail(w, r, melonsync.Errorf(melonsync.EForbidden, "origin %q is not allowed (see --cors-origins)", clip(origin, 100)))
			return true
		}
		return false
	}
	hdr.Set("Access-Control-Allow-Origin", origin)
	if !preflight {
		hdr.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		return false
	}
	hdr.Add("Vary", "Access-Control-Request-Method")
	hdr.Add("Vary", "Access-Control-Request-Headers")
	hdr.Set("Access-Control-Allow-Methods", corsAllowMethods)
	hdr.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	hdr.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
	return true
}

func (h *Handler) corsAllowed(origin string) bool {
	if slices.Contains(h.opts.CORSOrigins, "*") {
		return true
	}
	return slices.Contains(h.opts.CORSOrigins, strings.ToLower(origin))
}
