-- Puts onsite messages in their customers' inboxes, once per ledger key.
INSERT INTO onsite_messages (tenant_id, customer_id, delivery_key, job_id, payload, expires_at)
SELECT *
FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::jsonb[], $6::timestamptz[])
ON CONFLICT (tenant_id, customer_id, delivery_key) DO NOTHING
