-- SML push meters (German/Austrian eHZ, EDL21): their own reading source (amiflow.types.Source.SML = 10), and the
-- registry accepts the protocols of the contract's meter URIs: sml (sml+serial://, sml+tcp://) and, so that a
-- second migration need not redefine the same constraint, mbus (mbus+serial://, mbus+tcp://).
INSERT INTO amiflow.sources VALUES (10, 'sml') ON CONFLICT (id) DO NOTHING;

ALTER TABLE amiflow.meters DROP CONSTRAINT meters_protocol_check;
ALTER TABLE amiflow.meters ADD CONSTRAINT meters_protocol_check
    CHECK (protocol IN ('mqtt', 'dlms', 'iec62056-21', 'modbus', 'p1', 'sml', 'mbus'));
