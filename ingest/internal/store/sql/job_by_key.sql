SELECT id, request_sha256, coalesce(accepted_response, ''::bytea) FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2
