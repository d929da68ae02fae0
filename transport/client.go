// Package transport is the Go client's HTTP transport: Pull, Push and Listen over
// melonsync's HTTP protocol for package client's Synchronize and scheduler, and the
// mapping of HTTP answers to client.SyncError kinds. It links no server code.
package transport

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/client"
)

// Client defaults.
const (
	// DefaultTimeout bounds a request until the answer's headers arrive (the server
	// has done its work by then).
	DefaultTimeout = 60 * time.Second
	// DefaultIdleTimeout bounds a pause while an answer's body is read.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultGzipThreshold is the request size from which bodies are gzipped.
	DefaultGzipThreshold = 1024
)

// TokenSource supplies the bearer token of each request.
type TokenSource interface {
	// Token returns the token to send. refresh is true when the server refused the
	// previous token (401): return a new one, or an error to give up.
	Token(ctx context.Context, refresh bool) (string, error)
}

// TokenFunc adapts a function to TokenSource.
type TokenFunc func(ctx context.Context, refresh bool) (string, error)

// Token implements TokenSource.
func (f TokenFunc) Token(ctx context.Context, refresh bool) (string, error) { return f(ctx, refresh) }

// ErrNoRefresh is returned by StaticToken when asked for a new token.
var ErrNoRefresh = errors.New("the token was refused and cannot be refreshed")

// StaticToken returns a TokenSource that always sends token and cannot refresh it.
func StaticToken(token string) TokenSource {
	return TokenFunc(func(_ context.Context, refresh bool) (string, error) {
		if refresh {
			return "", ErrNoRefresh
		}
		return token, nil
	})
}

// Client is the HTTP transport of the Go client: it speaks melonsync's protocol
// (POST /api/sync/pull and /api/sync/push) and gives Synchronize its PullChanges and
// PushChanges. Failures are *client.SyncError values (client.ErrNetwork, ErrAuth,
// ErrConflict, ErrServer, ErrInvalidData). It is safe for concurrent use.
type Client struct {
	base      *url.URL
	tokens    TokenSource
	device    string
	hc        *http.Client
	timeout   time.Duration
	idle      time.Duration
	gzipMin   int
	userAgent string
	onBytes   func(n int64)
	pullPath  string
	pushPath  string
	received  atomic.Int64
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithHTTPClient sets the *http.Client used (default: a client of its own).
func WithHTTPClient(hc *http.Client) ClientOption { return func(c *Client) { c.hc = hc } }

// WithTimeout bounds each request until its answer's headers arrive (default
// DefaultTimeout).
func WithTimeout(d time.Duration) ClientOption { return func(c *Client) { c.timeout = d } }

// WithIdleTimeout bounds a pause while reading an answer (default DefaultIdleTimeout).
func WithIdleTimeout(d time.Duration) ClientOption { return func(c *Client) { c.idle = d } }

// WithGzipThreshold sets the body size from which requests are gzipped (default
// DefaultGzipThreshold; negative: never).
func WithGzipThreshold(n int) ClientOption { return func(c *Client) { c.gzipMin = n } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) ClientOption { return func(c *Client) { c.userAgent = ua } }

// WithDownloadProgress calls fn with the number of bytes of answers received so far
// (as sent on the wire), as they arrive.
func WithDownloadProgress(fn func(n int64)) ClientOption { return func(c *Client) { c.onBytes = fn } }

// NewClient returns a transport for the server at baseURL (for example
// "http://127.0.0.1:8080"). tokens supplies bearer tokens (StaticToken for a fixed
// one; nil sends none); device is sent as X-Melon-Device ("" sends none; see
// client.DeviceID for a stable one).
func NewClient(baseURL string, tokens TokenSource, device string, opts ...ClientOption) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http client: base URL %q must be an absolute http(s) URL", baseURL)
	}
	c := &Client{
		base: u, tokens: tokens, device: device,
		timeout: DefaultTimeout, idle: DefaultIdleTimeout, gzipMin: DefaultGzipThreshold,
		userAgent: "melonsync-go", pullPath: "/api/sync/pull", pushPath: "/api/sync/push",
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return c, nil
}

// Options returns SyncOptions with this client's Pull and Push set.
func (c *Client) Options() client.SyncOptions {
	return client.SyncOptions{PullChanges: c.Pull, PushChanges: c.Push}
}

// BytesReceived returns the number of answer bytes received so far (on the wire).
func (c *Client) BytesReceived() int64 { return c.received.Load() }

// Pull fetches the changes since args.LastPulledAt (POST /api/sync/pull). With
// args.Turbo or args.Stream (Synchronize sets it) the answer is not decoded:
// PullResult.Body streams it (gunzipped) and the caller must close it.
func (c *Client) Pull(ctx context.Context, args client.PullArgs) (*client.PullResult, error) {
	body, err := json.Marshal(args.Request())
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	var hdr http.Header
	if args.SendCreatedAsUpdated {
		hdr = http.Header{melonsync.HeaderCreatedAsUpdated: {"true"}}
	}
	rc, err := c.do(ctx, "pull", c.pullPath, body, hdr)
	if err != nil {
		return nil, err
	}
	if args.Turbo || args.Stream {
		return &client.PullResult{Body: rc}, nil
	}
	defer rc.Close()
	return client.DecodePullResponse(ctx, rc)
}

// Push sends local changes (POST /api/sync/push) and returns once the server has
// committed them. A refusal because of newer server changes is client.ErrConflict.
func (c *Client) Push(ctx context.Context, req melonsync.PushRequest) (*melonsync.PushResponse, error) {
	body, err := json.Marshal(pushBody{Changes: normalize(req.Changes), LastPulledAt: req.LastPulledAt})
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	rc, err := c.do(ctx, "push", c.pushPath, body, nil)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, c.readFailure(ctx, "push", err)
	}
	var resp melonsync.PushResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, &client.SyncError{Kind: client.KindServer, Op: "push", Status: 200,
			Message: "the server's answer is not the JSON of a push answer", Err: err}
	}
	return &resp, nil
}

type pushBody struct {
	Changes      melonsync.Changes `json:"changes"`
	LastPulledAt int64             `json:"lastPulledAt"`
}

// normalize returns changes with empty lists instead of nil ones, so that every table
// is {"created": [], "updated": [], "deleted": []} on the wire.
func normalize(ch melonsync.Changes) melonsync.Changes {
	out := make(melonsync.Changes, len(ch))
	for t, tc := range ch {
		n := melonsync.TableChanges{Created: []melonsync.RawRecord{}, Updated: []melonsync.RawRecord{}, Deleted: []string{}}
		if tc != nil {
			if tc.Created != nil {
				n.Created = tc.Created
			}
			if tc.Updated != nil {
				n.Updated = tc.Updated
			}
			if tc.Deleted != nil {
				n.Deleted = tc.Deleted
			}
		}
		out[t] = &n
	}
	return out
}

var errTimeout = errors.New("timed out")

// do sends one POST and returns the (gunzipped) body of a 2xx answer. A 401 asks the
// token source for a new token and tries once more.
func (c *Client) do(ctx context.Context, op, path string, body []byte, extra http.Header) (io.ReadCloser, error) {
	encoded, gzipped := body, false
	if c.gzipMin >= 0 && len(body) >= c.gzipMin {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(body)
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", op, err)
		}
		encoded, gzipped = buf.Bytes(), true
	}
	var token string
	if c.tokens != nil {
		t, err := c.tokens.Token(ctx, false)
		if err != nil {
			return nil, &client.SyncError{Kind: client.KindAuth, Op: op, Message: "no token", Err: err}
		}
		token = t
	}
	for attempt := 0; ; attempt++ {
		reqCtx, cancel := context.WithCancelCause(ctx)
		req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, c.base.String()+path, bytes.NewReader(encoded))
		if err != nil {
			cancel(nil)
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Accept-Encoding", "gzip")
		req.Header.Set("User-Agent", c.userAgent)
		if gzipped {
			req.Header.Set("Content-Encoding", "gzip")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if c.device != "" {
			req.Header.Set(melonsync.HeaderDevice, c.device)
		}
		for k, v := range extra {
			req.Header[k] = v
		}
		timer := time.AfterFunc(c.timeout, func() { cancel(errTimeout) })
		resp, err := c.hc.Do(req)
		timer.Stop()
		if err != nil {
			cancel(nil)
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s: %w", op, ctx.Err())
			}
			if context.Cause(reqCtx) == errTimeout {
				err = fmt.Errorf("no answer within %v: %w", c.timeout, err)
			}
			return nil, client.NetworkError(ctx, op, err)
		}
		rc, err := c.wrapBody(ctx, reqCtx, cancel, resp)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return rc, nil
		}
		serr := c.errorAnswer(ctx, op, resp.StatusCode, rc)
		rc.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && c.tokens != nil {
			// Ask for a new token and try once more; without one, the refusal stands.
			if t, err := c.tokens.Token(ctx, true); err == nil && t != "" {
				token = t
				continue
			}
		}
		return nil, serr
	}
}

// errorAnswer reads a non-2xx answer into a typed error.
func (c *Client) errorAnswer(ctx context.Context, op string, status int, body io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(body, 1<<20))
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	var env struct {
		Error *melonsync.Error `json:"error"`
	}
	if json.Unmarshal(data, &env) == nil && env.Error != nil && env.Error.Code != "" {
		return ErrorFromServer(op, status, env.Error)
	}
	se := ErrorFromServer(op, status, nil)
	snippet := strings.TrimSpace(string(data))
	if len(snippet) > 200 {
		snippet = snippet[:200] + "…"
	}
	if snippet != "" {
		se.Message = fmt.Sprintf("the server answered %d %s: %s", status, http.StatusText(status), snippet)
	} else {
		se.Message = fmt.Sprintf("the server answered %d %s", status, http.StatusText(status))
	}
	return se
}

func (c *Client) readFailure(ctx context.Context, op string, err error) error {
	var se *client.SyncError
	if errors.As(err, &se) {
		return err
	}
	return client.NetworkError(ctx, op, err)
}

// wrapBody returns resp.Body counted, guarded by the idle timeout, and gunzipped
// when the server compressed it. Closing it releases the request's context.
func (c *Client) wrapBody(ctx, reqCtx context.Context, cancel context.CancelCauseFunc, resp *http.Response) (io.ReadCloser, error) {
	b := &body{c: c, ctx: ctx, reqCtx: reqCtx, raw: resp.Body, cancel: cancel, idle: c.idle}
	b.timer = time.AfterFunc(c.idle, func() { cancel(errTimeout) })
	if strings.EqualFold(strings.TrimSpace(resp.Header.Get("Content-Encoding")), "gzip") {
		zr, err := gzip.NewReader(b)
		if err != nil {
			b.Close()
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, client.NetworkError(ctx, "read", fmt.Errorf("answer cut short: %w", err))
			}
			var se *client.SyncError
			if errors.As(err, &se) || ctx.Err() != nil {
				return nil, b.mapErr(err)
			}
			return nil, &client.SyncError{Kind: client.KindServer, Status: resp.StatusCode, Message: "the answer is not valid gzip", Err: err}
		}
		return &gzipBody{zr: zr, b: b}, nil
	}
	return b, nil
}

type body struct {
	c      *Client
	ctx    context.Context
	reqCtx context.Context
	raw    io.ReadCloser
	cancel context.CancelCauseFunc
	timer  *time.Timer
	idle   time.Duration
	once   sync.Once
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.raw.Read(p)
	if n > 0 {
		b.timer.Reset(b.idle)
		total := b.c.received.Add(int64(n))
		if b.c.onBytes != nil {
			b.c.onBytes(total)
		}
	}
	if err != nil && err != io.EOF {
		return n, b.mapErr(err)
	}
	return n, err
}

func (b *body) mapErr(err error) error {
	if b.ctx.Err() != nil {
		return b.ctx.Err()
	}
	if context.Cause(b.reqCtx) == errTimeout {
		err = fmt.Errorf("no data for %v: %w", b.idle, err)
	}
	var se *client.SyncError
	if errors.As(err, &se) {
		return err
	}
	return client.NetworkError(b.ctx, "read", err)
}

func (b *body) Close() error {
	b.once.Do(func() {
		b.timer.Stop()
		b.raw.Close()
		b.cancel(nil)
	})
	return nil
}

type gzipBody struct {
	zr *gzip.Reader
	b  *body
}

func (g *gzipBody) Read(p []byte) (int, error) {
	n, err := g.zr.Read(p)
	if err != nil && err != io.EOF {
		var se *client.SyncError
		if errors.As(err, &se) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return n, err
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return n, client.NetworkError(g.b.ctx, "read", fmt.Errorf("answer cut short: %w", err))
		}
		return n, &client.SyncError{Kind: client.KindServer, Op: "read", Message: "the answer is not valid gzip", Err: err}
	}
	return n, err
}

func (g *gzipBody) Close() error {
	g.zr.Close()
	return g.b.Close()
}
