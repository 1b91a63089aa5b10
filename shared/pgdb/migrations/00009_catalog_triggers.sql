-- A tenant's catalog triggers: when an item comes back in stock or drops in
-- price, ingest creates a job for the customers who showed interest in it,
-- with this template. A tenant without a trigger of a kind gets no jobs for
-- changes of that kind; they are marked handled all the same.

-- +goose Up
CREATE TABLE catalog_triggers (
    tenant_id        text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('back_in_stock', 'price_drop')),
    channel          text NOT NULL CHECK (channel IN ('email', 'onsite')),
    template_id      text NOT NULL,
    -- 0: the template's latest version when the change happens.
    template_version integer NOT NULL CHECK (template_version >= 0),
    -- How far back a view or add-to-cart counts as interest.
    lookback         interval NOT NULL,
    -- A price drop smaller than this share of the old price is ignored.
    min_drop_percent integer NOT NULL CHECK (min_drop_percent BETWEEN 0 AND 99),
    -- How long after the change its job is due; null: the tenant's default.
    deadline         interval,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind)
);

-- +goose Down
DROP TABLE catalog_triggers;
