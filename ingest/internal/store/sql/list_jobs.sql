-- One page of a tenant's jobs, newest first, after the cursor $2 (the last
-- id of the previous page; ids are UUIDv7, so id order is submission order).
SELECT j.id, j.channel, j.template_id, j.template_version, j.audience, j.products_per_message, j.campaign,
       j.submitted_at, j.deadline, j.planned, j.planned_at, j.state, j.state_changed_at, j.send_at,
       t.sent, t.failed, t.suppressed, t.expired,
       t.ambiguous, t.capped, t.skipped, t.first_sent_at, t.last_done_at
FROM (
    SELECT * FROM jobs
    WHERE tenant_id = $1 AND id < $2
    ORDER BY id DESC
    LIMIT $3
) j
JOIN job_totals t ON t.tenant_id = j.tenant_id AND t.job_id = j.id
ORDER BY j.id DESC
