// Package reliability holds melonsync's system tests: random histories of several Go
// clients and one server, with faults, checked against a model of the protocol.
// It has no code of its own; run it with go test ./reliability.
package reliability
