-- Versions without a lock held across commit (DESIGN.md, "Versions: the gate").
--
-- Writers no longer take one exclusive clock lock each, held through COMMIT (which
-- serialised every commit's WAL flush). A writer takes ROW EXCLUSIVE on __melon_gate
-- before it draws its version, and keeps it to the end of its transaction; writers do
-- not conflict with one another, so they commit in parallel. A pull takes SHARE on
-- the gate for a moment, in a savepoint, before its snapshot: it waits for the
-- writers in flight and holds new ones back while it reads the clock and its
-- snapshot is taken. The clock is the sequence's last value: no commit log to prune.

-- Holds no rows: only its lock is used.
CREATE TABLE __melon_gate ();

SELECT setval('__melon_version_seq', greatest(
	(SELECT last_value FROM __melon_version_seq),
	(SELECT coalesce(max(version), 1) FROM __melon_commits)));

-- Processes of an older melonsync read the clock from this table: without it they
-- fail (503) rather than answer pulls under rules that no longer hold.
DROP TABLE __melon_commits;

-- __melon_version(instance, schema) returns this transaction's version, drawing it
-- from the sequence on the first call, after taking the gate (ROW EXCLUSIVE, held to
-- the end of the transaction). The version is kept in the transaction-local setting
-- melonsync.v_<instance>, which is how the triggers tell melonsync's own writes (and
-- rows already stamped) from writes that still need a version.
CREATE OR REPLACE FUNCTION __melon_version(inst text, sch text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	setting text := 'melonsync.v_' || inst;
	v bigint := nullif(current_setting(setting, true), '')::bigint;
BEGIN
	IF v IS NOT NULL THEN
		RETURN v;
	END IF;
	EXECUTE format('LOCK TABLE %I.__melon_gate IN ROW EXCLUSIVE MODE', sch);
	v := nextval(format('%I.__melon_version_seq', sch)::regclass);
	PERFORM set_config(setting, v::text, true);
	RETURN v;
END
$fn$;

REVOKE ALL ON FUNCTION __melon_version(text, text) FROM PUBLIC;
