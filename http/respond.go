package http

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"strings"
)

// gzipMin is the size from which answers are gzipped for clients that accept it.
const gzipMin = 512

// streamAfter is how much of an answer is buffered before it starts streaming; an
// error before that point still gets a proper error answer.
const streamAfter = 256 << 10

// response is a 200 JSON answer written in one go or streamed: small answers are
// sent as they are, larger ones gzipped when the client accepts it.
type response struct {
	w       http.ResponseWriter
	gzipOK  bool
	buf     bytes.Buffer
	gz      *gzip.Writer
	started bool
}

func newResponse(w http.ResponseWriter, r *http.Request) *response {
	return &response{w: w, gzipOK: acceptsGzip(r)}
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.TrimSpace(strings.ReplaceAll(q, " ", "")) != "q=0" {
			return true
		}
	}
	return false
}

func (r *response) Write(p []byte) (int, error) {
	if r.started {
		if r.gz != nil {
			return r.gz.Write(p)
		}
		return r.w.Write(p)
	}
	r.buf.Write(p)
	if r.buf.Len() >= streamAfter {
		if err := r.start(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (r *response) start() error {
	r.started = true
	h := r.w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Add("Vary", "Accept-Encoding")
	if r.gzipOK && r.buf.Len() >= gzipMin {
		h.Set("Content-Encoding", "gzip")
		h.Del("Content-Length")
		r.w.WriteHeader(200)
		r.gz, _ = gzip.NewWriterLevel(r.w, gzip.BestSpeed)
		_, err := r.gz.Write(r.buf.Bytes())
		r.buf.Reset()
		return err
	}
	if r.buf.Len() < streamAfter {
		h.Set("Content-Length", itoa(r.buf.Len()))
	}
	r.w.WriteHeader(200)
	_, err := r.w.Write(r.buf.Bytes())
	r.buf.Reset()
	return err
}

// Close finishes the answer.
func (r *response) Close() error {
	if !r.started {
		if err := r.start(); err != nil {
			return err
		}
	}
	if r.gz != nil {
		return r.gz.Close()
	}
	return nil
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// writeJSON writes v with status, gzipped when large enough and accepted.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // ends with '\n'
	enc.SetEscapeHTML(false)     // messages read "<token>", not "\u003ctoken\u003e"
	var b []byte
	if err := enc.Encode(v); err != nil {
		status = 500
		b = []byte(`{"error":{"code":"internal","message":"internal error","details":{}}}` + "\n")
	} else {
		b = buf.Bytes()
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Add("Vary", "Accept-Encoding")
	if len(b) >= gzipMin && acceptsGzip(r) {
		h.Set("Content-Encoding", "gzip")
		w.WriteHeader(status)
		gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		gz.Write(b)
		gz.Close()
		return
	}
	h.Set("Content-Length", itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
