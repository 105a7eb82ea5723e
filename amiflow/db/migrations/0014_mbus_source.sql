-- M-Bus meters (heat, water, gas, electricity; EN 13757) read by the poller: their own reading source
-- (amiflow.types.Source.MBUS = 11). The registry already accepts protocol mbus (0008).
INSERT INTO amiflow.sources VALUES (11, 'mbus') ON CONFLICT (id) DO NOTHING;
