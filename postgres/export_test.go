package postgres

import "time"

// SetWatchPing changes how often Watch checks its connection, for tests.
func SetWatchPing(d time.Duration) (restore func()) {
	old := watchPing
	watchPing = d
	return func() { watchPing = old }
}

// QueuedWrites is the number of WriteGrouped calls waiting for a group slot or a
// leader, for tests.
func (s *Store) QueuedWrites() int { return int(s.groups.waiting.Load()) }
