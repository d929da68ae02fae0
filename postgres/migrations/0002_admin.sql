-- The operator's bookkeeping: the sync log, one summary row per device, and per-user
-- flags. No pull or push reads or writes these tables in its transaction; the sync
-- log is written in batches after the fact (see admin/DESIGN.md).

CREATE TABLE __melon_sync_log (
	id             bigserial PRIMARY KEY,
	at             bigint NOT NULL,
	user_id        text NOT NULL,
	device         text NOT NULL,
	kind           text NOT NULL,
	route          text NOT NULL,
	schema_version integer NOT NULL,
	last_pulled_at bigint NOT NULL,
	"timestamp"    bigint NOT NULL,
	tables         jsonb NOT NULL,
	conflicts      jsonb NOT NULL,
	rejected       jsonb NOT NULL,
	n_records      integer NOT NULL,
	n_conflicts    integer NOT NULL,
	n_rejected     integer NOT NULL,
	strategy       text NOT NULL,
	status         integer NOT NULL,
	code           text NOT NULL,
	duration_ms    double precision NOT NULL
);
CREATE INDEX __melon_sync_log_user ON __melon_sync_log (user_id, device, id);
CREATE INDEX __melon_sync_log_at ON __melon_sync_log (at);

CREATE TABLE __melon_devices (
	user_id           text NOT NULL,
	device            text NOT NULL,
	first_seen        bigint NOT NULL DEFAULT 0,
	last_seen         bigint NOT NULL DEFAULT 0,
	last_pull         bigint NOT NULL DEFAULT 0,
	last_push         bigint NOT NULL DEFAULT 0,
	last_pulled_at    bigint NOT NULL DEFAULT 0,
	last_timestamp    bigint NOT NULL DEFAULT 0,
	schema_version    integer NOT NULL DEFAULT 0,
	pulls             bigint NOT NULL DEFAULT 0,
	pushes            bigint NOT NULL DEFAULT 0,
	rejected          bigint NOT NULL DEFAULT 0,
	conflicts_in_row  integer NOT NULL DEFAULT 0,
	last_status       integer NOT NULL DEFAULT 0,
	last_code         text NOT NULL DEFAULT '',
	replace_requested bigint NOT NULL DEFAULT 0,
	replaced_at       bigint NOT NULL DEFAULT 0,
	revoked_at        bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (user_id, device)
);
CREATE INDEX __melon_devices_seen ON __melon_devices (last_seen);

CREATE TABLE __melon_admin_users (
	user_id           text PRIMARY KEY,
	replace_requested bigint NOT NULL DEFAULT 0
);
