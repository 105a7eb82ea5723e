-- Customer bill documents and e-bill delivery (docs/bills.md): the contact data and e-bill opt-in of an account
-- (`amiflow accounts import`), the outbox channel that keeps e-mails away from the billing webhook, and the bounces
-- the e-mail sink meets. The contract views are unchanged.

-- Who an account's customer is and how they want their bill. The registry may create the account row (its currency
-- still unknown, as `meters import` does for regions). An address that bounced is marked until an import changes it.
CREATE TABLE amiflow.account_contacts (
    account       text PRIMARY KEY REFERENCES amiflow.accounts (account),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email         text CHECK (email IS NULL OR (length(email) BETWEEN 3 AND 254 AND email LIKE '%_@_%')),
    address       text[] NOT NULL DEFAULT '{}',  -- postal address, one element per line
    ebill         boolean NOT NULL DEFAULT false,  -- opted in to bills by e-mail
    email_status  text NOT NULL DEFAULT 'ok' CHECK (email_status IN ('ok', 'bounced')),
    bounced_at    timestamptz,
    bounce_reason text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT ebill OR email IS NOT NULL)
);

-- Which dispatcher takes an outbox row: 'email' (kind ebill: the customer's mailbox, `bridge run --sink email`) or
-- 'billing' (everything else: the webhook, CIM or file sinks). Per-account order holds within a channel, so a
-- billing outage does not hold back customers' e-mails and a slow mail server does not hold back bills.
ALTER TABLE amiflow.outbox
    ADD COLUMN channel text NOT NULL GENERATED ALWAYS AS (CASE WHEN kind = 'ebill' THEN 'email' ELSE 'billing' END) STORED;
CREATE INDEX outbox_channel_pending_idx ON amiflow.outbox (channel, next_attempt_at, id) WHERE state = 'pending';

-- A receiving server's permanent refusal (SMTP 5xx to RCPT TO or DATA) of an e-bill: the e-mail sink settles the
-- item rejected with a last_error starting 'bounce:'; this trigger records it and marks the contact's address in the
-- same transaction, so a bounce is never lost between the two. 4xx answers are retried, not bounces.
CREATE TABLE amiflow.email_bounces (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id   bigint NOT NULL REFERENCES amiflow.outbox (id) ON DELETE CASCADE,
    account     text,
    email       text NOT NULL,
    code        integer,
    reason      text NOT NULL,
    bounced_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_bounces_account_idx ON amiflow.email_bounces (account, bounced_at);

CREATE FUNCTION amiflow.outbox_email_bounce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO amiflow.email_bounces (outbox_id, account, email, code, reason)
    VALUES (NEW.id, NEW.account, coalesce(NEW.payload->>'to', ''), NEW.response_code, NEW.last_error);
    UPDATE amiflow.account_contacts
    SET email_status = 'bounced', bounced_at = now(), bounce_reason = NEW.last_error, updated_at = now()
    WHERE account = NEW.account AND email = NEW.payload->>'to';
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_email_bounce AFTER UPDATE OF state ON amiflow.outbox
    FOR EACH ROW WHEN (NEW.kind = 'ebill' AND NEW.state = 'rejected' AND OLD.state <> 'rejected'
                       AND NEW.last_error LIKE 'bounce:%')
    EXECUTE FUNCTION amiflow.outbox_email_bounce();

-- E-bills as an operator or a dashboard sees them.
CREATE VIEW amiflow.v_ebills AS
    SELECT o.id, o.account, o.payload->>'bill_id' AS bill_id, (o.payload->>'version')::integer AS version,
           o.payload->>'to' AS email, o.state, o.attempts, o.last_error, o.created_at, o.delivered_at
    FROM amiflow.outbox o WHERE o.kind = 'ebill';
