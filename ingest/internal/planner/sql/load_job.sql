SELECT channel, template_id, template_version, audience, products_per_message, campaign,
       submitted_at, deadline, traceparent, plan_cursor, plan_next_seq, planned, picking, quiet_hours
FROM jobs
WHERE tenant_id = $1 AND id = $2
