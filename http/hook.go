package http

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Write hook requests (SPEC §9) are signed so that the app's backend can tell them
// from anyone else's: the server sends
//
//	X-Melon-Timestamp: 1767225600          (Unix seconds when the request was made)
//	X-Melon-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// over the exact bytes of the body. A backend recomputes the HMAC, compares it in
// constant time, and refuses timestamps far from its clock (VerifyHookSignature
// allows five minutes), so a captured request cannot be replayed later.
const (
	HeaderHookSignature = "X-Melon-Signature"
	HeaderHookTimestamp = "X-Melon-Timestamp"
)

// DefaultHookTimeout bounds one call of the write hook.
const DefaultHookTimeout = 5 * time.Second

// maxHookAnswer bounds the hook's answer.
const maxHookAnswer = 32 << 20

// HookClient calls the app's write hook over HTTP; it implements server.HookCaller.
type HookClient struct {
	url     string
	secret  []byte
	timeout time.Duration
	client  *http.Client
	now     func() time.Time
}

// NewHookClient returns a client that POSTs hook requests to url, signed with
// secret, each bounded by timeout (DefaultHookTimeout when 0). The url must be http
// or https.
func NewHookClient(url string, secret []byte, timeout time.Duration) (*HookClient, error) {
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("hook: the URL must start with http:// or https://")
	}
	if len(secret) == 0 {
		return nil, errors.New("hook: a secret is required to sign hook requests (--hook-secret or MELONSYNC_HOOK_SECRET)")
	}
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	return &HookClient{url: url, secret: secret, timeout: timeout, client: &http.Client{}, now: time.Now}, nil
}

// Call POSTs body and returns the answer's body when the status is 2xx. Errors say
// what went wrong in words safe to show a client (no URL): "timeout after 5s",
// "status 500", "unreachable".
func (h *HookClient) Call(ctx context.Context, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return nil, errors.New("bad hook URL")
	}
	ts := strconv.FormatInt(h.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderHookTimestamp, ts)
	req.Header.Set(HeaderHookSignature, SignHook(h.secret, ts, body))
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, h.failure(ctx, "unreachable")
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxHookAnswer+1))
	if err != nil {
		return nil, h.failure(ctx, "the answer broke off")
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	if len(data) > maxHookAnswer {
		return nil, errors.New("the answer is too large")
	}
	return data, nil
}

func (h *HookClient) failure(ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timeout after %s", h.timeout)
	}
	return errors.New(what)
}

// SignHook returns the X-Melon-Signature value for body sent at timestamp ts (Unix
// seconds, as sent in X-Melon-Timestamp): "sha256=" and the hex HMAC-SHA256 of
// ts + "." + body.
func SignHook(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifyHookSignature checks a hook request as a backend receives it: the
// X-Melon-Timestamp and X-Melon-Signature header values and the raw body. It fails
// for a wrong signature and for a timestamp more than five minutes from now.
func VerifyHookSignature(secret []byte, ts, signature string, body []byte, now time.Time) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("hook signature: bad timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("hook signature: timestamp too far from now")
	}
	if !hmac.Equal([]byte(SignHook(secret, ts, body)), []byte(signature)) {
		return errors.New("hook signature: does not match")
	}
	return nil
}
