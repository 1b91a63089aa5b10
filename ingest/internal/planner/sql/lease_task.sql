-- Takes the oldest planning task that no planner holds, or whose holder's
-- lease ran out (it crashed), for $2 seconds. Tasks of paused jobs wait
-- (resume hands them back); a scheduled job's task is not due before its
-- send_at, which is where its lease starts.
UPDATE outbox
SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
WHERE id = (
    SELECT o.id FROM outbox o
    WHERE o.kind = 'plan_job' AND o.lease_until < now()
      AND EXISTS (SELECT 1 FROM jobs j WHERE j.tenant_id = o.tenant_id AND j.id = o.job_id AND j.state = 'active')
    ORDER BY o.id
    FOR UPDATE OF o SKIP LOCKED
    LIMIT 1
)
RETURNING id, tenant_id, job_id
