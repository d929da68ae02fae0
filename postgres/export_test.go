package postgres

import "time"

// SetWatchPing changes how often Watch checks its connection, for tests.
func SetWatchPing(d time.Duration) (restore func()) {
	old := watchPing
	watchPing = d
	return func() { watchPing = old }
}
