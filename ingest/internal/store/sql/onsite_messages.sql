-- A customer's onsite messages that have not expired, newest first, marked
-- seen as they are read.
WITH inbox AS (
    SELECT tenant_id, customer_id, delivery_key
    FROM onsite_messages
    WHERE tenant_id = $1 AND customer_id = $2 AND expires_at > now()
    ORDER BY created_at DESC
    LIMIT $3
), seen AS (
    UPDATE onsite_messages m
    SET seen_at = now()
    FROM inbox i
    WHERE m.tenant_id = i.tenant_id AND m.customer_id = i.customer_id AND m.delivery_key = i.delivery_key
      AND m.seen_at IS NULL
    RETURNING m.delivery_key
)
SELECT m.delivery_key, m.job_id, m.payload, m.created_at, m.expires_at, m.seen_at IS NOT NULL
FROM onsite_messages m
JOIN inbox i ON m.tenant_id = i.tenant_id AND m.customer_id = i.customer_id AND m.delivery_key = i.delivery_key
ORDER BY m.created_at DESC
