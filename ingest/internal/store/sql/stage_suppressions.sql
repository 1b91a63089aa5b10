CREATE TEMP TABLE staged_suppressions (
    line   bigint NOT NULL,
    email  text NOT NULL,
    reason text NOT NULL
) ON COMMIT DROP
