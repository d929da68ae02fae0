package http

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/server"
)

// A push's body is decoded as it arrives (server.DecodePushFrom), never held whole:
// a push costs the records it decodes, not its body too. The bounds of readBody
// hold as the body streams by: MaxBodyBytes after gunzip (413), and a large-body
// slot taken once Limits.LargeBody bytes have come, kept until the push is done.
// What arrives from the connection is also kept in a spool (memory up to
// SpoolMemory, then a temporary file in SpoolDir), so that a body the one-pass
// decoder leaves to the checked decoder — a refused one, whose problem must be
// named — can be read again whole.

// decodePush decodes the push body of r with decode; done gives back the large-body
// slot the body took, if any, once the push is no longer needed.
func (h *Handler) decodePush(r *http.Request,
	decode func(io.Reader, func() ([]byte, error)) (*server.PushParams, error)) (p *server.PushParams, done func(), err error) {
	b, err := h.openPushBody(r)
	if err != nil {
		return nil, func() {}, err
	}
	defer b.close()
	p, err = decode(b, b.whole)
	if err != nil {
		b.release()
		return nil, func() {}, err
	}
	if b.wire.f != nil {
		h.storage.ok(fullSpool) // the spool directory had room again
	}
	return p, b.release, nil
}

// pushBody is a push's body as a stream of decoded bytes, within the bounds.
type pushBody struct {
	h       *Handler
	r       *http.Request
	wire    spool     // the body as it came, for whole
	gz      io.Closer // the gunzipping reader, if any
	src     io.Reader // the body, gunzipped
	n       int64     // bytes read from src
	limit   int64     // MaxBodyBytes
	small   int64     // bytes readable without a large-body slot
	slot    bool
	release func()
	err     error // the first error, returned from then on
}

func (h *Handler) openPushBody(r *http.Request) (*pushBody, error) {
	b := &pushBody{h: h, r: r, limit: h.opts.MaxBodyBytes, small: h.gates.largeSize, release: func() {},
		wire: spool{max: h.opts.SpoolMemory, dir: h.opts.SpoolDir, pattern: "melonsync-push-*"}}
	if r.ContentLength > b.limit*4 {
		return nil, tooLarge(b.limit)
	}
	if h.gates.large == nil || b.small >= b.limit {
		b.small = b.limit
	}
	tee := io.TeeReader(r.Body, spoolWriter{&b.wire})
	switch strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))) {
	case "", "identity":
		b.src = tee
	case "gzip":
		zr, err := gzip.NewReader(tee)
		if err != nil {
			b.wire.Close()
			if se := (spoolError{}); errors.As(err, &se) {
				return nil, se.answer()
			}
			return nil, melonsync.Errorf(melonsync.EInvalid, "body is not valid gzip")
		}
		b.src, b.gz = zr, zr
	default:
		return nil, melonsync.Errorf(melonsync.EInvalid, "unsupported Content-Encoding %q (use gzip or none)", r.Header.Get("Content-Encoding"))
	}
	return b, nil
}

// Read reads the gunzipped body, taking a large-body slot when it passes the small
// size and failing with 413 past the limit.
func (b *pushBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.src.Read(p)
	b.n += int64(n)
	switch {
	case err != nil && err != io.EOF:
		b.err = readError(err)
		return 0, b.err
	case b.n > b.limit:
		io.Copy(io.Discard, io.LimitReader(b.r.Body, b.limit*4))
		b.err = tooLarge(b.limit)
		return 0, b.err
	case b.n > b.small && !b.slot:
		// A large body: read the rest only with a slot, so that at most a few large
		// pushes are decoded (and held) at once.
		if err := take(b.r.Context(), b.h.gates.large, b.h.gates.wait, "large requests"); err != nil {
			b.err = err
			return 0, err
		}
		b.slot = true
		b.release = sync.OnceFunc(func() { <-b.h.gates.large })
	}
	return n, err
}

// whole reads the rest of the body and returns all of it, gunzipped.
func (b *pushBody) whole() ([]byte, error) {
	if _, err := io.Copy(io.Discard, b); err != nil {
		return nil, err
	}
	src, err := b.wire.reader()
	if err != nil {
		return nil, spoolError{err}.answer()
	}
	if b.gz != nil {
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, readError(err)
		}
		defer zr.Close()
		src = zr
	}
	body, err := io.ReadAll(src)
	if err != nil {
		return nil, readError(err)
	}
	return body, nil
}

func (b *pushBody) close() {
	if b.gz != nil {
		b.gz.Close()
	}
	b.wire.Close()
}

// readError is the answer to a body that could not be read.
func readError(err error) error {
	if se := (spoolError{}); errors.As(err, &se) {
		return se.answer()
	}
	if errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
		return melonsync.Errorf(melonsync.EInvalid, "body is not valid gzip or was cut short")
	}
	return melonsync.Errorf(melonsync.EInvalid, "could not read the body: %v", err)
}

// spoolWriter marks the spool's errors: the server's failure, not the client's.
type spoolWriter struct{ sp *spool }

func (w spoolWriter) Write(p []byte) (int, error) {
	n, err := w.sp.Write(p)
	if err != nil {
		err = spoolError{err}
	}
	return n, err
}

type spoolError struct{ err error }

func (e spoolError) Error() string { return "spooling the body: " + e.err.Error() }
func (e spoolError) Unwrap() error { return e.err }

// answer is the error to answer with: the server's own failure (a full disk answers
// 507 storage_full, see storage.go), never the client's.
func (e spoolError) answer() error {
	return fmt.Errorf("spooling the push body: %w", e.err)
}
