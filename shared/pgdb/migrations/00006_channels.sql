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

-- A batch dispatch has set aside: every recipient left in it waits to be
-- retried (a provider deferring, a receiver's rate, quiet hours). Parked
-- batches do not count against the window of batches in flight, so a slow
-- receiver cannot stall the pipeline.
ALTER TABLE job_batches ADD COLUMN parked_at timestamptz;
-- When a parked batch holds recipients in their quiet hours, the time the
-- earliest of them may be sent: the releaser publishes it again then.
ALTER TABLE job_batches ADD COLUMN resume_at timestamptz;
-- A job's quiet hours: {"startMinute":1260,"endMinute":480,"mode":"hold"}.
ALTER TABLE jobs ADD COLUMN quiet_hours jsonb;
-- A delivery held for the recipient's quiet hours waits until then.
ALTER TABLE deliveries ADD COLUMN not_before timestamptz;

-- +goose StatementBegin
-- herald_in_quiet_hours reports whether a local time of day falls in the
-- window [start_minute, end_minute) of minutes after midnight; a window may
-- wrap midnight. A negative start means no quiet hours.
CREATE FUNCTION herald_in_quiet_hours(local_now timestamp, start_minute integer, end_minute integer)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN start_minute < 0 OR start_minute = end_minute THEN false
        WHEN start_minute < end_minute THEN m >= start_minute AND m < end_minute
        ELSE m >= start_minute OR m < end_minute
    END
    FROM (SELECT (extract(hour FROM local_now) * 60 + extract(minute FROM local_now))::integer AS m) x
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_quiet_hours_end is the next moment, after local_now in time zone
-- tz, at which the local clock shows end_minute.
CREATE FUNCTION herald_quiet_hours_end(local_now timestamp, tz text, end_minute integer)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT (CASE WHEN e > local_now THEN e ELSE e + interval '1 day' END) AT TIME ZONE tz
    FROM (SELECT date_trunc('day', local_now) + make_interval(mins => greatest(end_minute, 0)) AS e) x
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION herald_quiet_hours_end(timestamp, text, integer);
DROP FUNCTION herald_in_quiet_hours(timestamp, integer, integer);
ALTER TABLE deliveries DROP COLUMN not_before;
ALTER TABLE jobs DROP COLUMN quiet_hours;
ALTER TABLE job_batches DROP COLUMN resume_at;
ALTER TABLE job_batches DROP COLUMN parked_at;
DROP TABLE onsite_messages;
ALTER TABLE jobs DROP CONSTRAINT jobs_channel_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_channel_check CHECK (channel IN ('email'));
ALTER TABLE jobs DROP COLUMN picking;
