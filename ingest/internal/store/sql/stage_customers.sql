CREATE TEMP TABLE staged_customers (
    line       bigint NOT NULL,
    id         text NOT NULL,
    email      text NOT NULL,
    first_name text NOT NULL,
    last_name  text NOT NULL,
    locale     text NOT NULL,
    timezone   text NOT NULL,
    subscribed boolean NOT NULL,
    consent    jsonb NOT NULL,
    attributes jsonb NOT NULL
) ON COMMIT DROP
