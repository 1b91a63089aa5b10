-- Announces the accepted job to the planner. A scheduled job's row is not
-- leased before its send_at ($3), so planning starts then; otherwise the
-- notification wakes a planner at once.
WITH o AS (
    INSERT INTO outbox (kind, tenant_id, job_id, lease_until)
    VALUES ('plan_job', $1, $2, coalesce($3::timestamptz, '-infinity'))
    RETURNING id
)
SELECT pg_notify('herald_outbox', o.id::text) FROM o
