-- Packed days: a read-optimised copy of the interval channels, one row per meter, channel and UTC day, which the
-- reader (amiflow/db/reader.py) scans as few wide rows instead of 96 narrow ones. amiflow.readings stays the source
-- of truth (the writer, the unique key, v_readings); packs are derived from it by amiflow/db/packing.py (`amiflow db
-- maintain`, the serve "storage" component) and invalidated when the readings of a packed day change:
--   * the writer calls amiflow.pack_guard() in its transaction (new rows in a packed day),
--   * row triggers catch UPDATE and DELETE, a statement trigger TRUNCATE.
-- Day d holds the intervals that END in (d 00:00 UTC, d+1 00:00 UTC]; slot i (0..95) is the interval ending at
-- d 00:00 + (i + 1) x 15 min. `value` is 96 little-endian float8 (NaN = no reading; stored values are always finite),
-- `quality` 96 little-endian int2 (the readings' quality bits). A meter-day whose readings are not all on the 15-min
-- grid, or whose quality does not fit int2, is not packed (the reader reads its rows).
-- Concurrency: a writer holds pg_advisory_xact_lock_shared(1634560368, day) for every day it writes; the packer holds
-- the exclusive lock while it reads a day's rows and writes its packs, so a pack never misses a committed reading.
CREATE TABLE amiflow.packed_days (
    meter_id    integer NOT NULL,
    channel_id  smallint NOT NULL,
    day         date NOT NULL,
    readings    smallint NOT NULL CHECK (readings BETWEEN 1 AND 96),
    value       bytea NOT NULL CHECK (length(value) = 768),
    quality     bytea NOT NULL CHECK (length(quality) = 192),
    PRIMARY KEY (meter_id, channel_id, day)
);
-- inline, uncompressed: 1 kB rows are below the TOAST threshold anyway, and the reader copies them out as they are
ALTER TABLE amiflow.packed_days ALTER COLUMN value SET STORAGE plain, ALTER COLUMN quality SET STORAGE plain;

-- Days the packer has started (a row exists from the first pack of the day on): writes into these days invalidate.
CREATE TABLE amiflow.pack_log (
    day         date PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    packs       integer NOT NULL DEFAULT 0,
    readings    bigint NOT NULL DEFAULT 0
);

-- Meter-days of packed days whose readings changed after packing: repacked by the next maintenance pass.
CREATE TABLE amiflow.pack_dirty (
    meter_id    integer NOT NULL,
    channel_id  smallint NOT NULL,
    day         date NOT NULL,
    marked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, meter_id, channel_id)
);

-- Storage maintenance passes (`amiflow db maintain`, the serve storage component): what each did.
CREATE TABLE amiflow.maintenance_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    task        text NOT NULL,
    ok          boolean NOT NULL DEFAULT false,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX maintenance_runs_task_idx ON amiflow.maintenance_runs (task, started_at DESC);

-- The writer's guard, in its transaction: share-lock the days written, and where one of them has packs, drop the
-- packs of the (meter, channel) runs written and mark those meter-days dirty. Runs are (meter, channel, first ts,
-- last ts) in epoch seconds; days are UTC day numbers since 1970-01-01. Returns the meter-days marked.
-- SECURITY DEFINER: a writer role with INSERT on readings only still keeps the packs exact.
CREATE FUNCTION amiflow.pack_guard(days integer[], m integer[], c smallint[], lo bigint[], hi bigint[])
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, amiflow AS $$
DECLARE
    d integer;
    hit integer[];
    marked integer := 0;
BEGIN
    FOREACH d IN ARRAY days LOOP
        PERFORM pg_advisory_xact_lock_shared(1634560368, d);
    END LOOP;
    -- a new statement, a new snapshot: sees every pack committed while this transaction waited for the locks
    SELECT array_agg(l.day - DATE '1970-01-01') INTO hit
    FROM amiflow.pack_log l WHERE l.day = ANY (SELECT DATE '1970-01-01' + x FROM unnest(days) x);
    IF hit IS NULL THEN
        RETURN 0;
    END IF;
    WITH stale AS (
        SELECT g.m AS meter_id, g.c AS channel_id, DATE '1970-01-01' + h AS day
        FROM unnest(m, c, lo, hi) AS g(m, c, lo, hi), unnest(hit) AS h
        WHERE h BETWEEN (g.lo - 1) / 86400 AND (g.hi - 1) / 86400
    ), dropped AS (
        DELETE FROM amiflow.packed_days p USING stale s
        WHERE p.meter_id = s.meter_id AND p.channel_id = s.channel_id AND p.day = s.day
    )
    INSERT INTO amiflow.pack_dirty (meter_id, channel_id, day) SELECT meter_id, channel_id, day FROM stale
        ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS marked = ROW_COUNT;
    RETURN marked;
END $$;

-- One changed reading (UPDATE / DELETE, e.g. a manual correction): its packed day is dropped and marked dirty.
CREATE FUNCTION amiflow.pack_stale_reading(p_meter integer, p_channel smallint, p_ts timestamptz)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, amiflow AS $$
DECLARE
    d date := ((p_ts - INTERVAL '1 microsecond') AT TIME ZONE 'UTC')::date;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1634560368, d - DATE '1970-01-01');
    IF EXISTS (SELECT 1 FROM amiflow.pack_log WHERE day = d) THEN
        DELETE FROM amiflow.packed_days WHERE meter_id = p_meter AND channel_id = p_channel AND day = d;
        INSERT INTO amiflow.pack_dirty (meter_id, channel_id, day) VALUES (p_meter, p_channel, d)
            ON CONFLICT DO NOTHING;
    END IF;
END $$;

CREATE FUNCTION amiflow.readings_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, amiflow AS $$
BEGIN
    PERFORM amiflow.pack_stale_reading(OLD.meter_id, OLD.channel_id, OLD.ts);
    IF TG_OP = 'UPDATE' AND (NEW.meter_id, NEW.channel_id, NEW.ts) IS DISTINCT FROM (OLD.meter_id, OLD.channel_id, OLD.ts)
    THEN
        PERFORM amiflow.pack_stale_reading(NEW.meter_id, NEW.channel_id, NEW.ts);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION amiflow.readings_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, amiflow AS $$
BEGIN
    TRUNCATE amiflow.packed_days, amiflow.pack_log, amiflow.pack_dirty;
    RETURN NULL;
END $$;

CREATE TRIGGER readings_pack_stale AFTER UPDATE OR DELETE ON amiflow.readings
    FOR EACH ROW EXECUTE FUNCTION amiflow.readings_changed();
CREATE TRIGGER readings_pack_truncate BEFORE TRUNCATE ON amiflow.readings
    FOR EACH STATEMENT EXECUTE FUNCTION amiflow.readings_truncated();
