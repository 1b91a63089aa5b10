-- One page of a tenant's jobs, newest first, after the cursor $2 (the last
-- id of the previous page; ids are UUIDv7, so id order is submission order).
SELECT j.id, j.channel, j.template_id, j.template_version, j.audience, j.products_per_message, j.campaign,
       j.submitted_at, j.deadline, j.planned, j.planned_at, j.state, j.state_changed_at, j.send_at, j.strategy,
       pr.sent, pr.failed, pr.suppressed, pr.expired, pr.ambiguous, pr.capped, pr.skipped, pr.first_sent_at, pr.last_done_at
FROM (
    SELECT * FROM jobs
    WHERE tenant_id = $1 AND id < $2
    ORDER BY id DESC
    LIMIT $3
) j
CROSS JOIN LATERAL (
    SELECT coalesce(sum(p.sent), 0)::bigint AS sent, coalesce(sum(p.failed), 0)::bigint AS failed,
           coalesce(sum(p.suppressed), 0)::bigint AS suppressed, coalesce(sum(p.expired), 0)::bigint AS expired,
           coalesce(sum(p.ambiguous), 0)::bigint AS ambiguous, coalesce(sum(p.capped), 0)::bigint AS capped, coalesce(sum(p.skipped), 0)::bigint AS skipped,
           min(p.first_sent_at) AS first_sent_at, max(p.last_done_at) AS last_done_at
    FROM job_progress p
    WHERE p.tenant_id = j.tenant_id AND p.job_id = j.id
) pr
ORDER BY j.id DESC
