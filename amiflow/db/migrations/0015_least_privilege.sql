-- Least privilege (docs/security.md, deploy/postgres/grants.sql): the writer creates native partitions on demand
-- through amiflow.ensure_partitions, which moves rows out of the default partition and creates a table: work that a
-- writer role with INSERT on readings only may not do itself. The function now runs with its owner's rights
-- (SECURITY DEFINER, as the packed-days guard of 0013), on a fixed search path so that it cannot be redirected, and
-- only roles granted EXECUTE (grants.sql: amiflow_ingest) and the owner may call it.
ALTER FUNCTION amiflow.ensure_partitions(timestamptz, timestamptz)
    SECURITY DEFINER SET search_path = pg_catalog, amiflow, pg_temp;
REVOKE EXECUTE ON FUNCTION amiflow.ensure_partitions(timestamptz, timestamptz) FROM PUBLIC;
