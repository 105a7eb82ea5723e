-- Per-meter AES-128 keys of M-Bus and wireless M-Bus meters (OMS security mode 5, EN 13757-7), in a table of their own
-- so that only the roles that decrypt telegrams may read them: the poller and the wM-Bus receiver run as the ingest
-- role (deploy/postgres/grants.sql grants it SELECT); billing, the bridge and dashboards never see a key, and no
-- view shows one. The owner writes them (`amiflow meters add --key-file`, `meters set-key`, `meters import` with a
-- key column). A key is exactly 16 bytes; it goes with its meter.
CREATE TABLE IF NOT EXISTS amiflow.meter_keys (
    meter_id    integer PRIMARY KEY REFERENCES amiflow.meters (id) ON DELETE CASCADE,
    aes_key     bytea NOT NULL CHECK (octet_length(aes_key) = 16),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON amiflow.meter_keys FROM PUBLIC;

-- Wireless M-Bus meters (protocol wmbus, URI wmbus://IDENT?manufacturer=MFR): heard by `amiflow ingest wmbus`,
-- never polled; their readings have their own source (amiflow.types.Source.WMBUS = 12).
INSERT INTO amiflow.sources VALUES (12, 'wmbus') ON CONFLICT (id) DO NOTHING;
ALTER TABLE amiflow.meters DROP CONSTRAINT meters_protocol_check;
ALTER TABLE amiflow.meters ADD CONSTRAINT meters_protocol_check
    CHECK (protocol IN ('mqtt', 'dlms', 'iec62056-21', 'modbus', 'p1', 'sml', 'mbus', 'wmbus'));
