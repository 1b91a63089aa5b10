-- Jobs still running, and those finished in the last hour, with progress.
SELECT j.tenant_id, j.id, j.campaign, j.submitted_at, j.deadline, j.planned, j.planned_at IS NOT NULL,
       t.sent, t.failed, t.suppressed, t.expired,
       t.ambiguous, t.capped + t.skipped, t.first_sent_at, t.last_done_at
FROM jobs j
JOIN job_totals t ON t.tenant_id = j.tenant_id AND t.job_id = j.id
WHERE j.submitted_at > now() - interval '7 days'
  AND (j.planned_at IS NULL OR t.done < j.planned OR t.last_done_at > now() - interval '1 hour')
ORDER BY j.deadline
LIMIT 200
