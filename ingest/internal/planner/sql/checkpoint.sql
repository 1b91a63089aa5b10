-- Records the chunk's progress and renews the lease, only while this
-- planner still holds the task; no row updated means the lease was lost.
WITH lease AS (
    UPDATE outbox SET lease_until = now() + make_interval(secs => @lease_seconds)
    WHERE id = @task AND lease_owner = @owner
    RETURNING tenant_id, job_id
)
UPDATE jobs j
SET plan_cursor = @cursor, plan_next_seq = @next_seq, planned = @planned
FROM lease
WHERE j.tenant_id = lease.tenant_id AND j.id = lease.job_id
