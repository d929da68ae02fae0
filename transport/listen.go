package transport

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/client"
)

// listenIdle is how long an event stream may stay silent before it counts as broken:
// the server sends a heartbeat every 25 s.
var listenIdle = 75 * time.Second

// Listen follows the server's live updates (GET /api/sync/events, Server-Sent
// Events). It calls changed with a server timestamp once on connect (the current one,
// which covers changes made while nobody listened) and after every commit that
// touched the caller's data; a sync is due when it is newer than the last pull. It
// blocks until ctx ends (then it returns nil), the server closes the stream
// (nil), or a failure: a *client.SyncError (ErrNetwork, ErrAuth, ErrServer). Set it
// as client.SchedulerOptions.Listen to sync as soon as another device pushes.
func (c *Client) Listen(ctx context.Context, changed func(timestamp int64)) error {
	const op = "listen"
	var token string
	if c.tokens != nil {
		t, err := c.tokens.Token(ctx, false)
		if err != nil {
			return &client.SyncError{Kind: client.KindAuth, Op: op, Message: "no token", Err: err}
		}
		token = t
	}
	for attempt := 0; ; attempt++ {
		reqCtx, cancel := context.WithCancelCause(ctx)
		err := c.listenOnce(ctx, reqCtx, cancel, token, changed)
		cancel(nil)
		var se *client.SyncError
		if attempt == 0 && c.tokens != nil && errors.As(err, &se) && se.Status == http.StatusUnauthorized {
			if t, terr := c.tokens.Token(ctx, true); terr == nil && t != "" {
				token = t
				continue
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

func (c *Client) listenOnce(ctx, reqCtx context.Context, cancel context.CancelCauseFunc, token string, changed func(int64)) error {
	const op = "listen"
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, c.base.String()+"/api/sync/events", nil)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", c.userAgent)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if c.device != "" {
		req.Header.Set(melonsync.HeaderDevice, c.device)
	}
	idle := time.AfterFunc(c.timeout, func() { cancel(errTimeout) })
	defer idle.Stop()
	resp, err := c.hc.Do(req)
	if err != nil {
		if context.Cause(reqCtx) == errTimeout {
			err = fmt.Errorf("no answer within %v: %w", c.timeout, err)
		}
		return client.NetworkError(ctx, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.errorAnswer(ctx, op, resp.StatusCode, resp.Body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return &client.SyncError{Kind: client.KindServer, Op: op, Status: resp.StatusCode,
			Message: fmt.Sprintf("the server answered %q, not an event stream", ct)}
	}
	idle.Reset(listenIdle)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), 64<<10)
	var event, data string
	for sc.Scan() {
		idle.Reset(listenIdle)
		line := sc.Text()
		switch {
		case line == "":
			if (event == "ready" || event == "changes") && data != "" {
				var ev struct {
					Timestamp int64 `json:"timestamp"`
				}
				if json.Unmarshal([]byte(data), &ev) == nil && ev.Timestamp > 0 {
					changed(ev.Timestamp)
				}
			}
			event, data = "", ""
		case strings.HasPrefix(line, ":"):
			// a comment: the heartbeat
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				event = value
			case "data":
				if data != "" {
					data += "\n"
				}
				data += value
			}
		}
	}
	err = sc.Err()
	if err == nil {
		return nil // the server ended the stream (it is shutting down)
	}
	if context.Cause(reqCtx) == errTimeout {
		err = fmt.Errorf("no heartbeat within %v: %w", listenIdle, err)
	}
	return client.NetworkError(ctx, op, err)
}
