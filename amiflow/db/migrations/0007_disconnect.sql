-- Arrears, reminders, the disconnect policy's decisions, relay commands and prepaid balances (billing_bridge).
-- A disconnect command can only exist with an allowing policy decision for the same account (enforced here too, not
-- only in Python): the policy engine is the only way to a disconnect (ARCHITECTURE.md).

-- Facts about an account that the policy needs and billing or an operator maintains: protected categories
-- (life_support, medical, elderly, ...), an open dispute, a payment plan and whether it is in good standing,
-- prepaid mode.
CREATE TABLE amiflow.account_policy (
    account             text PRIMARY KEY CHECK (length(account) BETWEEN 1 AND 128),
    protected           text[] NOT NULL DEFAULT '{}',
    open_dispute        boolean NOT NULL DEFAULT false,
    payment_plan        text NOT NULL DEFAULT 'none' CHECK (payment_plan IN ('none', 'good_standing', 'defaulted')),
    prepaid             boolean NOT NULL DEFAULT false,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- One row per notice rung sent per debt (bill or statement): the idempotency of the reminder ladder.
CREATE TABLE amiflow.notices (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account             text NOT NULL,
    debt_ref            text NOT NULL,
    type                text NOT NULL,
    sent_at             timestamptz NOT NULL,
    outbox_key          text NOT NULL,
    detail              jsonb NOT NULL DEFAULT '{}',
    UNIQUE (account, debt_ref, type)
);
CREATE INDEX notices_account_idx ON amiflow.notices (account, sent_at);

-- Every policy decision, allowed or blocked, with the rule set that made it and the rules that decided.
CREATE TABLE amiflow.disconnect_decisions (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    decided_at          timestamptz NOT NULL,
    account             text NOT NULL,
    meter               text,
    debt_ref            text,
    ruleset_id          text NOT NULL,
    ruleset_version     text NOT NULL,
    allowed             boolean NOT NULL,
    deciding_rules      text[] NOT NULL,
    results             jsonb NOT NULL,
    inputs              jsonb NOT NULL
);
CREATE INDEX disconnect_decisions_account_idx ON amiflow.disconnect_decisions (account, decided_at);

-- Relay commands. A disconnect needs an allowing decision of its account; one decision issues at most one
-- disconnect per meter. States: pending -> sent -> confirmed | escalated (retries exhausted) | failed (refused).
CREATE TABLE amiflow.meter_commands (
    id                  uuid PRIMARY KEY,
    meter               text NOT NULL,
    account             text,
    action              text NOT NULL CHECK (action IN ('disconnect', 'reconnect')),
    decision_id         bigint REFERENCES amiflow.disconnect_decisions (id),
    state               text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'sent', 'confirmed', 'escalated', 'failed')),
    attempts            integer NOT NULL DEFAULT 0,
    relay               text,
    last_error          text,
    created_at          timestamptz NOT NULL,
    due_by              timestamptz,
    confirmed_at        timestamptz,
    CHECK (action <> 'disconnect' OR decision_id IS NOT NULL),
    UNIQUE (decision_id, meter)
);
CREATE INDEX meter_commands_meter_idx ON amiflow.meter_commands (meter, created_at);
-- At most one open command per meter: two planners racing cannot queue two relay operations for one meter.
CREATE UNIQUE INDEX meter_commands_one_open_idx ON amiflow.meter_commands (meter) WHERE state IN ('pending', 'sent');

CREATE FUNCTION amiflow.meter_commands_check_decision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.action = 'disconnect' AND NOT EXISTS (
        SELECT 1 FROM amiflow.disconnect_decisions d
        WHERE d.id = NEW.decision_id AND d.allowed AND d.account = NEW.account) THEN
        RAISE EXCEPTION 'disconnect of meter % refused: decision % does not allow it', NEW.meter, NEW.decision_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER meter_commands_check_decision BEFORE INSERT OR UPDATE OF action, decision_id, account
    ON amiflow.meter_commands FOR EACH ROW EXECUTE FUNCTION amiflow.meter_commands_check_decision();

-- Prepaid accounts: balance = opening_credit + sum(payments) - consumed_cost; consumed_through is the end of the
-- last interval charged (intervals are charged once, in order). A cycle starts at enrolment and at each top-up that
-- lifts the balance above the highest low-balance threshold: low-balance notices are sent once per threshold per cycle.
CREATE TABLE amiflow.prepaid_accounts (
    account             text PRIMARY KEY CHECK (length(account) BETWEEN 1 AND 128),
    currency            char(3) NOT NULL,
    opening_credit      numeric(14, 4) NOT NULL DEFAULT 0,
    consumed_cost       numeric(14, 4) NOT NULL DEFAULT 0,
    consumed_through    timestamptz NOT NULL,
    rate_per_kwh        numeric(12, 6) NOT NULL CHECK (rate_per_kwh >= 0),
    last_balance        numeric(14, 4),
    cycle_started_at    timestamptz NOT NULL,
    zero_since          timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE VIEW amiflow.v_disconnect_decisions AS
SELECT id, decided_at, account, meter, ruleset_id, ruleset_version, allowed, deciding_rules
FROM amiflow.disconnect_decisions;

CREATE VIEW amiflow.v_meter_commands AS
SELECT id, meter, account, action, state, attempts, relay, last_error, created_at, confirmed_at, decision_id
FROM amiflow.meter_commands;
