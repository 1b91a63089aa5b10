-- What the partner API adds: the lifecycle of a job (pause, resume, cancel;
-- scheduled sends; segment audiences; the recommendation strategy), the
-- stored first answer to a job request so that a retry with the same
-- Idempotency-Key gets it byte for byte, and the customer, catalog and
-- recommendation fields partners send.

-- +goose Up

-- state is the partner's say over a job, apart from its progress:
--   active     the job runs (planning, delivering);
--   paused     nothing more is planned and dispatch claims no recipient of
--              it; what is already claimed finishes;
--   cancelled  final: nothing more is planned or claimed, ever.
-- Dispatch re-checks it in the statement that claims recipients; ingest's
-- planner leases only active jobs and re-checks before every chunk.
ALTER TABLE jobs
    ADD COLUMN state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'cancelled')),
    ADD COLUMN state_changed_at timestamptz,
    -- send_at: planning starts then (the outbox row is leased no earlier);
    -- NULL means at once.
    ADD COLUMN send_at          timestamptz,
    ADD COLUMN strategy         text NOT NULL DEFAULT 'personalized',
    -- The first 202 answer, replayed verbatim for a retry with the same key.
    ADD COLUMN accepted_response bytea,
    ADD CONSTRAINT jobs_deadline_after_send_at CHECK (send_at IS NULL OR deadline > send_at);
-- Job listing pages through a tenant's jobs newest first: ids are UUIDv7,
-- so the primary key (tenant_id, id) read backwards serves it.

ALTER TABLE customers
    -- IANA zone (dispatch counts daily caps in it; 00005 adds it if missing).
    ADD COLUMN timezone text NOT NULL DEFAULT 'UTC',
    -- Consent per channel as the partner records it, e.g. {"email": true,
    -- "onsite": true, "ads": false}; "subscribed" is the email consent.
    ADD COLUMN consent  jsonb NOT NULL DEFAULT '{}';

ALTER TABLE catalog_items
    ADD COLUMN categories text[] NOT NULL DEFAULT '{}';

ALTER TABLE recommendations
    -- Scores parallel to item_ids (same length) or empty.
    ADD COLUMN scores real[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE recommendations DROP COLUMN scores;
ALTER TABLE catalog_items DROP COLUMN categories;
ALTER TABLE customers DROP COLUMN consent, DROP COLUMN timezone;
ALTER TABLE jobs
    DROP CONSTRAINT jobs_deadline_after_send_at,
    DROP COLUMN accepted_response,
    DROP COLUMN strategy,
    DROP COLUMN send_at,
    DROP COLUMN state_changed_at,
    DROP COLUMN state;
