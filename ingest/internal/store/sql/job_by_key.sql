SELECT id, request_sha256 FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2
