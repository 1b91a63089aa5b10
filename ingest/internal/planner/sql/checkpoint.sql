-- Records the chunk's progress and renews the lease, only while this
-- planner still holds the task; no row updated means the lease was lost.
WITH lease AS (
    UPDATE outbox SET lease_until = now() + make_interval(secs => $3)
    WHERE id = $1 AND lease_owner = $2
    RETURNING tenant_id, job_id
)
UPDATE jobs j
SET plan_cursor = $4, plan_next_seq = $5, planned = $6
FROM lease
WHERE j.tenant_id = lease.tenant_id AND j.id = lease.job_id
