-- What dispatch needs to never flood: shared rate buckets that hold across
-- every dispatch replica, per-recipient daily send counts for frequency
-- caps, and the tenant and customer settings they read.

-- +goose Up
-- A token bucket per limit: tenant, provider account, mailbox provider. The
-- current rate adapts: it is cut on throttling and grows back after.
CREATE TABLE rate_buckets (
    name          text PRIMARY KEY,
    rate          double precision NOT NULL CHECK (rate > 0),
    max_rate      double precision NOT NULL CHECK (max_rate > 0),
    min_rate      double precision NOT NULL CHECK (min_rate > 0),
    burst         double precision NOT NULL CHECK (burst >= 1),
    tokens        double precision NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    throttled_at  timestamptz NOT NULL DEFAULT '-infinity'
);

-- +goose StatementBegin
-- herald_take_tokens takes up to want tokens from a bucket and returns how
-- many it got (possibly none) and the bucket's current rate. Refill is
-- computed from the time since the last take; the rate grows back by a
-- twentieth of its ceiling per second once cooldown seconds have passed
-- without throttling.
CREATE FUNCTION herald_take_tokens(bucket text, want double precision, cooldown double precision,
                                   OUT granted double precision, OUT current_rate double precision)
LANGUAGE plpgsql AS $$
DECLARE
    b       rate_buckets%ROWTYPE;
    now_    timestamptz := clock_timestamp();
    elapsed double precision;
BEGIN
    SELECT * INTO b FROM rate_buckets WHERE name = bucket FOR UPDATE;
    IF NOT FOUND THEN
        granted := want;
        current_rate := 'Infinity';
        RETURN;
    END IF;
    elapsed := greatest(extract(epoch FROM now_ - b.updated_at), 0);
    IF b.throttled_at < now_ - make_interval(secs => cooldown) THEN
        b.rate := least(b.max_rate, b.rate + b.max_rate / 20 * elapsed);
    END IF;
    b.tokens := least(b.burst, b.tokens + b.rate * elapsed);
    granted := greatest(least(want, floor(b.tokens)), 0);
    UPDATE rate_buckets SET tokens = b.tokens - granted, rate = b.rate, updated_at = now_ WHERE name = bucket;
    current_rate := b.rate;
END;
$$;
-- +goose StatementEnd

-- Sends claimed per recipient per local calendar day, across channels and
-- jobs, for frequency caps. Old days are deleted by the retention job.
CREATE TABLE recipient_day_counts (
    tenant_id   text NOT NULL,
    customer_id text NOT NULL,
    day         date NOT NULL,
    sends       integer NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, day)
);

ALTER TABLE customers ADD COLUMN IF NOT EXISTS timezone text NOT NULL DEFAULT 'UTC';
ALTER TABLE tenants ADD COLUMN send_rate double precision CHECK (send_rate > 0);
ALTER TABLE tenants ADD COLUMN daily_cap integer CHECK (daily_cap > 0);

-- capped: the recipient reached the tenant's daily cap; skipped: the job's
-- picking rules chose not to message them (too few products).
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_check
    CHECK (state IN ('sending', 'deferred', 'sent', 'failed', 'suppressed', 'expired', 'ambiguous', 'capped', 'skipped'));
ALTER TABLE job_progress ADD COLUMN capped bigint NOT NULL DEFAULT 0;
ALTER TABLE job_progress ADD COLUMN skipped bigint NOT NULL DEFAULT 0;

-- The provider a claimed delivery was handed to: a send whose outcome is
-- unknown can only be settled with the provider that got it.
ALTER TABLE deliveries ADD COLUMN provider text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE deliveries DROP COLUMN provider;
ALTER TABLE job_progress DROP COLUMN skipped;
ALTER TABLE job_progress DROP COLUMN capped;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_check
    CHECK (state IN ('sending', 'deferred', 'sent', 'failed', 'suppressed', 'expired', 'ambiguous'));
ALTER TABLE tenants DROP COLUMN daily_cap;
ALTER TABLE tenants DROP COLUMN send_rate;
DROP TABLE recipient_day_counts;
DROP FUNCTION herald_take_tokens(text, double precision, double precision);
DROP TABLE rate_buckets;
