-- MQTT ingest (ingest/): when a meter's online/offline state last changed, so that a status message that arrives
-- late (a retained last will replayed after a newer "online") never overwrites a newer state.
ALTER TABLE amiflow.meters ADD COLUMN IF NOT EXISTS state_at timestamptz;
