SELECT j.id, j.channel, j.template_id, j.template_version, j.audience, j.products_per_message, j.campaign,
       j.submitted_at, j.deadline, j.planned, j.planned_at, j.state, j.state_changed_at, j.send_at,
       t.sent, t.failed, t.suppressed, t.expired,
       t.ambiguous, t.capped, t.skipped, t.first_sent_at, t.last_done_at
FROM jobs j
JOIN job_totals t ON t.tenant_id = j.tenant_id AND t.job_id = j.id
WHERE j.tenant_id = $1 AND j.id = $2
