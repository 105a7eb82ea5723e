-- SML push meters (German/Austrian eHZ, EDL21) get their own reading source, as amiflow.types.Source.SML = 10.
INSERT INTO amiflow.sources VALUES (10, 'sml') ON CONFLICT (id) DO NOTHING;
