-- Customer behaviour the partner reports: views, add-to-carts and purchases.
-- Strategies read it (recently viewed, abandoned cart, co-purchase, best
-- sellers over a window; never recommend what was bought). It grows without
-- bound, so it is partitioned by month of occurrence and old months are
-- dropped whole.

-- +goose Up
CREATE TABLE events (
    tenant_id   text NOT NULL,
    customer_id text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('view', 'add_to_cart', 'purchase')),
    item_id     text NOT NULL,
    quantity    integer NOT NULL DEFAULT 1 CHECK (quantity > 0),
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (occurred_at);
CREATE INDEX events_by_customer ON events (tenant_id, customer_id, occurred_at DESC);
CREATE INDEX events_by_item ON events (tenant_id, item_id, kind, occurred_at DESC);

-- herald_ensure_events_partition creates the events partition holding the
-- UTC month of ts, if missing.
-- +goose StatementBegin
CREATE FUNCTION herald_ensure_events_partition(ts timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    month date := date_trunc('month', ts AT TIME ZONE 'UTC')::date;
    name  text := 'events_' || to_char(month, 'YYYYMM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('herald_ensure_events_partition'));
    IF to_regclass(name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
            name, (month::timestamp AT TIME ZONE 'UTC'), ((month + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
    END IF;
    RETURN name;
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION herald_ensure_events_partition(timestamptz);
DROP TABLE events;
