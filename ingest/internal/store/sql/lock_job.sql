-- A job's state and whether it has finished, locked for a state change.
SELECT j.state, j.planned_at IS NOT NULL AND
       j.planned <= (SELECT coalesce(sum(p.sent + p.failed + p.suppressed + p.expired + p.ambiguous + p.capped + p.skipped), 0)
                     FROM job_progress p WHERE p.tenant_id = j.tenant_id AND p.job_id = j.id)
FROM jobs j
WHERE j.tenant_id = $1 AND j.id = $2
FOR UPDATE OF j
