package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/melonsync/melonsync"
)

// wrap adds context to an error from the driver; errors meaning the database cannot be
// reached or cannot serve right now also wrap melonsync.ErrUnavailable (503, retry).
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if isDiskFull(err) {
		return fmt.Errorf("postgres: %s: %w: %w", op, melonsync.ErrStorageFull, err)
	}
	if isUnavailable(err) {
		return fmt.Errorf("postgres: %s: %w: %w", op, melonsync.ErrUnavailable, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// isDiskFull tells PostgreSQL's disk_full (SQLSTATE 53100: a table, index or
// temporary file could not grow). The statement failed and the transaction is
// rolled back whole; it answers 507 storage_full, not 503.
func isDiskFull(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "53100"
}

// isUnavailable reports errors that are about the connection or the server's state,
// not about the statement: connection failures, a server shutting down or starting,
// too many connections, statement timeouts, and the transient serialization and
// deadlock failures. A request that gets one may be retried as it is.
func isUnavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"),  // insufficient resources (too many connections, out of memory; disk full is ErrStorageFull)
			strings.HasPrefix(pgErr.Code, "57P"), // admin/crash shutdown, cannot connect now
			pgErr.Code == "57014",                // statement timeout (or cancel)
			pgErr.Code == "40001",                // serialization failure
			pgErr.Code == "40P01",                // deadlock detected
			pgErr.Code == "55P03",                // lock not available
			pgErr.Code == "25006" && strings.Contains(pgErr.Message, "read-only"), // a standby after failover
			pgErr.Code == "58000", pgErr.Code == "58030": // system / io error
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, puddle.ErrClosedPool),
		pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return true
	}
	// pgx reports a connection it closed after a failure as "conn closed".
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "closed pool")
}
