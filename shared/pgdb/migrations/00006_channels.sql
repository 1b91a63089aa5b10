-- Jobs for every channel, with their picking rules, and the onsite inbox
-- that dispatch delivers onsite messages into.

-- +goose Up
ALTER TABLE jobs ADD COLUMN picking jsonb;
ALTER TABLE jobs DROP CONSTRAINT jobs_channel_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_channel_check CHECK (channel IN ('email', 'onsite', 'ad'));

-- Onsite messages wait here for the partner's site to fetch them; each is
-- delivered once per ledger key and expires at the job's deadline unless the
-- job says otherwise.
CREATE TABLE onsite_messages (
    tenant_id    text NOT NULL,
    customer_id  text NOT NULL,
    delivery_key text NOT NULL,
    job_id       uuid NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    seen_at      timestamptz,
    PRIMARY KEY (tenant_id, customer_id, delivery_key)
);
CREATE INDEX onsite_messages_expiry ON onsite_messages (expires_at);

-- +goose Down
DROP TABLE onsite_messages;
ALTER TABLE jobs DROP CONSTRAINT jobs_channel_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_channel_check CHECK (channel IN ('email'));
ALTER TABLE jobs DROP COLUMN picking;
