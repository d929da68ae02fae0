// Package client is melonsync's Go client: a local, offline-first database stored in
// WatermelonDB's own SQLite file layout, with WatermelonDB's change tracking (_status,
// _changed), its local key/value storage, change notifications, and the primitives that
// Synchronize builds on (fetch local changes, apply remote changes, mark as synced).
//
// A file written by a WatermelonDB app's SQLite adapter opens here, and a file written
// here opens in WatermelonDB. See DESIGN.md next to this file for connections,
// transactions and the file layout.
package client
