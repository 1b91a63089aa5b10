-- Gives a resumed job to the planner at once (not before its send_at): its
-- planning task is handed back if it has one, created otherwise, so that
-- the planner publishes the batches resume_batches marked and plans the
-- rest of the audience from the job's cursor.
WITH j AS (
    SELECT tenant_id, id, send_at FROM jobs WHERE tenant_id = $1 AND id = $2
), released AS (
    UPDATE outbox o SET lease_owner = '', lease_until = coalesce(j.send_at, '-infinity')
    FROM j
    WHERE o.tenant_id = j.tenant_id AND o.job_id = j.id
    RETURNING o.id
), created AS (
    INSERT INTO outbox (kind, tenant_id, job_id, lease_until)
    SELECT 'plan_job', j.tenant_id, j.id, coalesce(j.send_at, '-infinity')
    FROM j
    WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.tenant_id = j.tenant_id AND o.job_id = j.id)
    RETURNING id
)
SELECT pg_notify('herald_outbox', id::text) FROM (SELECT id FROM released UNION ALL SELECT id FROM created) x
