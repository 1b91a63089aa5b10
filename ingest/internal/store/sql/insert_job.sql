INSERT INTO jobs (tenant_id, id, idempotency_key, request_sha256, channel, template_id, template_version,
                  audience, products_per_message, campaign, submitted_at, deadline, traceparent,
                  send_at, accepted_response, picking, quiet_hours, origin)
VALUES (@tenant_id, @id, @idempotency_key, @request_sha256, @channel, @template_id, @template_version, @audience, @products_per_message, @campaign, @submitted_at, @deadline, @traceparent, @send_at, @accepted_response, @picking, @quiet_hours, @origin)
ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
