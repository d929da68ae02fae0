// Package melonsync holds the domain of the melonsync sync system: the wire types of
// WatermelonDB's pull/push protocol and the coded errors every part returns.
//
// Sub-packages hold the technology: schema (WatermelonDB schemas and migrations),
// server (the protocol rules), sqlite and postgres (stores), http (the server's HTTP
// side), client (the Go offline-first database and its Synchronize) and transport
// (the Go client's HTTP transport).
package melonsync

// Reserved names: neither a table nor a column may use them.
const (
	KeyLastPulledAt            = "__watermelon_last_pulled_at"
	KeyLastPulledSchemaVersion = "__watermelon_last_pulled_schema_version"
)
