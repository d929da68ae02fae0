-- melonsync's own objects in the store's schema. Every name starts with "__", which no
-- WatermelonDB table or column may use. See DESIGN.md for the rules they implement.
--
-- The functions run as their owner (SECURITY DEFINER) with a fixed search_path and
-- name every object through the schema of the table that fired them: the team's own
-- roles need no rights on melonsync's tables, and their search_path does not matter.

-- Key-value settings: instance (a random id naming this store's clock lock and
-- settings), purged_through, jwt_secret.
CREATE TABLE __melon_meta (
	key   text PRIMARY KEY,
	value text NOT NULL
);
INSERT INTO __melon_meta (key, value) VALUES
	('instance', substr(md5(random()::text || clock_timestamp()::text), 1, 16)),
	('purged_through', '0');

-- One row per committed writing transaction (pruned to the newest by later writers):
-- the clock a snapshot sees is max(version).
CREATE TABLE __melon_commits (
	version bigint PRIMARY KEY
);
INSERT INTO __melon_commits (version) VALUES (floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint);

-- Versions are drawn from this sequence only under the clock lock. CACHE 1: values
-- cached per session would not be handed out in order across sessions.
CREATE SEQUENCE __melon_version_seq CACHE 1;
SELECT setval('__melon_version_seq', (SELECT max(version) FROM __melon_commits));

-- Deleted records of every synced table (tbl is the table's name). A record id is
-- either live in its table or here, never both.
CREATE TABLE __melon_tombstones (
	tbl             text   NOT NULL,
	id              text   NOT NULL,
	owner           text   NOT NULL,
	version         bigint NOT NULL,
	created_version bigint NOT NULL DEFAULT 0,
	created_device  text   NOT NULL DEFAULT '',
	device          text   NOT NULL DEFAULT '',
	PRIMARY KEY (tbl, id)
);
CREATE INDEX __melon_tombstones_owner_version ON __melon_tombstones (tbl, owner, version);
CREATE INDEX __melon_tombstones_version ON __melon_tombstones (version);

-- __melon_version(instance, schema) returns this transaction's version, allocating it
-- on the first call: it takes the clock lock (a transaction-scoped advisory lock, held
-- until commit or rollback), draws max(next value, now in ms) from the sequence and
-- records it in __melon_commits. The version is kept in the transaction-local setting
-- melonsync.v_<instance>, which is how the triggers tell melonsync's own writes (and
-- rows already stamped) from writes that still need a version.
CREATE FUNCTION __melon_version(inst text, sch text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	setting text := 'melonsync.v_' || inst;
	v bigint := nullif(current_setting(setting, true), '')::bigint;
	seq regclass;
BEGIN
	IF v IS NOT NULL THEN
		RETURN v;
	END IF;
	PERFORM pg_advisory_xact_lock(hashtextextended('melonsync:clock:' || inst, 0));
	seq := format('%I.__melon_version_seq', sch)::regclass;
	v := greatest(nextval(seq), floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint);
	PERFORM setval(seq, v);
	IF current_setting('transaction_isolation') = 'read committed' THEN
		-- Under the lock every older row is committed: keep only the newest. (A
		-- REPEATABLE READ or SERIALIZABLE writer leaves pruning to the next one.)
		EXECUTE format('DELETE FROM %I.__melon_commits WHERE version < $1', sch) USING v;
	END IF;
	EXECUTE format('INSERT INTO %I.__melon_commits (version) VALUES ($1)', sch) USING v;
	PERFORM set_config(setting, v::text, true);
	RETURN v;
END
$fn$;

-- BEFORE INSERT OR UPDATE on a synced table, for rows whose __version is not this
-- transaction's version (a write from outside melonsync, or a side effect such as an
-- ON UPDATE CASCADE). Outside a melonsync transaction the row is marked pending
-- (__version = 0) and gets its version at commit from __melon_stamp; inside one it
-- takes the transaction's version now.
CREATE FUNCTION __melon_before() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	v bigint := nullif(current_setting('melonsync.v_' || TG_ARGV[0], true), '')::bigint;
BEGIN
	IF TG_OP = 'UPDATE' THEN
		IF NEW.id IS DISTINCT FROM OLD.id THEN
			RAISE EXCEPTION 'melonsync: the id of a synced record cannot change (table %, id %)', TG_TABLE_NAME, OLD.id
				USING ERRCODE = 'feature_not_supported';
		END IF;
		NEW.__created_version := OLD.__created_version;
		NEW.__created_device := OLD.__created_device;
	ELSE
		NEW.__created_version := coalesce(v, 0);
		NEW.__created_device := '';
		EXECUTE format('DELETE FROM %I.__melon_tombstones WHERE tbl = $1 AND id = $2', TG_TABLE_SCHEMA)
			USING TG_TABLE_NAME, NEW.id;
	END IF;
	NEW.__version := coalesce(v, 0);
	NEW.__device := '';
	RETURN NEW;
END
$fn$;

-- Deferred AFTER INSERT OR UPDATE on a synced table, for pending rows: at commit, take
-- the transaction's version and stamp the row with it.
CREATE FUNCTION __melon_stamp() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	v bigint;
	who text;
BEGIN
	EXECUTE format('SELECT %I.__melon_version($1, $2)', TG_TABLE_SCHEMA) INTO v USING TG_ARGV[0], TG_TABLE_SCHEMA;
	EXECUTE format('UPDATE %I.%I SET __version = $1, __created_version = CASE WHEN __created_version = 0 THEN $1 ELSE __created_version END'
		' WHERE id = $2 AND __version = 0 RETURNING __owner', TG_TABLE_SCHEMA, TG_TABLE_NAME)
		INTO who USING v, NEW.id;
	IF who IS NOT NULL THEN
		PERFORM pg_notify('melonsync_' || TG_ARGV[0], v::text || ' ' || who);
	END IF;
	RETURN NULL;
END
$fn$;

-- AFTER DELETE (per statement) on a synced table: every deleted row becomes a
-- tombstone, with this transaction's version when it has one (melonsync's own
-- deletes, with the pushing device), else pending until commit.
CREATE FUNCTION __melon_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	v bigint := nullif(current_setting('melonsync.v_' || TG_ARGV[0], true), '')::bigint;
	dev text := '';
BEGIN
	IF v IS NOT NULL THEN
		dev := coalesce(current_setting('melonsync.device', true), '');
	END IF;
	EXECUTE format('INSERT INTO %I.__melon_tombstones AS t (tbl, id, owner, version, created_version, created_device, device)'
		' SELECT $1, g.id, g.__owner, $2, g.__created_version, g.__created_device, $3 FROM __melon_gone g'
		' ON CONFLICT (tbl, id) DO UPDATE SET owner = excluded.owner, version = excluded.version,'
		' created_version = excluded.created_version, created_device = excluded.created_device, device = excluded.device',
		TG_TABLE_SCHEMA) USING TG_TABLE_NAME, coalesce(v, 0), dev;
	RETURN NULL;
END
$fn$;

-- Deferred AFTER INSERT OR UPDATE on __melon_tombstones, for pending tombstones.
CREATE FUNCTION __melon_stamp_tombstone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	v bigint;
	who text;
BEGIN
	EXECUTE format('SELECT %I.__melon_version($1, $2)', TG_TABLE_SCHEMA) INTO v USING TG_ARGV[0], TG_TABLE_SCHEMA;
	EXECUTE format('UPDATE %I.__melon_tombstones SET version = $1 WHERE tbl = $2 AND id = $3 AND version = 0 RETURNING owner', TG_TABLE_SCHEMA)
		INTO who USING v, NEW.tbl, NEW.id;
	IF who IS NOT NULL THEN
		PERFORM pg_notify('melonsync_' || TG_ARGV[0], v::text || ' ' || who);
	END IF;
	RETURN NULL;
END
$fn$;

REVOKE ALL ON FUNCTION __melon_version(text, text) FROM PUBLIC;

-- TRUNCATE removes rows without row triggers: clients would never learn. Refuse it.
CREATE FUNCTION __melon_no_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
	RAISE EXCEPTION 'melonsync: TRUNCATE of synced table % would not reach clients; use DELETE', TG_TABLE_NAME
		USING ERRCODE = 'feature_not_supported';
END
$fn$;

DO $do$
BEGIN
	EXECUTE format('CREATE CONSTRAINT TRIGGER __melon_stamp AFTER INSERT OR UPDATE ON __melon_tombstones'
		' DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.version = 0)'
		' EXECUTE FUNCTION __melon_stamp_tombstone(%L)', (SELECT value FROM __melon_meta WHERE key = 'instance'));
END
$do$;
