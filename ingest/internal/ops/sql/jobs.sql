-- Jobs still running, and those finished in the last hour, with progress.
SELECT j.tenant_id, j.id, j.campaign, j.submitted_at, j.deadline, j.planned, j.planned_at IS NOT NULL,
       coalesce(sum(p.sent), 0)::bigint, coalesce(sum(p.failed), 0)::bigint,
       coalesce(sum(p.suppressed), 0)::bigint, coalesce(sum(p.expired), 0)::bigint,
       coalesce(sum(p.ambiguous), 0)::bigint, coalesce(sum(p.capped + p.skipped), 0)::bigint,
       min(p.first_sent_at), max(p.last_done_at)
FROM jobs j
LEFT JOIN job_progress p ON p.tenant_id = j.tenant_id AND p.job_id = j.id
WHERE j.submitted_at > now() - interval '7 days'
GROUP BY j.tenant_id, j.id
HAVING j.planned_at IS NULL
    OR coalesce(sum(p.sent + p.failed + p.suppressed + p.expired + p.ambiguous + p.capped + p.skipped), 0) < j.planned
    OR max(p.last_done_at) > now() - interval '1 hour'
ORDER BY j.deadline
LIMIT 200
