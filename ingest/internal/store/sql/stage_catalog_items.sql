CREATE TEMP TABLE staged_catalog_items (
    line             bigint NOT NULL,
    id               text NOT NULL,
    title            text NOT NULL,
    brand            text NOT NULL,
    url              text NOT NULL,
    image_url        text NOT NULL,
    price_cents      bigint NOT NULL,
    compare_at_cents bigint NOT NULL,
    currency         text NOT NULL,
    in_stock         boolean NOT NULL,
    sales_30d        bigint NOT NULL,
    rating           real NOT NULL,
    reviews          integer NOT NULL,
    categories       text[] NOT NULL
) ON COMMIT DROP
