-- Gaps of the store's history (server/history.go): versions between "after" and
-- "before" (both excluded) that no history of this schema handed out, recorded at
-- each process start (at: ms since the epoch). A pull whose lastPulledAt lies in one
-- comes from a history the store no longer has (a restored backup) and gets a
-- replacement answer.

CREATE TABLE __melon_gaps (
	after  bigint NOT NULL,
	before bigint NOT NULL,
	at     bigint NOT NULL,
	PRIMARY KEY (after, before)
);
