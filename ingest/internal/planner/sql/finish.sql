-- Marks the job fully planned and retires its task, while still holding it.
-- A resumed job is planned again to republish its batches; it keeps the
-- time its audience was first fully planned.
WITH task AS (
    DELETE FROM outbox WHERE id = $1 AND lease_owner = $2
    RETURNING tenant_id, job_id
)
UPDATE jobs j
SET planned_at = coalesce(j.planned_at, now())
FROM task
WHERE j.tenant_id = task.tenant_id AND j.id = task.job_id
