CREATE TEMP TABLE staged_events (
    line        bigint NOT NULL,
    customer_id text NOT NULL,
    kind        text NOT NULL,
    item_id     text NOT NULL,
    quantity    integer NOT NULL,
    occurred_at timestamptz NOT NULL
) ON COMMIT DROP
