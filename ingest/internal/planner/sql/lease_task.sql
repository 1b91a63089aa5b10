-- Takes the oldest planning task that no planner holds, or whose holder's
-- lease ran out (it crashed), for $2 seconds.
UPDATE outbox
SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
WHERE id = (
    SELECT id FROM outbox
    WHERE kind = 'plan_job' AND lease_until < now()
    ORDER BY id
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
RETURNING id, tenant_id, job_id
