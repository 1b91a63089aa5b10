-- Sets a batch aside while only retries are left in it (see job_batches),
-- with the time to publish it again if it holds recipients for their quiet
-- hours ($4), and wakes the releaser: its slot in the window is free.
WITH parked AS (
    UPDATE job_batches
    SET parked_at = coalesce(parked_at, now()),
        resume_at = CASE WHEN $4::timestamptz IS NULL THEN resume_at ELSE least(coalesce(resume_at, $4), $4) END
    WHERE tenant_id = $1 AND job_id = $2 AND seq = $3 AND done_at IS NULL
    RETURNING 1
)
SELECT pg_notify('herald_batches', '') FROM parked LIMIT 1
