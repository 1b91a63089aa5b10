INSERT INTO jobs (tenant_id, id, idempotency_key, request_sha256, channel, template_id, template_version,
                  audience, products_per_message, campaign, submitted_at, deadline, traceparent,
                  send_at, accepted_response, picking, quiet_hours, origin)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
