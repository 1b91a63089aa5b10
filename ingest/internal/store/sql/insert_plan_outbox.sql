-- Announces the accepted job to the planner, waking it at once.
WITH o AS (
    INSERT INTO outbox (kind, tenant_id, job_id) VALUES ('plan_job', $1, $2) RETURNING id
)
SELECT pg_notify('herald_outbox', o.id::text) FROM o
