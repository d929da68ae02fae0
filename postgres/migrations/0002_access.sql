-- Access rules (SPEC §6; server/ACCESS.md): what pulls need to tell grants and
-- revocations from other changes.
--
-- Per-table trigger arguments (set by Prepare): TG_ARGV[0] instance, TG_ARGV[1] the
-- table's rule ('' owner, 'g' group, 'p' public), TG_ARGV[2] the column holding a
-- row's group ('id' for "by": "id"; '' when none), TG_ARGV[3] the user column of a
-- members table (''). Triggers created before this file have only TG_ARGV[0] and
-- behave as owner tables.

-- Tombstones keep the group and (membership rows) the user of the deleted row.
ALTER TABLE __melon_tombstones ADD COLUMN grp text NOT NULL DEFAULT '';
ALTER TABLE __melon_tombstones ADD COLUMN usr text NOT NULL DEFAULT '';
CREATE INDEX __melon_tombstones_grp_version ON __melon_tombstones (tbl, grp, version) WHERE grp <> '';
CREATE INDEX __melon_tombstones_usr_version ON __melon_tombstones (tbl, usr, version) WHERE usr <> '';

-- Every change of a group table row's group (or of a membership row's group or
-- user), by melonsync or by plain SQL. version 0: pending until commit.
CREATE TABLE __melon_moves (
	tbl      text   NOT NULL,
	id       text   NOT NULL,
	version  bigint NOT NULL,
	from_grp text   NOT NULL,
	to_grp   text   NOT NULL,
	from_usr text   NOT NULL DEFAULT '',
	to_usr   text   NOT NULL DEFAULT '',
	PRIMARY KEY (tbl, id, version)
);
CREATE INDEX __melon_moves_from_grp ON __melon_moves (tbl, from_grp, version);
CREATE INDEX __melon_moves_from_usr ON __melon_moves (tbl, from_usr, version) WHERE from_usr <> '';
CREATE INDEX __melon_moves_to_usr ON __melon_moves (tbl, to_usr, version) WHERE to_usr <> '';
CREATE INDEX __melon_moves_version ON __melon_moves (version);

-- Deferred AFTER INSERT OR UPDATE on a synced table, for pending rows: at commit, take
-- the transaction's version and stamp the row; notify its owner, and for group and
-- public tables the table and group (and a membership row's user).
CREATE OR REPLACE FUNCTION __melon_stamp() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	v bigint;
	who text;
	r jsonb;
	kind text := CASE WHEN TG_NARGS > 3 THEN TG_ARGV[1] ELSE '' END;
BEGIN
	EXECUTE format('SELECT %I.__melon_version($1, $2)', TG_TABLE_SCHEMA) INTO v USING TG_ARGV[0], TG_TABLE_SCHEMA;
	EXECUTE format('UPDATE %I.%I SET __version = $1, __created_version = CASE WHEN __created_version = 0 THEN $1 ELSE __created_version END'
		' WHERE id = $2 AND __version = 0 RETURNING __owner', TG_TABLE_SCHEMA, TG_TABLE_NAME)
		INTO who USING v, NEW.id;
	IF who IS NOT NULL THEN
		PERFORM pg_notify('melonsync_' || TG_ARGV[0], v::text || ' ' || who);
		IF kind <> '' THEN
			r := to_jsonb(NEW);
			PERFORM pg_notify('melonsync_' || TG_ARGV[0] || '_t', v::text || ' ' || TG_TABLE_NAME || ' ' ||
				CASE WHEN TG_ARGV[2] = '' THEN '' ELSE coalesce(r ->> TG_ARGV[2], '') END);
			IF TG_ARGV[3] <> '' AND coalesce(r ->> TG_ARGV[3], '') <> '' THEN
				PERFORM pg_notify('melonsync_' || TG_ARGV[0], v::text || ' ' || (r ->> TG_ARGV[3]));
			END IF;
		END IF;
	END IF;
	RETURN NULL;
END
$fn$;

-- AFTER DELETE (per statement) on a synced table: every deleted row becomes a
-- tombstone (keeping its group and user), with this transaction's version when it
-- has one (melonsync's own deletes, with the pushing device), else pending until commit.
CREATE OR REPLACE FUNCTION __melon_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	v bigint := nullif(current_setting('melonsync.v_' || TG_ARGV[0], true), '')::bigint;
	dev text := '';
	grp text := '''''';
	usr text := '''''';
BEGIN
	IF v IS NOT NULL THEN
		dev := coalesce(current_setting('melonsync.device', true), '');
	END IF;
	IF TG_NARGS > 3 AND TG_ARGV[2] <> '' THEN
		grp := format('coalesce(g.%I::text, '''')', TG_ARGV[2]);
	END IF;
	IF TG_NARGS > 3 AND TG_ARGV[3] <> '' THEN
		usr := format('coalesce(g.%I::text, '''')', TG_ARGV[3]);
	END IF;
	EXECUTE format('INSERT INTO %I.__melon_tombstones AS t (tbl, id, owner, version, created_version, created_device, device, grp, usr)'
		' SELECT $1, g.id, g.__owner, $2, g.__created_version, g.__created_device, $3, %s, %s FROM __melon_gone g'
		' ON CONFLICT (tbl, id) DO UPDATE SET owner = excluded.owner, version = excluded.version,'
		' created_version = excluded.created_version, created_device = excluded.created_device, device = excluded.device,'
		' grp = excluded.grp, usr = excluded.usr',
		TG_TABLE_SCHEMA, grp, usr) USING TG_TABLE_NAME, coalesce(v, 0), dev;
	RETURN NULL;
END
$fn$;

-- Deferred AFTER INSERT OR UPDATE on __melon_tombstones, for pending tombstones.
CREATE OR REPLACE FUNCTION __melon_stamp_tombstone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	v bigint;
	who text;
	g text;
	u text;
BEGIN
	EXECUTE format('SELECT %I.__melon_version($1, $2)', TG_TABLE_SCHEMA) INTO v USING TG_ARGV[0], TG_TABLE_SCHEMA;
	EXECUTE format('UPDATE %I.__melon_tombstones SET version = $1 WHERE tbl = $2 AND id = $3 AND version = 0 RETURNING owner, grp, usr', TG_TABLE_SCHEMA)
		INTO who, g, u USING v, NEW.tbl, NEW.id;
	IF who IS NOT NULL THEN
		PERFORM pg_notify('melonsync_' || TG_ARGV[0], v::text || ' ' || who);
		PERFORM pg_notify('melonsync_' || TG_ARGV[0] || '_t', v::text || ' ' || NEW.tbl || ' ' || g);
		IF u <> '' THEN
			PERFORM pg_notify('melonsync_' || TG_ARGV[0], v::text || ' ' || u);
		END IF;
	END IF;
	RETURN NULL;
END
$fn$;

-- BEFORE UPDATE on a group table whose group (or user) column changes: record the
-- move, with this transaction's version when it has one, else pending until commit.
-- Arguments: instance, group column, user column ('' when none).
CREATE FUNCTION __melon_move() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	v bigint := nullif(current_setting('melonsync.v_' || TG_ARGV[0], true), '')::bigint;
	o jsonb := to_jsonb(OLD);
	n jsonb := to_jsonb(NEW);
	og text := coalesce(o ->> TG_ARGV[1], '');
	ng text := coalesce(n ->> TG_ARGV[1], '');
	ou text := '';
	nu text := '';
BEGIN
	IF TG_ARGV[2] <> '' THEN
		ou := coalesce(o ->> TG_ARGV[2], '');
		nu := coalesce(n ->> TG_ARGV[2], '');
	END IF;
	IF og <> ng OR ou <> nu THEN
		EXECUTE format('INSERT INTO %I.__melon_moves (tbl, id, version, from_grp, to_grp, from_usr, to_usr) VALUES ($1, $2, $3, $4, $5, $6, $7)'
			' ON CONFLICT (tbl, id, version) DO UPDATE SET to_grp = excluded.to_grp, to_usr = excluded.to_usr', TG_TABLE_SCHEMA)
			USING TG_TABLE_NAME, NEW.id, coalesce(v, 0), og, ng, ou, nu;
	END IF;
	RETURN NEW;
END
$fn$;

-- Deferred AFTER INSERT on __melon_moves, for pending moves: stamp them at commit and
-- tell the group (and user) the row left.
CREATE FUNCTION __melon_stamp_move() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	v bigint;
	g text;
	u text;
BEGIN
	EXECUTE format('SELECT %I.__melon_version($1, $2)', TG_TABLE_SCHEMA) INTO v USING TG_ARGV[0], TG_TABLE_SCHEMA;
	EXECUTE format('UPDATE %I.__melon_moves SET version = $1 WHERE tbl = $2 AND id = $3 AND version = 0 RETURNING from_grp, from_usr', TG_TABLE_SCHEMA)
		INTO g, u USING v, NEW.tbl, NEW.id;
	IF g IS NOT NULL THEN
		PERFORM pg_notify('melonsync_' || TG_ARGV[0] || '_t', v::text || ' ' || NEW.tbl || ' ' || g);
		IF u <> '' THEN
			PERFORM pg_notify('melonsync_' || TG_ARGV[0], v::text || ' ' || u);
		END IF;
	END IF;
	RETURN NULL;
END
$fn$;

DO $do$
BEGIN
	EXECUTE format('CREATE CONSTRAINT TRIGGER __melon_stamp AFTER INSERT OR UPDATE ON __melon_moves'
		' DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.version = 0)'
		' EXECUTE FUNCTION __melon_stamp_move(%L)', (SELECT value FROM __melon_meta WHERE key = 'instance'));
END
$do$;
