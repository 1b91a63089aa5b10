SELECT j.id, j.channel, j.template_id, j.template_version, j.audience, j.products_per_message, j.campaign,
       j.submitted_at, j.deadline, j.planned, j.planned_at,
       coalesce(sum(p.sent), 0)::bigint, coalesce(sum(p.failed), 0)::bigint, coalesce(sum(p.suppressed), 0)::bigint,
       coalesce(sum(p.expired), 0)::bigint, coalesce(sum(p.ambiguous), 0)::bigint,
       min(p.first_sent_at), max(p.last_done_at)
FROM jobs j
LEFT JOIN job_progress p ON p.tenant_id = j.tenant_id AND p.job_id = j.id
WHERE j.tenant_id = $1 AND j.id = $2
GROUP BY j.tenant_id, j.id
