-- Grants for the amiflow roles (roles.sql); run as the owner after every `amiflow db migrate`. Idempotent.
-- A table that a deployment does not have yet (a later migration) is skipped.
DO $$
DECLARE
    t text;
    grants text[][] := ARRAY[
        -- role, privileges, tables
        -- ingest reads readings only to find duplicates and conflicts of what it writes (amiflow/db/writer.py)
        ['amiflow_ingest',   'SELECT',                 'meters,channels,quality_flags,sources,storage_config,poll_state,readings'],
        -- the poller and the wM-Bus receiver decrypt telegrams with the meters' AES keys (0016); nobody else reads them
        ['amiflow_ingest',   'SELECT',                 'meter_keys'],
        ['amiflow_ingest',   'INSERT',                 'readings,reading_conflicts,quarantine,meter_events,channels,meters,clock_checks,commissioning_reports,poll_state'],
        ['amiflow_ingest',   'UPDATE',                 'meters,poll_state'],
        ['amiflow_billing',  'SELECT',                 'meters,channels,readings,meter_events,quality_flags,sources,storage_config,tariffs'],
        ['amiflow_billing',  'SELECT,INSERT,UPDATE',   'bills,bill_lines,bill_determinants,bill_runs,bill_run_blocks,bill_run_skips,meter_cycles,vee_rules,vee_results,vee_intervals,outbox'],
        ['amiflow_bridge',   'SELECT',                 'meters,bills,v_bills,tariffs'],
        ['amiflow_bridge',   'SELECT,INSERT,UPDATE',   'outbox,accounts,payments,balances,account_policy,notices,disconnect_decisions,meter_commands,prepaid_accounts'],
        ['amiflow_readonly', 'SELECT',                 'v_readings,v_daily_energy,v_quarantine,v_bills,v_outbox,quality_flags,sources']
    ];
    g text[];
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA amiflow TO amiflow_ingest, amiflow_billing, amiflow_bridge, amiflow_readonly';
    FOREACH g SLICE 1 IN ARRAY grants LOOP
        FOREACH t IN ARRAY string_to_array(g[3], ',') LOOP
            IF to_regclass('amiflow.' || t) IS NOT NULL THEN
                EXECUTE format('GRANT %s ON amiflow.%I TO %I', g[2], t, g[1]);
            END IF;
        END LOOP;
    END LOOP;
    EXECUTE 'GRANT USAGE ON ALL SEQUENCES IN SCHEMA amiflow TO amiflow_ingest, amiflow_billing, amiflow_bridge';
    -- the writer makes a missing native partition through this owner's-rights function (migration 0015)
    IF to_regprocedure('amiflow.ensure_partitions(timestamptz, timestamptz)') IS NOT NULL THEN
        EXECUTE 'GRANT EXECUTE ON FUNCTION amiflow.ensure_partitions(timestamptz, timestamptz) TO amiflow_ingest';
    END IF;
    -- the views run with their owner's rights, so readonly sees the views and nothing behind them
END $$;
