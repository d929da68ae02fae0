-- __melon_raced(tbl, stale, v) returns v, or raises SQLSTATE MS409 (DETAIL: the
-- table, a tab, the ids joined by commas) when stale is not empty: a push's writes
-- found rows that appeared after its Lookup (tx.go, insert). Raising, rather than
-- telling the caller, aborts the transaction in the same round trip, so that the
-- push's COMMIT can travel with its writes.
CREATE FUNCTION __melon_raced(tbl text, stale text[], v bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
	IF cardinality(stale) > 0 THEN
		RAISE EXCEPTION 'melonsync: records of % changed by another transaction meanwhile', tbl
			USING ERRCODE = 'MS409', DETAIL = tbl || E'\t' || array_to_string(stale, ',');
	END IF;
	RETURN v;
END
$fn$;
