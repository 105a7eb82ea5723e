-- API keys of the HTTP API (docs/security.md): each opens the routes of one role; a customer key one account only.
-- Only the SHA-256 of a key is stored (a key is 256 random bits, so a fast hash is enough and lets the lookup use
-- an index); `prefix` is the key's first characters, shown by `amiflow api-keys list` to tell keys apart.
CREATE TABLE amiflow.api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    role        text NOT NULL CHECK (role IN ('operator', 'billing', 'customer', 'metrics')),
    account     text CHECK (account <> ''),
    key_sha256  bytea NOT NULL UNIQUE CHECK (length(key_sha256) = 32),
    prefix      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz,
    CHECK ((role = 'customer') = (account IS NOT NULL))
);
