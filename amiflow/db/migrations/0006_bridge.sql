-- Billing bridge: dispatcher leases and delivery results on the outbox; accounts, payments and balances posted by
-- the billing system (the arrears and disconnect engine reads them). The contract view v_outbox is left unchanged.

-- A dispatcher claims rows by setting a lease (lease_until, claim_token) in a short FOR UPDATE SKIP LOCKED
-- transaction; a row whose lease has expired (its dispatcher died) is claimable again. The claim token guards the
-- settle: a dispatcher whose lease was taken over cannot overwrite the newer claim's result.
ALTER TABLE amiflow.outbox
    ADD COLUMN lease_until   timestamptz,
    ADD COLUMN claim_token   uuid,
    ADD COLUMN claimed_by    text,
    ADD COLUMN sink          text,
    ADD COLUMN response_code integer,
    ADD COLUMN rejected_at   timestamptz;

-- Per-account ordering: an item is claimable only when no earlier (lower id) item of its account is still pending.
CREATE INDEX outbox_account_pending_idx ON amiflow.outbox (account, id) WHERE state = 'pending';
CREATE INDEX outbox_rejected_idx ON amiflow.outbox (id) WHERE state = 'rejected';

-- Wake `amiflow bridge run --follow` when something is queued (one notification per statement, not per row).
CREATE FUNCTION amiflow.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('amiflow_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON amiflow.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION amiflow.outbox_notify();

-- Accounts as the billing system reports them: the latest balance and due date (balance_as_of orders updates; an
-- older update never overwrites a newer one). Money is numeric, never float.
CREATE TABLE amiflow.accounts (
    account         text PRIMARY KEY CHECK (length(account) BETWEEN 1 AND 128),
    currency        char(3),
    balance         numeric(14, 2),
    due_date        date,
    balance_as_of   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Payments, idempotent by payment_id: the same id with the same content is a no-op, with different content a
-- conflict (refused). A negative amount is a reversal (chargeback, bounced cheque).
CREATE TABLE amiflow.payments (
    payment_id      text PRIMARY KEY CHECK (length(payment_id) BETWEEN 1 AND 128),
    account         text NOT NULL REFERENCES amiflow.accounts (account),
    amount          numeric(14, 2) NOT NULL CHECK (amount <> 0),
    currency        char(3) NOT NULL,
    paid_at         timestamptz NOT NULL,
    source          text NOT NULL CHECK (source IN ('api', 'file')),
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_account_idx ON amiflow.payments (account, paid_at);

-- Every balance statement received (history for the arrears-risk features); accounts holds the latest one.
CREATE TABLE amiflow.balances (
    account         text NOT NULL REFERENCES amiflow.accounts (account),
    as_of           timestamptz NOT NULL,
    balance         numeric(14, 2) NOT NULL,
    currency        char(3) NOT NULL,
    due_date        date,
    source          text NOT NULL CHECK (source IN ('api', 'file')),
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, as_of)
);
