-- Least-privilege roles for amiflow (run once as a superuser, after `amiflow db migrate` by amiflow_owner).
-- ingest may only add readings and what goes with them; the bridge may not touch readings at all; billing reads
-- readings and writes bills; dashboards read the contract views only.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'amiflow_owner') THEN CREATE ROLE amiflow_owner LOGIN; END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'amiflow_ingest') THEN CREATE ROLE amiflow_ingest LOGIN; END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'amiflow_billing') THEN CREATE ROLE amiflow_billing LOGIN; END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'amiflow_bridge') THEN CREATE ROLE amiflow_bridge LOGIN; END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'amiflow_readonly') THEN CREATE ROLE amiflow_readonly LOGIN; END IF;
END $$;
