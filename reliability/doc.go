// Package reliability holds melonsync's system tests: random histories of several Go
// clients and one server, with faults, checked against a model of the protocol;
// concurrent histories checked for consistency; and a soak. It has no code of its
// own; run it with go test ./reliability.
//
// # Concurrent histories (history_test.go, history_check_test.go)
//
// Several devices of the same two users act at once for a few seconds against the real
// HTTP handler over a real store (a SQLite file; a fresh PostgreSQL schema): three Go
// clients per user (client.Synchronize: local creates, updates and deletions of the
// user's few records, then a sync; a 409 is retried by the next sync) and one device
// per user that speaks HTTP by hand — it pushes with a stale lastPulledAt, sends only
// some columns of an updated record, pulls from old timestamps, and after a 409 pulls
// on and pushes again. Every pull and push is recorded with the time it was sent and
// the time its whole answer was read. At the end every Go device syncs alone until
// none has anything to push, and must then hold exactly its user's data on the server
// (a last full pull, itself part of the history).
//
// The checker (porcupine, a linearizability checker) looks for one serial order of the
// operations, consistent with real time (an operation that ended before another began
// comes first), in which a sequential model of SPEC §3 gives every recorded answer:
//
//   - The model's state is the user's records (values, alive or deleted, the step and
//     device of their creation and of their last change) and the cuts: for each
//     timestamp a pull handed out, how many pushes had been applied then.
//   - A push with lastPulledAt L conflicts on every record whose last change came
//     after the cut L names, from another device (push rule 5), on an updated record
//     the server deleted (rule 3) and on a created one deleted after L (rule 4). A 409
//     must list exactly those ids and change nothing; a 200 is only possible when
//     there are none, and then the push applies in one step (rule 1): records created
//     or, when they exist, updated column by column with the columns sent (rules 2
//     and 6), deletions of live records (deleting a missing one changes nothing). A
//     push whose answer was lost or was 503 may have applied or not.
//   - A pull with lastPulledAt null must answer every live record as created; with L,
//     exactly the records changed after the cut L names — deleted ones by id, the
//     others with their current values, "created" only when created after L by
//     another device (pull rules 1 and 4). Its timestamp then names the current state:
//     one timestamp never names two states and a higher one never an older state, so
//     passing it back yields exactly what commits later (rule 2), and each answer is
//     one snapshot (rule 3).
//
// So a push acknowledged before a pull began is in that pull or in the pulls before
// it on the device's chain; no update is lost without a 409 (two pushes based on one
// state that change one record: the second gets 409 unless it was based on a pull
// that saw the first, or comes from the same device); and a pull's changes since L
// are exactly the effects of the pushes between the two cuts. Besides, across users:
// every timestamp is a positive integer below 2^53 and a pull's is never smaller than
// one handed out before the pull was sent (rule 2). The checker assumes nothing SPEC
// does not say: not that a push's timestamp is its version (only pulls' timestamps
// name cuts), nor any order among concurrent operations.
//
// Users share no records, so each user's operations are checked on their own. The
// checker has teeth: TestHistoryChecker feeds it small histories it must refuse (a
// lost update, a missed push, a 409 without a reason, a timestamp reused or going
// back), and TestHistoryCheckerCatchesBrokenStores runs real histories over a store
// that hands out a pull timestamp newer than its snapshot, and over one that skips the
// 409 check: the checker must refuse them.
//
// MELONSYNC_HISTORIES=N runs N histories per store (default 3, about 4 s each).
//
// # Soak (soak_test.go)
//
// Twelve Go devices of six users write and sync steadily (creations and deletions at
// about the same rate, so tombstones keep coming while the data stays small) against
// the server as melonsync serve runs it (device registry, a bounded sync log). Every
// quarter of a short retention (a twelfth of the run) tombstones older than the
// retention are purged, the bound being the clock a pull saw a retention ago; three
// devices go offline for 1.5 retentions, writing locally, and come back: when the
// server purged past their lastPulledAt their first pull must be a replacement, and at
// the end every device must hold exactly its user's data. Ten times during the run the
// test samples the Go heap (after a GC), RSS, goroutines, the SQLite file and WAL
// sizes or PostgreSQL's bookkeeping tables (pg_total_relation_size: commits,
// tombstones, moves, sync log, devices, and the synced tables), p50/p99 of pulls and
// pushes, and a CPU probe; it prints the series and fails when the last intervals
// outgrow the early steady state (medians of three: 2× for sizes; 3× for latencies
// scaled to the early machine speed, compared only over intervals of 10 s or more,
// p99 only with 1000 requests per interval). On PostgreSQL the test vacuums the
// tables each interval, standing in for autovacuum, which the test machine has off
// (MELONSYNC_SOAK_NO_VACUUM=1 to watch them grow without it). MELONSYNC_SOAK=5m sets
// the duration (default 12 s).
package reliability
