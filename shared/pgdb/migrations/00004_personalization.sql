-- What personalization needs beyond the partner's own rankings: a version of
-- every tenant's catalog (provenance), the catalog changes that trigger
-- back-in-stock and price-drop jobs, item-to-item associations learnt from
-- events (co-purchase, co-view), and the provenance of every delivery in the
-- ledger, so that "why did this customer get this item" has an answer.

-- +goose Up

-- Provenance of each delivery: which strategies picked its products, the
-- partner model version of the rankings used, the catalog version the
-- products were read at and the template version it was rendered from.
-- Constant defaults: adding them rewrites no partition.
ALTER TABLE deliveries
    ADD COLUMN strategy         text NOT NULL DEFAULT '',
    ADD COLUMN model_version    text NOT NULL DEFAULT '',
    ADD COLUMN catalog_version  bigint NOT NULL DEFAULT 0,
    ADD COLUMN template_version integer NOT NULL DEFAULT 0;

-- One row per tenant: its catalog version goes up by one in every
-- transaction that inserts, updates, deletes or truncates catalog items,
-- whichever code path does it (the triggers below keep it). Recommend
-- caches catalog items per version, so the triggers are what keeps that
-- cache right. xact makes the bump idempotent
-- within a transaction: an upsert fires both its INSERT and UPDATE triggers.
CREATE TABLE catalog_versions (
    tenant_id  text PRIMARY KEY,
    version    bigint NOT NULL,
    xact       xid8 NOT NULL,
    changed_at timestamptz NOT NULL
);

-- Catalog changes customers may want to hear about, recorded as they happen
-- by the triggers below. Ingest works them off: it creates a triggered job
-- for the customers who showed interest (herald_catalog_change_audience) and
-- marks the change handled in the same transaction.
CREATE TABLE catalog_changes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       text NOT NULL,
    item_id         text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('back_in_stock', 'price_drop')),
    old_price_cents bigint NOT NULL,
    new_price_cents bigint NOT NULL,
    catalog_version bigint NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT now(),
    -- Set when ingest has acted on the change (job_id: the job it created,
    -- NULL if nobody was interested).
    handled_at      timestamptz,
    job_id          uuid
);
CREATE INDEX catalog_changes_pending ON catalog_changes (id) WHERE handled_at IS NULL;
CREATE INDEX catalog_changes_by_item ON catalog_changes (tenant_id, item_id, kind, changed_at DESC);

-- +goose StatementBegin
-- herald_bump_catalog_versions adds one to the catalog version of each
-- tenant, once per transaction.
CREATE FUNCTION herald_bump_catalog_versions(tenants text[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO catalog_versions AS v (tenant_id, version, xact, changed_at)
    SELECT DISTINCT t, 1, pg_current_xact_id(), now() FROM unnest(tenants) AS t
    ON CONFLICT (tenant_id) DO UPDATE
        SET version = v.version + 1, xact = excluded.xact, changed_at = excluded.changed_at
        WHERE v.xact <> excluded.xact
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION herald_catalog_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM herald_bump_catalog_versions(ARRAY(SELECT DISTINCT tenant_id FROM new_rows));
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION herald_catalog_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM herald_bump_catalog_versions(ARRAY(SELECT DISTINCT tenant_id FROM old_rows));
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_catalog_updated bumps the version and records the items that came
-- back in stock, and the in-stock items whose price went down.
CREATE FUNCTION herald_catalog_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM herald_bump_catalog_versions(ARRAY(SELECT DISTINCT tenant_id FROM new_rows));
    INSERT INTO catalog_changes (tenant_id, item_id, kind, old_price_cents, new_price_cents, catalog_version)
    SELECT n.tenant_id, n.id, c.kind, o.price_cents, n.price_cents, v.version
    FROM old_rows o
    JOIN new_rows n ON n.tenant_id = o.tenant_id AND n.id = o.id
    JOIN catalog_versions v ON v.tenant_id = n.tenant_id
    CROSS JOIN LATERAL (
        SELECT 'back_in_stock' AS kind WHERE n.in_stock AND NOT o.in_stock
        UNION ALL
        SELECT 'price_drop' WHERE n.in_stock AND o.in_stock AND n.price_cents < o.price_cents
    ) c;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_catalog_truncated bumps every tenant's version: TRUNCATE does not
-- say whose rows went.
CREATE FUNCTION herald_catalog_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM herald_bump_catalog_versions(ARRAY(SELECT tenant_id FROM catalog_versions));
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- Transition tables allow one event per trigger, hence one trigger each.
CREATE TRIGGER catalog_items_truncated AFTER TRUNCATE ON catalog_items
    FOR EACH STATEMENT EXECUTE FUNCTION herald_catalog_truncated();
CREATE TRIGGER catalog_items_inserted AFTER INSERT ON catalog_items
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION herald_catalog_inserted();
CREATE TRIGGER catalog_items_updated AFTER UPDATE ON catalog_items
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION herald_catalog_updated();
CREATE TRIGGER catalog_items_deleted AFTER DELETE ON catalog_items
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION herald_catalog_deleted();

-- +goose StatementBegin
-- herald_catalog_change_audience returns the customers to message about a
-- catalog change: subscribed customers who viewed the item or put it in
-- their cart within lookback before the change and have not bought it
-- since. Ingest creates the triggered job for them (strategy back_in_stock
-- or price_drop, item_ids = the change's item). A price drop smaller than
-- min_drop_percent of the old price interests nobody.
CREATE FUNCTION herald_catalog_change_audience(change_id bigint, lookback interval, min_drop_percent integer DEFAULT 0)
RETURNS TABLE (customer_id text)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT e.customer_id
    FROM catalog_changes c
    JOIN events e ON e.tenant_id = c.tenant_id AND e.item_id = c.item_id
                 AND e.kind IN ('view', 'add_to_cart')
                 AND e.occurred_at >= c.changed_at - lookback AND e.occurred_at <= c.changed_at
    JOIN customers cu ON cu.tenant_id = c.tenant_id AND cu.id = e.customer_id AND cu.subscribed
    WHERE c.id = change_id
      AND (c.kind <> 'price_drop'
           OR (c.old_price_cents - c.new_price_cents) * 100 >= min_drop_percent * c.old_price_cents)
      AND NOT EXISTS (
          SELECT 1 FROM events p
          WHERE p.tenant_id = c.tenant_id AND p.item_id = c.item_id AND p.kind = 'purchase'
            AND p.customer_id = e.customer_id AND p.occurred_at >= e.occurred_at)
    ORDER BY 1
$$;
-- +goose StatementEnd

-- Item-to-item associations learnt from events: for each item, the items
-- most often bought (kind 'purchase') or viewed ('view') by the same
-- customers, best first, with cosine scores. Recomputed per tenant and kind
-- by herald_refresh_item_associations; recommend refreshes a stale set
-- itself, under an advisory lock, so one worker does it at a time.
CREATE TABLE item_associations (
    tenant_id   text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('purchase', 'view')),
    item_id     text NOT NULL,
    related_ids text[] NOT NULL,
    scores      real[] NOT NULL,
    PRIMARY KEY (tenant_id, kind, item_id)
);

CREATE TABLE item_association_runs (
    tenant_id   text NOT NULL,
    kind        text NOT NULL,
    computed_at timestamptz NOT NULL,
    items       bigint NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);

-- +goose StatementBegin
-- herald_refresh_item_associations recomputes one tenant's associations of
-- one kind from the events since `since`. Each customer contributes their
-- per_customer most recent distinct items (so one heavy browser cannot
-- dominate or blow up the pair count); each item keeps its per_item best
-- neighbours. Returns the number of items with neighbours.
CREATE FUNCTION herald_refresh_item_associations(tenant text, event_kind text, since timestamptz,
                                                 per_customer integer, per_item integer)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM item_associations WHERE tenant_id = tenant AND kind = event_kind;
    WITH recent AS (
        SELECT customer_id, item_id
        FROM (
            SELECT customer_id, item_id,
                   row_number() OVER (PARTITION BY customer_id ORDER BY max(occurred_at) DESC, item_id) AS rn
            FROM events
            WHERE tenant_id = tenant AND kind = event_kind AND occurred_at >= since
            GROUP BY customer_id, item_id
        ) x
        WHERE rn <= per_customer
    ), popularity AS (
        SELECT item_id, count(*) AS customers FROM recent GROUP BY item_id
    ), pairs AS (
        SELECT a.item_id, b.item_id AS other, count(*) AS together
        FROM recent a
        JOIN recent b ON b.customer_id = a.customer_id AND b.item_id <> a.item_id
        GROUP BY a.item_id, b.item_id
    ), ranked AS (
        SELECT p.item_id, p.other,
               (p.together / sqrt(pa.customers::double precision * pb.customers))::real AS score,
               row_number() OVER (PARTITION BY p.item_id
                                  ORDER BY p.together / sqrt(pa.customers::double precision * pb.customers) DESC,
                                           p.together DESC, p.other) AS rn
        FROM pairs p
        JOIN popularity pa ON pa.item_id = p.item_id
        JOIN popularity pb ON pb.item_id = p.other
    )
    INSERT INTO item_associations (tenant_id, kind, item_id, related_ids, scores)
    SELECT tenant, event_kind, item_id, array_agg(other ORDER BY rn), array_agg(score ORDER BY rn)
    FROM ranked
    WHERE rn <= per_item
    GROUP BY item_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO item_association_runs AS r (tenant_id, kind, computed_at, items)
    VALUES (tenant, event_kind, now(), n)
    ON CONFLICT (tenant_id, kind) DO UPDATE SET computed_at = excluded.computed_at, items = excluded.items;
    RETURN n;
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION herald_refresh_item_associations(text, text, timestamptz, integer, integer);
DROP TABLE item_association_runs, item_associations;
DROP FUNCTION herald_catalog_change_audience(bigint, interval, integer);
DROP TRIGGER catalog_items_deleted ON catalog_items;
DROP TRIGGER catalog_items_updated ON catalog_items;
DROP TRIGGER catalog_items_inserted ON catalog_items;
DROP TRIGGER catalog_items_truncated ON catalog_items;
DROP FUNCTION herald_catalog_truncated();
DROP FUNCTION herald_catalog_updated();
DROP FUNCTION herald_catalog_deleted();
DROP FUNCTION herald_catalog_inserted();
DROP FUNCTION herald_bump_catalog_versions(text[]);
DROP TABLE catalog_changes, catalog_versions;
ALTER TABLE deliveries
    DROP COLUMN template_version,
    DROP COLUMN catalog_version,
    DROP COLUMN model_version,
    DROP COLUMN strategy;
