package melonsync

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to exactly one HTTP status (see http.StatusFor).
const (
	EInvalid          = "invalid_request"    // 400
	EUnauthorized     = "unauthorized"       // 401
	EDeviceRevoked    = "device_revoked"     // 401: an operator revoked this device
	EForbidden        = "forbidden"          // 403
	ENotFound         = "not_found"          // 404
	EMethodNotAllowed = "method_not_allowed" // 405
	EConflict         = "conflict"           // 409
	ETooLarge         = "payload_too_large"  // 413
	ETooMany          = "too_many_requests"  // 429
	EInternal         = "internal"           // 500
	EUnavailable      = "unavailable"        // 503
	EStorageFull      = "storage_full"       // 507: the server's disk is full; nothing was written
)

// ErrUnavailable marks errors meaning the store cannot be reached right now (a store
// wraps its connection errors with it); they answer 503 unavailable, not 500.
var ErrUnavailable = errors.New("store unavailable")

// ErrStorageFull marks errors meaning the server has no room left to write (SQLite's
// SQLITE_FULL, PostgreSQL's disk_full, ENOSPC); a store wraps them with it. They answer
// 507 storage_full: the transaction was rolled back whole, and the same request may
// succeed once space is freed.
var ErrStorageFull = errors.New("storage full")

// Error is an error meant to be shown to a caller: a stable code, a human message
// and optional structured details. Errors that are not *Error are internal.
type Error struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

// Error implements the error interface.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err: the code of the first *Error in its chain,
// EInternal for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the message safe to show a caller: the message of an *Error,
// or a generic text for internal errors (which must never leak).
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ConflictError returns a conflict error listing conflicting ids by table.
func ConflictError(ids map[string][]string) *Error {
	n := 0
	for _, v := range ids {
		n += len(v)
	}
	return &Error{
		Code:    EConflict,
		Message: fmt.Sprintf("%d record(s) changed on the server since lastPulledAt; pull and try again", n),
		Details: map[string]any{"conflicts": ids},
	}
}
