-- Bills and VEE (rating/billing_run.py, rating/vee): billing cycles, bill runs and their blocks (resume), bills with
-- versions, lines and determinants, skipped meters, VEE results with pre/post versions of intervals, and the
-- contract view v_bills.

-- An explicit billing cycle per meter; meters without a row get a hash-based cycle (docs/vee-billing.md).
CREATE TABLE amiflow.meter_cycles (
    meter_id integer PRIMARY KEY REFERENCES amiflow.meters (id) ON DELETE CASCADE,
    cycle    text NOT NULL CHECK (cycle ~ '^[A-Za-z0-9_.-]{1,32}$')
);

-- One billing run of a period (first local day of the month) and cycle ('*' = all). A run that did not finish is
-- resumed by the next `amiflow bill run` of the same period and cycle: its stored block plan is reused and the
-- blocks already committed are skipped.
CREATE TABLE amiflow.bill_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL DEFAULT 'bill' CHECK (kind IN ('bill', 'vee')),
    period      date NOT NULL,
    cycle       text NOT NULL DEFAULT '*',
    status      text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
    params      jsonb NOT NULL DEFAULT '{}',
    summary     jsonb,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX bill_runs_period_idx ON amiflow.bill_runs (kind, period, cycle, id);

CREATE TABLE amiflow.bill_run_blocks (
    run_id       bigint NOT NULL REFERENCES amiflow.bill_runs (id) ON DELETE CASCADE,
    block_no     integer NOT NULL,
    tariff       text,
    timezone     text NOT NULL,
    meters       text[] NOT NULL,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    summary      jsonb,
    committed_at timestamptz,
    PRIMARY KEY (run_id, block_no)
);

-- Meters a run did not bill, with the reason (no_tariff, unknown_tariff, tariff_not_effective, no_data,
-- vee_hold:<rule>, too_much_estimated, rating_error, inactive, unverified).
CREATE TABLE amiflow.bill_run_skips (
    run_id   bigint NOT NULL REFERENCES amiflow.bill_runs (id) ON DELETE CASCADE,
    meter    text NOT NULL,
    reason   text NOT NULL,
    detail   text,
    PRIMARY KEY (run_id, meter)
);

-- A bill version. (bill_id, version) is unique; a re-rate whose content differs adds version + 1 and marks the
-- previous one superseded; a re-run with the same content adds nothing (content_hash).
CREATE TABLE amiflow.bills (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bill_id         text NOT NULL,
    version         integer NOT NULL CHECK (version >= 1),
    run_id          bigint REFERENCES amiflow.bill_runs (id) ON DELETE SET NULL,
    meter           text NOT NULL,
    account         text,
    period_start    date NOT NULL,
    period_end      date NOT NULL,             -- last billed local day (inclusive), as in the bill JSON
    tariff_id       text NOT NULL,
    tariff_version  integer NOT NULL,
    total           numeric NOT NULL,
    currency        text NOT NULL,
    estimated_share double precision NOT NULL DEFAULT 0,
    status          text NOT NULL DEFAULT 'issued' CHECK (status IN ('issued', 'superseded')),
    content_hash    text NOT NULL,
    body            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bill_id, version)
);
CREATE INDEX bills_meter_period_idx ON amiflow.bills (meter, period_start);
CREATE INDEX bills_account_idx ON amiflow.bills (account, period_start);

CREATE TABLE amiflow.bill_lines (
    bill        bigint NOT NULL REFERENCES amiflow.bills (id) ON DELETE CASCADE,
    line_no     smallint NOT NULL,
    code        text NOT NULL,
    description text NOT NULL,
    quantity    numeric,
    unit        text NOT NULL,
    rate        numeric,
    amount      numeric NOT NULL,
    PRIMARY KEY (bill, line_no)
);

-- Determinants flattened to dotted names (energy_kwh.peak.t1, peak_kw.demand.all, days, missing_intervals).
CREATE TABLE amiflow.bill_determinants (
    bill  bigint NOT NULL REFERENCES amiflow.bills (id) ON DELETE CASCADE,
    name  text NOT NULL,
    value numeric NOT NULL,
    PRIMARY KEY (bill, name)
);

-- VEE rule codes by bit of vee_intervals.rules (rating.vee.RULES).
CREATE TABLE amiflow.vee_rules (bit smallint PRIMARY KEY, code text NOT NULL UNIQUE, action text NOT NULL);
INSERT INTO amiflow.vee_rules VALUES
    (0, 'missing', 'estimate'), (1, 'negative', 'estimate'), (2, 'spike_neighbours', 'estimate'),
    (3, 'spike_history', 'flag'), (4, 'high_usage', 'flag'), (5, 'low_usage', 'flag'),
    (6, 'zero_consumption', 'flag'), (7, 'duplicate', 'flag'), (8, 'clock_drift', 'flag'),
    (9, 'sum_check', 'hold'), (10, 'multiplier', 'hold'), (11, 'unit', 'hold'), (12, 'no_data', 'hold');

-- The latest VEE outcome per meter, channel and period (replaced by each VEE of that period).
CREATE TABLE amiflow.vee_results (
    meter_id        integer NOT NULL REFERENCES amiflow.meters (id) ON DELETE CASCADE,
    channel_id      smallint NOT NULL,
    period_start    date NOT NULL,
    run_id          bigint REFERENCES amiflow.bill_runs (id) ON DELETE SET NULL,
    intervals       integer NOT NULL,
    estimated       integer NOT NULL,
    estimated_share double precision NOT NULL,
    hold            text,
    summary         jsonb NOT NULL,
    validated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, channel_id, period_start)
);

-- Pre/post versions of the intervals VEE estimated or flagged (the others are as stored in readings): the
-- original value (NULL = missing), the value used for billing, the QualityFlag bits after VEE, the rule bits and
-- the estimation method (rating.vee.METHODS index).
CREATE TABLE amiflow.vee_intervals (
    meter_id     integer NOT NULL,
    channel_id   smallint NOT NULL,
    ts           timestamptz NOT NULL,
    period_start date NOT NULL,
    pre_value    double precision,
    post_value   double precision,
    quality      integer NOT NULL,
    rules        integer NOT NULL,
    method       smallint NOT NULL,
    PRIMARY KEY (meter_id, channel_id, ts)
);
CREATE INDEX vee_intervals_period_idx ON amiflow.vee_intervals (meter_id, channel_id, period_start);

CREATE VIEW amiflow.v_bills AS
    SELECT bill_id, version, account, meter, period_start, period_end, total, currency, estimated_share, status
    FROM amiflow.bills;

CREATE VIEW amiflow.v_vee_intervals AS
    SELECT m.name AS meter, c.obis, v.ts, v.pre_value, v.post_value, amiflow.quality_names(v.quality) AS quality,
           ARRAY(SELECT r.code FROM amiflow.vee_rules r WHERE v.rules & (1 << r.bit) <> 0 ORDER BY r.bit) AS rules,
           (ARRAY['none', 'interpolated', 'like_day', 'profile', 'mean', 'outage'])[v.method + 1] AS method
    FROM amiflow.vee_intervals v
    JOIN amiflow.meters m ON m.id = v.meter_id
    JOIN amiflow.channels c ON c.id = v.channel_id;
