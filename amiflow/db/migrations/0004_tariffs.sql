-- Tariffs: one row per tariff version, the validated amiflow form (rating.tariff.TariffSpec) as JSON. Versions are
-- immutable: importing the same (id, version) with a different body is refused; a change is a new version.
CREATE TABLE amiflow.tariffs (
    id             text        NOT NULL,
    version        integer     NOT NULL CHECK (version >= 1),
    name           text        NOT NULL DEFAULT '',
    effective_from date        NOT NULL,
    effective_to   date,                      -- exclusive; NULL = open-ended
    source         text        NOT NULL CHECK (source IN ('amiflow', 'urdb')),
    source_ref     text,                      -- e.g. the URDB rate URI
    body           jsonb       NOT NULL,
    imported_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, version),
    CHECK (effective_to IS NULL OR effective_to > effective_from)
);
CREATE INDEX tariffs_effective_idx ON amiflow.tariffs (id, effective_from);
