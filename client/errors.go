package client

import "errors"

// Errors that callers test with errors.Is. Errors returned by the package wrap one of
// these when one applies; other errors come from SQLite or the file system.
var (
	// ErrNotFound: no record with that id in that table.
	ErrNotFound = errors.New("client: record not found")
	// ErrDeleted: the record is marked as deleted (waiting to be pushed) and cannot
	// be changed any more.
	ErrDeleted = errors.New("client: record is marked as deleted")
	// ErrExists: Create was given the id of a record that already exists (possibly
	// marked as deleted).
	ErrExists = errors.New("client: a record with this id already exists")
	// ErrInvalid: a programmer error in the arguments: unknown table or column, a
	// reserved key, an invalid id, a malformed query, an invalid pull strategy, or an
	// invalid record handed to ApplyRemoteChanges.
	ErrInvalid = errors.New("client: invalid argument")
	// ErrReadOnly: a write method was called on a transaction opened with Read.
	ErrReadOnly = errors.New("client: write in a read transaction")
	// ErrTxDone: a Tx was used after its Read or Write function returned.
	ErrTxDone = errors.New("client: transaction has already finished")
	// ErrClosed: the database is closed.
	ErrClosed = errors.New("client: database is closed")
	// ErrIncompatible: the file cannot be opened with this schema: it is newer than
	// the schema, no migrations lead from its version to the schema's, it lacks a
	// table or column of the schema at its version, or it is not a WatermelonDB
	// database. Nothing in the file was changed.
	ErrIncompatible = errors.New("client: database file is incompatible with the schema")
)

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
