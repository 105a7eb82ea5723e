-- Collections (billing_bridge.plans, billing_bridge.collection_kpis): accounts carry a region and an assigned
-- collector; installment plans (payment arrangements) with their dated installments and an audit trail of events.

-- The region and the assigned collector (a staff id) of an account, imported with the meter registry (`amiflow meters
-- import` columns `region`, `collector`) or set by billing. The registry may create an account before billing has
-- stated its currency: the first payment or statement for it then fills the currency in (trigger below), so the
-- payments' currency check (the account's currency must match) holds for such accounts too.
ALTER TABLE amiflow.accounts
    ADD COLUMN region    text CHECK (region IS NULL OR length(region) BETWEEN 1 AND 64),
    ADD COLUMN collector text CHECK (collector IS NULL OR length(collector) BETWEEN 1 AND 64);
CREATE INDEX accounts_region_idx ON amiflow.accounts (region);
CREATE INDEX accounts_collector_idx ON amiflow.accounts (collector);

CREATE FUNCTION amiflow.accounts_fill_currency() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.currency IS NOT NULL THEN
        UPDATE amiflow.accounts SET currency = NEW.currency, updated_at = now()
        WHERE account = NEW.account AND currency IS NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_fill_currency BEFORE INSERT ON amiflow.accounts
    FOR EACH ROW EXECUTE FUNCTION amiflow.accounts_fill_currency();

-- An installment plan splits an account's overdue balance (at creation) into a down payment (number 0, due on the
-- creation day) and dated installments (the remainder of the split on the last one). At most one active plan per
-- account. The grace period and the terms (id, version) are copied at creation: a later change of the terms file does
-- not change a running plan. States: active -> completed (kept) | broken (an installment missed past the grace) |
-- cancelled (by an operator).
CREATE TABLE amiflow.installment_plans (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account                 text NOT NULL CHECK (length(account) BETWEEN 1 AND 128),
    currency                char(3) NOT NULL,
    state                   text NOT NULL DEFAULT 'active'
                            CHECK (state IN ('active', 'completed', 'broken', 'cancelled')),
    overdue_amount          numeric(14, 2) NOT NULL CHECK (overdue_amount > 0),
    down_payment            numeric(14, 2) NOT NULL DEFAULT 0 CHECK (down_payment >= 0),
    installments            integer NOT NULL CHECK (installments >= 1),
    grace_days              integer NOT NULL CHECK (grace_days >= 0),
    current_bills_required  boolean NOT NULL DEFAULT true,
    terms_id                text NOT NULL,
    terms_version           text NOT NULL,
    debt_refs               text[] NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL,
    ended_at                timestamptz,
    CHECK (down_payment < overdue_amount),
    CHECK ((state = 'active') = (ended_at IS NULL))
);
CREATE UNIQUE INDEX installment_plans_one_active_idx ON amiflow.installment_plans (account) WHERE state = 'active';
CREATE INDEX installment_plans_account_idx ON amiflow.installment_plans (account, created_at);

CREATE TABLE amiflow.plan_installments (
    plan_id     bigint NOT NULL REFERENCES amiflow.installment_plans (id) ON DELETE CASCADE,
    number      integer NOT NULL CHECK (number >= 0),
    due_date    date NOT NULL,
    amount      numeric(14, 2) NOT NULL CHECK (amount > 0),
    PRIMARY KEY (plan_id, number)
);

-- What happened to a plan, once per kind: created (with the schedule), completed, broken (with the missed items),
-- cancelled. Each event also went to billing as a notice through the outbox in the same transaction.
CREATE TABLE amiflow.plan_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id     bigint NOT NULL REFERENCES amiflow.installment_plans (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    event       text NOT NULL CHECK (event IN ('created', 'completed', 'broken', 'cancelled')),
    detail      jsonb NOT NULL DEFAULT '{}',
    UNIQUE (plan_id, event)
);

CREATE VIEW amiflow.v_installment_plans AS
SELECT p.id AS plan_id, p.account, p.state, p.overdue_amount, p.down_payment, p.installments, p.currency,
       p.created_at, p.ended_at, a.region, a.collector
FROM amiflow.installment_plans p LEFT JOIN amiflow.accounts a ON a.account = p.account;
