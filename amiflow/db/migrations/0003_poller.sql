-- The poller's state per meter (profile cursor, failures, circuit breaker), clock checks, commissioning reports.

CREATE TABLE amiflow.poll_state (
    meter_id         integer PRIMARY KEY REFERENCES amiflow.meters (id) ON DELETE CASCADE,
    last_profile_ts  timestamptz,          -- end of the last interval stored from the meter's load profile
    last_register_ts timestamptz,          -- for meters without a profile: the last register read ...
    last_register_wh double precision,     -- ... and its value, to derive interval energy from deltas
    last_attempt_at  timestamptz,
    last_success_at  timestamptz,
    failures         integer NOT NULL DEFAULT 0,
    polls            bigint NOT NULL DEFAULT 0,
    successes        bigint NOT NULL DEFAULT 0,
    last_error       text
);

CREATE TABLE amiflow.clock_checks (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id   integer NOT NULL REFERENCES amiflow.meters (id) ON DELETE CASCADE,
    checked_at timestamptz NOT NULL,
    offset_s   double precision NOT NULL,  -- meter clock minus head-end clock
    within_tolerance boolean NOT NULL,
    synced     boolean NOT NULL DEFAULT false
);
CREATE INDEX clock_checks_meter_idx ON amiflow.clock_checks (meter_id, checked_at);

CREATE TABLE amiflow.commissioning_reports (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uri        text NOT NULL,
    meter      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    passed     boolean NOT NULL,
    report     jsonb NOT NULL
);
