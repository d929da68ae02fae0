package http_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	mhttp "github.com/melonsync/melonsync/http"
)

func TestParseCORSOrigins(t *testing.T) {
	got, err := mhttp.ParseCORSOrigins(" https://App.example.com, http://localhost:5173 ,")
	if err != nil || strings.Join(got, " ") != "https://app.example.com http://localhost:5173" {
		t.Errorf("got %q, %v", got, err)
	}
	if got, err := mhttp.ParseCORSOrigins(""); err != nil || got != nil {
		t.Errorf("empty: %q, %v", got, err)
	}
	for _, bad := range []string{"app.example.com", "https://app.example.com/path", "ftp://x", "https://", "https://a.b?x=1"} {
		if _, err := mhttp.ParseCORSOrigins(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestCORS: preflights of every sync route, the headers on every answer (errors and
// the event stream included), nothing for other origins, nothing when off.
func TestCORS(t *testing.T) {
	const app = "http://app.test:5173"
	e := newEnvWith(t, mhttp.Options{CORSOrigins: []string{app}}, nil)
	routes := []struct{ method, path string }{
		{"POST", "/api/sync/pull"}, {"GET", "/api/sync/pull"}, {"POST", "/api/sync/push"},
		{"GET", "/sync"}, {"POST", "/sync"}, {"GET", "/api/sync/events"}, {"POST", "/api/sync/events/ticket"},
	}
	for _, rt := range routes {
		r := e.do("OPTIONS", rt.path, map[string]string{"Origin": app, "Access-Control-Request-Method": rt.method,
			"Access-Control-Request-Headers": "authorization,content-type,content-encoding,x-melon-device,x-melon-send-created-as-updated"}, nil)
		h := r.header
		if r.status != 204 || h.Get("Access-Control-Allow-Origin") != app || !strings.Contains(h.Get("Access-Control-Allow-Methods"), rt.method) ||
			h.Get("Access-Control-Max-Age") == "" || !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
			t.Errorf("preflight %s %s: %d %v", rt.method, rt.path, r.status, h)
		}
		allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
		for _, want := range []string{"authorization", "content-type", "content-encoding", "x-melon-device", "x-melon-send-created-as-updated"} {
			if !strings.Contains(allowed, want) {
				t.Errorf("preflight %s: %s not allowed (%q)", rt.path, want, allowed)
			}
		}
		// Another origin: no CORS headers, and the preflight fails.
		r = e.do("OPTIONS", rt.path, map[string]string{"Origin": "http://evil.test", "Access-Control-Request-Method": rt.method}, nil)
		if r.status == 204 || r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Allow-Headers") != "" {
			t.Errorf("preflight from another origin %s: %d %v", rt.path, r.status, r.header)
		}
	}
	// Answers: success, 401, 400, 409-style errors all carry the headers.
	alice := with(e.as("alice"), "Origin", app)
	answers := []struct {
		name, method, path string
		hdr                map[string]string
		body               string
		status             int
	}{
		{"pull", "POST", "/api/sync/pull", alice, `{"lastPulledAt":null}`, 200},
		{"push", "POST", "/api/sync/push", alice, `{"lastPulledAt":0,"changes":{"projects":{"created":[{"id":"c1"}]}}}`, 200},
		{"conflict", "POST", "/api/sync/push", with(alice, "X-Melon-Device", "other"), `{"lastPulledAt":1,"changes":{"projects":{"updated":[{"id":"c1","name":"x"}]}}}`, 409},
		{"no token", "POST", "/api/sync/pull", map[string]string{"Origin": app}, `{}`, 401},
		{"bad body", "POST", "/api/sync/push", alice, `{`, 400},
		{"ticket", "POST", "/api/sync/events/ticket", alice, ``, 200},
		{"healthz", "GET", "/healthz", map[string]string{"Origin": app}, ``, 200},
	}
	for _, a := range answers {
		r := e.do(a.method, a.path, a.hdr, []byte(a.body))
		if r.status != a.status {
			t.Errorf("%s: status %d %s, want %d", a.name, r.status, r.body, a.status)
		}
		if r.header.Get("Access-Control-Allow-Origin") != app || !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Origin") ||
			!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "Retry-After") {
			t.Errorf("%s: CORS headers missing: %v", a.name, r.header)
		}
		evil := with(a.hdr, "Origin", "http://evil.test")
		if r := e.do(a.method, a.path, evil, []byte(a.body)); r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s from another origin: %v", a.name, r.header)
		}
	}
	// The event stream.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/sync/events", nil)
	for k, v := range alice {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != app || resp.Header.Get("Vary") == "" {
		t.Errorf("event stream: %d %v", resp.StatusCode, resp.Header)
	}

	// Off: no CORS headers, OPTIONS is not a route.
	off := newEnv(t, 0)
	r := off.do("OPTIONS", "/api/sync/pull", map[string]string{"Origin": app, "Access-Control-Request-Method": "POST"}, nil)
	if r.status != 405 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS off: preflight %d %v", r.status, r.header)
	}
	// "*": any origin.
	star := newEnvWith(t, mhttp.Options{CORSOrigins: []string{"*"}}, nil)
	r = star.do("POST", "/api/sync/pull", with(star.as("alice"), "Origin", "https://anything.example"), []byte(`{"lastPulledAt":null}`))
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://anything.example" {
		t.Errorf("CORS *: %d %v", r.status, r.header)
	}
}
