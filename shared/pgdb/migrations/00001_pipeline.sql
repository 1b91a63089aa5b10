-- The system of record for Herald's pipeline. Every table carries the tenant
-- and every key starts with it: a query that forgets the tenant has no index
-- to use, which makes the mistake visible in review and in plans.

-- +goose Up
CREATE TABLE tenants (
    id               text PRIMARY KEY,
    name             text NOT NULL DEFAULT '',
    website_url      text NOT NULL DEFAULT '',
    logo_url         text NOT NULL DEFAULT '',
    hero_url         text NOT NULL DEFAULT '',
    postal_address   text NOT NULL DEFAULT '',
    default_deadline interval NOT NULL DEFAULT '4 hours',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    tenant_id   text NOT NULL,
    id          text NOT NULL,
    email       text NOT NULL,
    first_name  text NOT NULL DEFAULT '',
    last_name   text NOT NULL DEFAULT '',
    locale      text NOT NULL DEFAULT 'en',
    subscribed  boolean NOT NULL DEFAULT true,
    attributes  jsonb NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE catalog_items (
    tenant_id        text NOT NULL,
    id               text NOT NULL,
    title            text NOT NULL,
    brand            text NOT NULL DEFAULT '',
    url              text NOT NULL,
    image_url        text NOT NULL DEFAULT '',
    price_cents      bigint NOT NULL CHECK (price_cents >= 0),
    compare_at_cents bigint NOT NULL DEFAULT 0 CHECK (compare_at_cents >= 0),
    currency         text NOT NULL DEFAULT 'USD',
    in_stock         boolean NOT NULL DEFAULT true,
    -- Units sold over the last 30 days as the partner reports them; it orders
    -- the best-seller fallback.
    sales_30d        bigint NOT NULL DEFAULT 0,
    rating           real NOT NULL DEFAULT 0,
    reviews          integer NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX catalog_items_best_sellers ON catalog_items (tenant_id, sales_30d DESC, id) WHERE in_stock;

-- One ranked list of catalog item ids per customer, from the partner's model.
CREATE TABLE recommendations (
    tenant_id     text NOT NULL,
    customer_id   text NOT NULL,
    item_ids      text[] NOT NULL,
    model_version text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id)
);

-- Templates are immutable per version: a job names the version it was
-- accepted with, so an upload during a send changes nothing mid-job.
CREATE TABLE templates (
    tenant_id   text NOT NULL,
    id          text NOT NULL,
    version     integer NOT NULL CHECK (version > 0),
    from_name   text NOT NULL DEFAULT '',
    from_email  text NOT NULL,
    subject     text NOT NULL,
    preheader   text NOT NULL DEFAULT '',
    html        text NOT NULL,
    text_body   text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id, version)
);

CREATE TABLE jobs (
    tenant_id            text NOT NULL,
    id                   uuid NOT NULL,
    idempotency_key      text NOT NULL,
    request_sha256       bytea NOT NULL,
    channel              text NOT NULL CHECK (channel IN ('email')),
    template_id          text NOT NULL,
    template_version     integer NOT NULL,
    audience             jsonb NOT NULL,
    products_per_message integer NOT NULL,
    campaign             text NOT NULL DEFAULT '',
    submitted_at         timestamptz NOT NULL,
    deadline             timestamptz NOT NULL,
    traceparent          text NOT NULL DEFAULT '',
    -- Planning publishes the audience in customer id order and checkpoints
    -- after every confirmed chunk, so a restarted planner resumes where the
    -- last one stopped instead of starting over.
    plan_cursor          text NOT NULL DEFAULT '',
    plan_next_seq        bigint NOT NULL DEFAULT 0,
    planned              bigint NOT NULL DEFAULT 0,
    -- Set when the whole audience is published; planned is final from then on.
    planned_at           timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, idempotency_key),
    CHECK (deadline > submitted_at)
);

-- The plan of every job: its recipients in batches, as published. A batch
-- is what one Pub/Sub message carries; keeping the plan lets a batch whose
-- message was lost or dead-lettered be published again as the very same
-- batch (same seq), which every stage already treats as a harmless
-- duplicate. Dispatch marks a batch done when all its recipients are final.
CREATE TABLE job_batches (
    tenant_id    text NOT NULL,
    job_id       uuid NOT NULL,
    seq          bigint NOT NULL,
    customer_ids text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    publishes    integer NOT NULL DEFAULT 0,
    done_at      timestamptz,
    PRIMARY KEY (tenant_id, job_id, seq)
);
CREATE INDEX job_batches_open ON job_batches (published_at) WHERE done_at IS NULL;

-- Per-job counters, kept apart from the time-partitioned ledger so they
-- outlive it. Dispatch spreads its updates over a few shards per job so that
-- concurrent batches do not queue on one row; readers sum the shards.
CREATE TABLE job_progress (
    tenant_id        text NOT NULL,
    job_id           uuid NOT NULL,
    shard            smallint NOT NULL,
    sent             bigint NOT NULL DEFAULT 0,
    failed           bigint NOT NULL DEFAULT 0,
    suppressed       bigint NOT NULL DEFAULT 0,
    expired          bigint NOT NULL DEFAULT 0,
    ambiguous        bigint NOT NULL DEFAULT 0,
    first_sent_at    timestamptz,
    last_done_at     timestamptz,
    PRIMARY KEY (tenant_id, job_id, shard)
);

-- The transactional outbox: rows written in the same transaction as the
-- change they announce, worked off by ingest's planner.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('plan_job')),
    tenant_id   text NOT NULL,
    job_id      uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner text NOT NULL DEFAULT '',
    lease_until timestamptz NOT NULL DEFAULT '-infinity'
);

-- Addresses that must not be mailed, per tenant, stored lower-cased.
CREATE TABLE suppressions (
    tenant_id  text NOT NULL,
    email      text NOT NULL,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, email)
);

-- The delivery ledger: exactly one row per (tenant, job, customer, channel),
-- claimed before the provider is called. It grows by billions of rows a day,
-- so it is partitioned by day of the job's submission, which every
-- message of the job carries; old partitions are dropped whole.
CREATE TABLE deliveries (
    tenant_id        text NOT NULL,
    job_id           uuid NOT NULL,
    channel          text NOT NULL,
    customer_id      text NOT NULL,
    job_submitted_at timestamptz NOT NULL,
    batch_seq        bigint NOT NULL,
    -- sending: claimed, and a send may be under way; sent, failed, suppressed,
    -- expired, ambiguous: final; deferred: the provider refused for now.
    state            text NOT NULL CHECK (state IN ('sending', 'deferred', 'sent', 'failed', 'suppressed', 'expired', 'ambiguous')),
    email            text NOT NULL,
    message_id       text NOT NULL DEFAULT '',
    attempts         integer NOT NULL DEFAULT 0,
    reason           text NOT NULL DEFAULT '',
    claimed_at       timestamptz NOT NULL DEFAULT now(),
    done_at          timestamptz,
    PRIMARY KEY (tenant_id, job_id, channel, customer_id, job_submitted_at)
) PARTITION BY RANGE (job_submitted_at);

-- herald_ensure_deliveries_partition creates the ledger partition holding the
-- UTC day of ts, if missing. Callers create today's and tomorrow's ahead of
-- time; the advisory lock keeps concurrent callers from racing on the DDL.
-- +goose StatementBegin
CREATE FUNCTION herald_ensure_deliveries_partition(ts timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    day  date := (ts AT TIME ZONE 'UTC')::date;
    name text := 'deliveries_' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('herald_ensure_deliveries_partition'));
    IF to_regclass(name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF deliveries FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 80)',
            name, (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    END IF;
    RETURN name;
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION herald_ensure_deliveries_partition(timestamptz);
DROP TABLE deliveries, suppressions, outbox, job_progress, job_batches, jobs, templates,
    recommendations, catalog_items, customers, tenants;
