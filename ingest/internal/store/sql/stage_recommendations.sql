CREATE TEMP TABLE staged_recommendations (
    line          bigint NOT NULL,
    customer_id   text NOT NULL,
    item_ids      text[] NOT NULL,
    scores        real[] NOT NULL,
    model_version text NOT NULL
) ON COMMIT DROP
