package transport

import (
	"fmt"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/client"
)

// The mapping of HTTP answers to the kinds of sync failure of package client.

// KindForStatus returns the kind of failure an HTTP status means, and "" for
// statuses that are not failures.
func KindForStatus(status int) client.ErrorKind {
	switch {
	case status < 400:
		return ""
	case status == 401 || status == 403:
		return client.KindAuth
	case status == 409:
		return client.KindConflict
	case status == 408 || status == 429 || status == 502 || status == 503 || status == 504 || status == 507:
		return client.KindNetwork
	case status == 400 || status == 413 || status == 422:
		return client.KindInvalidData
	default:
		return client.KindServer
	}
}

// ErrorFromServer turns an error answer of the server into a *client.SyncError of the kind
// its status means, keeping the server's error (code, message, details) as the cause.
// For conflicts it reads the conflicting ids from details.conflicts.
func ErrorFromServer(op string, status int, e *melonsync.Error) *client.SyncError {
	kind := KindForStatus(status)
	if kind == "" {
		kind = client.KindServer
	}
	se := &client.SyncError{Kind: kind, Op: op, Status: status}
	if e == nil {
		se.Message = fmt.Sprintf("the server answered %d without an error body", status)
		return se
	}
	se.ServerCode, se.Message, se.Err = e.Code, e.Message, e
	if se.Message == "" {
		se.Message = e.Code
	}
	if kind == client.KindConflict {
		se.Conflicts = conflictIDs(e.Details)
	}
	return se
}

func conflictIDs(details map[string]any) map[string][]string {
	raw, ok := details["conflicts"].(map[string]any)
	if !ok {
		return nil
	}
	out := make(map[string][]string, len(raw))
	for table, v := range raw {
		list, _ := v.([]any)
		for _, id := range list {
			if s, ok := id.(string); ok {
				out[table] = append(out[table], s)
			}
		}
	}
	return out
}
