package client

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/melonsync/melonsync"
)

// ErrorKind classifies why a sync failed, so that a caller knows what to do next.
type ErrorKind string

// The kinds of sync failure.
const (
	// KindNetwork: the server could not be reached, the connection broke, or it
	// answered "try again later" (408, 429, 502, 503, 504, 507). Retry later.
	KindNetwork ErrorKind = "network"
	// KindAuth: the server refused the credentials (401, 403). Log in again.
	KindAuth ErrorKind = "auth"
	// KindConflict: the push was refused because records changed on the server since
	// the last pull (409). Pull again, then push (Synchronize does this once by itself).
	KindConflict ErrorKind = "conflict"
	// KindServer: the server failed (500) or answered something the client does not
	// understand (an unknown route, a non-JSON answer).
	KindServer ErrorKind = "server"
	// KindInvalidData: the data exchanged is unusable: the server refused what the
	// client sent (400, 413), or it sent records or a timestamp the client cannot apply.
	KindInvalidData ErrorKind = "invalid_data"
	// KindProgrammer: Synchronize was called wrongly (invalid options, turbo on a
	// database that is not empty, a last synced schema version above the current one).
	KindProgrammer ErrorKind = "programmer"
	// KindConcurrent: another Synchronize was running on the same database; this one
	// stopped before changing anything.
	KindConcurrent ErrorKind = "concurrent"
)

// Code returns the error code of the kind in the style of the sync guide:
// SYNC_ERROR_NETWORK, SYNC_ERROR_AUTH, SYNC_ERROR_CONFLICT, SYNC_ERROR_SERVER,
// SYNC_ERROR_INVALID_DATA, SYNC_ERROR_PROGRAMMER or SYNC_ERROR_CONCURRENT.
func (k ErrorKind) Code() string { return "SYNC_ERROR_" + strings.ToUpper(string(k)) }

// SyncError is the error Synchronize and the HTTP transport return for a failure of a
// known kind. Test it with errors.Is against ErrNetwork, ErrAuth, ErrConflict,
// ErrServer, ErrInvalidData, ErrProgrammer or ErrConcurrentSync, or get it with
// errors.As to read the details.
type SyncError struct {
	Kind ErrorKind
	// Op is what failed: "pull", "push", "apply", "options"...
	Op string
	// Status is the HTTP status of the answer, 0 when there was none.
	Status int
	// ServerCode is the server's error code (melonsync.EConflict, ...), when it sent one.
	ServerCode string
	// Message describes the failure.
	Message string
	// Conflicts lists the conflicting ids by table, for KindConflict when the server
	// named them.
	Conflicts map[string][]string
	// Err is the underlying cause (a *melonsync.Error from the server, a net error...).
	Err error

	sentinel bool
}

// Sentinels for errors.Is. Any *SyncError of the same kind matches them.
var (
	ErrNetwork        = &SyncError{Kind: KindNetwork, Message: "network error", sentinel: true}
	ErrAuth           = &SyncError{Kind: KindAuth, Message: "authentication failed", sentinel: true}
	ErrConflict       = &SyncError{Kind: KindConflict, Message: "conflict: records changed on the server", sentinel: true}
	ErrServer         = &SyncError{Kind: KindServer, Message: "server error", sentinel: true}
	ErrInvalidData    = &SyncError{Kind: KindInvalidData, Message: "invalid data", sentinel: true}
	ErrProgrammer     = &SyncError{Kind: KindProgrammer, Message: "programmer error", sentinel: true}
	ErrConcurrentSync = &SyncError{Kind: KindConcurrent, Message: "concurrent synchronization is not allowed", sentinel: true}
)

// Error implements error.
//
// It reads "OP: MESSAGE (HTTP STATUS SERVER_CODE): CAUSE" — one part per layer, each
// once: the server's code goes with the status, and the cause is left out when it
// says nothing more than the message (the server's own error, whose message it is).
func (e *SyncError) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	switch {
	case e.Status != 0 && e.ServerCode != "":
		fmt.Fprintf(&b, " (HTTP %d %s)", e.Status, e.ServerCode)
	case e.Status != 0:
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	var me *melonsync.Error
	if e.Err != nil && !strings.Contains(e.Message, e.Err.Error()) && !(errors.As(e.Err, &me) && strings.Contains(e.Message, me.Message)) {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *SyncError) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's kind.
func (e *SyncError) Is(target error) bool {
	t, ok := target.(*SyncError)
	return ok && t.sentinel && t.Kind == e.Kind
}

// Code returns the SYNC_ERROR_* code of e's kind.
func (e *SyncError) Code() string { return e.Kind.Code() }

// Retryable reports whether trying the same sync again later may succeed without
// anyone changing anything: network failures and conflicts.
func (e *SyncError) Retryable() bool {
	return e.Kind == KindNetwork || e.Kind == KindConflict
}

// ErrorCode returns the SYNC_ERROR_* code of the first *SyncError in err's chain, or
// "" when there is none (nil, a cancellation, an error of a caller's own function).
func ErrorCode(err error) string {
	var se *SyncError
	if errors.As(err, &se) {
		return se.Code()
	}
	return ""
}

// IsRetryable reports whether err is a sync failure worth retrying later unchanged
// (see SyncError.Retryable). Cancellations are not.
func IsRetryable(err error) bool {
	var se *SyncError
	return errors.As(err, &se) && se.Retryable()
}

func newError(kind ErrorKind, op string, err error, format string, args ...any) *SyncError {
	return &SyncError{Kind: kind, Op: op, Message: fmt.Sprintf(format, args...), Err: err}
}

func programmerError(format string, args ...any) *SyncError {
	return newError(KindProgrammer, "options", nil, format, args...)
}

func invalidData(op string, format string, args ...any) *SyncError {
	return newError(KindInvalidData, op, nil, format, args...)
}

// NetworkError wraps a transport failure (dial, reset, timeout, a body cut short) as
// a KindNetwork *SyncError. A cancellation of ctx is returned as ctx's error instead,
// so that errors.Is(err, context.Canceled) holds and nothing is retried.
func NetworkError(ctx context.Context, op string, err error) error {
	if ctx != nil && ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	return &SyncError{Kind: KindNetwork, Op: op, Message: "network error", Err: err}
}
